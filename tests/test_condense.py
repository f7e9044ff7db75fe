import pytest
import torch
import torch.nn.functional as F

from dcprivacy import condense as C
from dcprivacy.augment import DEFAULT_STRATEGY, apply_transforms, sample_transforms
from dcprivacy.nets import make_net


def _data(per_class=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(per_class)
    x = torch.randn(len(y), 1, 28, 28, generator=g) + y.view(-1, 1, 1, 1).float()
    return x, y


def test_one_pass_dm_loss_equals_the_per_class_loop():
    net = make_net("convnet", width=8, num_classes=3, seed=0)
    g = torch.Generator().manual_seed(1)
    real = torch.randn(3, 6, 1, 28, 28, generator=g)
    syn = torch.randn(1, 3, 2, 1, 28, 28, generator=g, requires_grad=True)
    t = sample_transforms(3, DEFAULT_STRATEGY, (28, 28), generator=g)
    loss = C.dm_loss(net.embed, real, torch.ones(1, 3, 6), syn, transforms=t)
    (grad_one,) = torch.autograd.grad(loss, syn)
    ref = 0
    for c in range(3):  # the reference's structure: one class at a time
        idx = torch.full((6,), c)
        er = net.embed(apply_transforms(real[c], t, idx)).mean(0)
        es = net.embed(apply_transforms(syn[0, c], t, idx[:2])).mean(0)
        ref = ref + ((er - es) ** 2).sum()
    (grad_ref,) = torch.autograd.grad(ref, syn)
    assert torch.allclose(loss, ref, rtol=1e-5)
    assert torch.allclose(grad_one, grad_ref, rtol=1e-4, atol=1e-7)


def test_dm_loss_in_pieces_and_channels_last_give_the_same_numbers():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(3, 7, 1, 28, 28, generator=g)
    syn = torch.randn(2, 3, 2, 1, 28, 28, generator=g, requires_grad=True)
    w = (torch.rand(2, 3, 7, generator=g) > 0.3).float()
    t = sample_transforms(3, DEFAULT_STRATEGY, (28, 28), generator=g)
    net = make_net("convnet", width=8, num_classes=3, seed=0)
    net_cl = make_net("convnet", width=8, num_classes=3, seed=0).to(memory_format=torch.channels_last)
    whole = C.dm_loss(net.embed, real, w, syn, transforms=t)
    (g_whole,) = torch.autograd.grad(whole, syn)
    for embed, chunk in ((net.embed, 4), (net_cl.embed, None), (net_cl.embed, 5)):
        part = C.dm_loss(embed, real, w, syn, transforms=t, real_chunk=chunk)
        (g_part,) = torch.autograd.grad(part, syn)
        assert torch.allclose(part, whole, rtol=1e-5)
        assert (g_part - g_whole).abs().max() <= 1e-4 * g_whole.abs().max()


def test_dm_layout_and_pieces_do_not_change_the_synthetic_set():
    x, y = _data()
    kw = dict(ipc=2, iterations=4, batch_real=6, width=8)
    plain = C.distribution_matching(x, y, channels_last=False, real_chunk=10 ** 6, **kw)
    fast = C.distribution_matching(x, y, channels_last=True, real_chunk=4, **kw)
    assert torch.allclose(plain.images, fast.images, rtol=1e-4, atol=1e-5)


def _reference_distance(gr, gs):
    """The reference's distance_wb, written out per layer."""
    shape = gr.shape
    if len(shape) == 1:
        return torch.tensor(0.0)
    if len(shape) == 4:
        gr, gs = gr.reshape(shape[0], -1), gs.reshape(shape[0], -1)
    return torch.sum(1 - torch.sum(gr * gs, -1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6))


def test_bfloat16_real_side_moves_dm_less_than_a_different_real_batch_does(monkeypatch):
    """The real side in bfloat16 (the default on CPUs with native bfloat16, width ≥ 64) changes the gradient
    on the synthetic images by far less than the random draw of the real batch itself changes it: the
    condensed sets are as different as two float32 runs from different seeds, statistically no more."""
    from dcprivacy import config
    monkeypatch.setattr(config, "_exact", False)
    g = torch.Generator().manual_seed(0)
    classes, b = 3, 64
    pool = torch.randn(classes, 2 * b, 1, 28, 28, generator=g) + torch.arange(classes).view(-1, 1, 1, 1, 1)
    syn = torch.randn(1, classes, 2, 1, 28, 28, generator=g, requires_grad=True)
    w = torch.ones(1, classes, b)
    for seed in range(3):
        net = make_net("convnet", width=64, num_classes=classes, seed=seed).requires_grad_(False)
        low, _ = C.real_embedding(net, torch.bfloat16)

        def grad(real, embed_real=None):
            loss = C.dm_loss(net.embed, real, w, syn, real_chunk=32, embed_real=embed_real)
            return torch.autograd.grad(loss, syn)[0]

        g32, g16, other = grad(pool[:, :b]), grad(pool[:, :b], low), grad(pool[:, b:])
        rounding = (g16 - g32).norm() / g32.norm()
        sampling = (other - g32).norm() / g32.norm()
        assert rounding < 0.05 and rounding < sampling / 5, (float(rounding), float(sampling))


def test_precision_choice(monkeypatch):
    from dcprivacy import config
    monkeypatch.delenv("DCPRIVACY_PRECISION", raising=False)
    monkeypatch.setattr(config, "_exact", False)
    assert config.fast_dtype("cpu", 128, "fp32") is None
    assert config.fast_dtype("cpu", 16, "bf16") is torch.bfloat16
    assert config.fast_dtype("cpu", 16) is None  # narrow networks: float32 (bfloat16 gained nothing there)
    assert config.fast_dtype("cpu", 128) is (torch.bfloat16 if config._mkldnn_bf16() else None)
    monkeypatch.setenv("DCPRIVACY_PRECISION", "fp32")
    assert config.fast_dtype("cpu", 128) is None
    monkeypatch.delenv("DCPRIVACY_PRECISION")
    monkeypatch.setattr(config, "_exact", True)  # after exact_arithmetic(): float32 everywhere
    assert config.fast_dtype("cpu", 128) is None
    assert C.evaluation_arithmetic("cpu", 128, 1000) == ("fp32", True)
    assert C.evaluation_arithmetic("cpu", 16, 1000) == ("fp32", False)
    assert C.evaluation_arithmetic("cpu", 128, 100) == ("fp32", False)
    with pytest.raises(ValueError, match="precision"):
        config.fast_dtype("cpu", 128, "fp16")
    x, y = _data()
    syn = C.distribution_matching(x, y, ipc=1, iterations=1, batch_real=4, width=8, precision="bf16")
    assert syn.config["precision"] == "bf16"


def test_mixed_precision_training_is_statistically_indistinguishable():
    """Mixed precision (bfloat16 autocast, compiled or not) trains models whose test accuracy is within the
    spread of float32 models over seeds."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 1, 28, 28, generator=g)
    def draw(n):
        y = torch.arange(n) % 4
        return centres[y] + 1.5 * torch.randn(n, 1, 28, 28, generator=g), y
    x, y = draw(40)
    tx, ty = draw(400)
    syn = C.SyntheticSet(x, y, torch.arange(40), "real-subset", {}, {})
    kw = dict(models=4, epochs=30, augment=False, width=16)
    fp32 = C.evaluate_synthetic(syn, tx, ty, precision="fp32", compile=False, **kw)
    bf16 = C.evaluate_synthetic(syn, tx, ty, precision="bf16", compile=False, **kw)
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    a, b = torch.tensor(fp32["accuracies"]), torch.tensor(bf16["accuracies"])
    spread = max(float(a.std()), float(b.std()), 0.01)
    assert abs(float(a.mean() - b.mean())) < 3 * spread, (a, b)
    assert float(b.mean()) > 0.5  # it learned


def test_a_failing_compiler_falls_back_to_eager(monkeypatch):
    from dcprivacy import train

    def broken(fn):
        def call(*a):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    x, y = _data(per_class=4)
    factory = lambda s=None: make_net("convnet", width=4, num_classes=3, seed=s)
    cfg = train.TrainConfig(epochs=2, batch_size=8)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        a = train.train_models(factory, x, y, seeds=[0], config=cfg, compile=True)
    b = train.train_models(factory, x, y, seeds=[0], config=cfg)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


@pytest.mark.parametrize("vectorize", [True, False])
def test_vectorized_gradient_matching_equals_the_per_class_loop(vectorize):
    net = make_net("convnet", width=8, num_classes=3, seed=0)
    g = torch.Generator().manual_seed(2)
    xr = torch.randn(3, 5, 1, 28, 28, generator=g)
    xs = torch.randn(3, 2, 1, 28, 28, generator=g, requires_grad=True)
    yr, ys = torch.arange(3).view(3, 1).expand(3, 5), torch.arange(3).view(3, 1).expand(3, 2)
    g_real = C.class_gradients(net, xr, yr, vectorize=vectorize)
    loss = C.gradient_distance({k: v.detach() for k, v in g_real.items()},
                               C.class_gradients(net, xs, ys, vectorize=vectorize))
    (grad_one,) = torch.autograd.grad(loss, xs)
    params = list(net.parameters())
    ref = 0
    for c in range(3):
        gw_real = torch.autograd.grad(F.cross_entropy(net(xr[c]), yr[c]), params)
        gw_syn = torch.autograd.grad(F.cross_entropy(net(xs[c]), ys[c]), params, create_graph=True)
        ref = ref + sum(_reference_distance(a.detach(), b) for a, b in zip(gw_real, gw_syn))
    (grad_ref,) = torch.autograd.grad(ref, xs)
    assert torch.allclose(loss, ref, rtol=1e-5)
    assert torch.allclose(grad_one, grad_ref, rtol=1e-3, atol=1e-6)


def test_dm_records_its_init_images_and_is_deterministic():
    x, y = _data()
    dataset_idx = torch.arange(100, 100 + len(y))
    kw = dict(ipc=2, iterations=5, batch_real=4, width=8, indices=dataset_idx, snapshots=(0, 5))
    a = C.distribution_matching(x, y, **kw)
    b = C.distribution_matching(x, y, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.init_indices, b.init_indices)
    assert a.labels.tolist() == [0, 0, 1, 1, 2, 2] and a.ipc == 2 and a.real_init
    assert torch.equal(a.history["snapshots"][0], x[a.init_indices - 100])  # iteration 0 = the real images
    assert not torch.equal(a.images, a.history["snapshots"][0])
    assert torch.equal(a.history["snapshots"][5], a.images)
    assert (y[a.init_indices - 100] == a.labels).all()
    assert a.history["loss"].shape == (5,) and torch.isfinite(a.history["loss"]).all()
    noise = C.distribution_matching(x, y, ipc=2, iterations=2, init="noise", width=8)
    assert noise.init_indices.numel() == 0 and not noise.real_init


def test_dm_reduces_its_loss_over_iterations():
    x, y = _data(40)
    s = C.distribution_matching(x, y, ipc=2, iterations=60, batch_real=None, width=8, augment=None, init="noise")
    loss = s.history["loss"]
    assert loss[-10:].mean() < 0.5 * loss[:5].mean()


def test_runs_with_shared_draws():
    x, y = _data()
    single = C.distribution_matching(x, y, ipc=2, iterations=3, batch_real=None, width=8)
    runs = C.distribution_matching(x, y, ipc=2, iterations=3, batch_real=None, width=8,
                                   members=torch.ones(2, len(y), dtype=torch.bool))
    assert torch.allclose(runs[0].images, single.images, atol=1e-6) and torch.equal(runs[0].images, runs[1].images)
    # T vs T' = T without one non-init image: same init, same draws, only the real means differ
    init = single.init_indices
    drop = next(i for i in range(len(y)) if i not in init.tolist())
    members = torch.ones(2, len(y), dtype=torch.bool)
    members[1, drop] = False
    pair = C.distribution_matching(x, y, ipc=2, iterations=3, batch_real=None, width=8, init=init, members=members)
    moved = (pair[0].images - pair[1].images).flatten(1).norm(dim=1)
    cls = y[drop]
    assert (moved[pair[0].labels != cls] == 0).all() and (moved[pair[0].labels == cls] > 0).all()


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    x, y = _data()
    kw = dict(ipc=2, iterations=6, batch_real=4, width=8)
    full = C.distribution_matching(x, y, **kw)

    class Stop(Exception):
        pass

    def stop(it, images, loss):
        raise Stop

    ckpt = tmp_path / "dm.pt"
    with pytest.raises(Stop):
        C.distribution_matching(x, y, checkpoint=ckpt, checkpoint_every=3, callback=stop, callback_every=3, **kw)
    resumed = C.distribution_matching(x, y, checkpoint=ckpt, checkpoint_every=3, **kw)
    assert torch.allclose(resumed.images, full.images, atol=1e-6)
    with pytest.raises(ValueError, match="different configuration"):
        C.distribution_matching(x, y, checkpoint=ckpt, ipc=2, iterations=7, batch_real=4, width=8)


@pytest.mark.parametrize("augment", [None, DEFAULT_STRATEGY])
def test_gradient_matching_runs_and_records(augment):
    x, y = _data()
    s = C.gradient_matching(x, y, ipc=2, iterations=3, loops=(2, 2), batch_real=4, width=8, augment=augment)
    assert s.method == ("dc" if augment is None else "dsa")
    assert s.real_init == (augment is not None)  # the reference: noise for DC, real for DSA
    assert s.images.shape == (6, 1, 28, 28) and torch.isfinite(s.images).all()
    assert s.history["loss"].shape == (3,)


def test_default_loops_and_bad_arguments():
    assert C.default_loops(1) == (1, 1) and C.default_loops(10) == (10, 50) and C.default_loops(50) == (50, 10)
    with pytest.raises(ValueError, match="pass loops"):
        C.default_loops(7)
    x, y = _data()
    with pytest.raises(ValueError, match="allowed values are real, noise"):
        C.distribution_matching(x, y, init="zeros", iterations=1, width=8)
    with pytest.raises(ValueError, match="fewer than ipc"):
        C.distribution_matching(x, y, ipc=20, iterations=1, width=8)
    with pytest.raises(ValueError, match="unknown group"):
        C.distribution_matching(x, y, augment="blur", iterations=1, width=8)


def test_synthetic_set_round_trips(tmp_path):
    x, y = _data()
    s = C.random_real_subset(x, y, 2, seed=1)
    assert torch.equal(s.images, x[s.init_indices])
    t = C.SyntheticSet.load(s.save(tmp_path / "s.pt"))
    assert torch.equal(t.images, s.images) and t.method == "real-subset"


def test_evaluate_synthetic_trains_and_reports():
    x, y = _data(30)
    s = C.random_real_subset(x, y, 5)
    r = C.evaluate_synthetic(s, x, y, models=2, epochs=20, width=8)
    assert r["augment"] == DEFAULT_STRATEGY and len(r["accuracies"]) == 2 and r["accuracy_mean"] > 0.5
