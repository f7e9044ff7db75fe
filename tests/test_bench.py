"""The benchmarks time what the commands run, and their reference loops are faithful."""
import torch

import dcprivacy.condense as C
from dcprivacy import bench, cli, train
from dcprivacy.nets import net_factory


def _spy(monkeypatch, name):
    """Replace ``dcprivacy.condense.<name>`` by a wrapper that records every call and then runs it."""
    calls, real = [], getattr(C, name)

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    spy.__wrapped__ = real
    monkeypatch.setattr(C, name, spy)
    return calls


def test_bench_condense_times_the_function_condense_calls(monkeypatch, tmp_path):
    calls = _spy(monkeypatch, "distribution_matching")
    assert cli.main(["condense", "--method", "dm", "--ipc", "1", "--iterations", "1", "--width", "4",
                     "--per-class-pool", "4", "--out", str(tmp_path / "s.pt")]) == 0
    assert len(calls) == 1  # the command went through it
    r = bench.bench_condense(width=4, ipc=1, batch_real=4, iterations=1, per_class_pool=4, compile=False,
                             dc=False, shared=False)
    assert len(calls) == 3  # and so did the benchmark (timed, then profiled), with the command's keywords
    # (a checkpoint's file and cadence only matter when the command is given one)
    assert set(calls[0]) - {"compile", "checkpoint", "checkpoint_every"} <= set(calls[1])
    assert r["timed_function"] == "dcprivacy.condense.distribution_matching"
    assert r["dm_condense_s"] > 0 and r["dm_reference_s"] > 0 and r["dm_speedup_over_reference"] > 0
    assert abs(sum(r["profile"].values()) - 1) < 0.01 and r["profile"]["convolutions"] > 0


def test_bench_evaluate_times_the_function_evaluate_calls(monkeypatch, tmp_path):
    syn = C.random_real_subset(torch.randn(40, 1, 28, 28), torch.arange(40) % 10, 1)
    syn.save(tmp_path / "s.pt")
    calls = _spy(monkeypatch, "evaluate_synthetic")
    assert cli.main(["evaluate", str(tmp_path / "s.pt"), "--models", "1", "--epochs", "1", "--width", "4"]) == 0
    assert len(calls) == 1
    r = bench.bench_evaluate(width=4, ipc=1, epochs=1, models=2, stacked=True)
    assert len(calls) == 5  # timed against the reference, profiled, then stacked and one at a time
    assert abs(sum(r["profile"].values()) - 1) < 0.01
    assert (r["precision"], r["compiled"]) == C.evaluation_arithmetic("cpu", 4, 1000)  # what `evaluate` picks
    assert r["timed_function"] == "dcprivacy.condense.evaluate_synthetic"
    assert r["evaluate_speedup_over_reference"] > 0 and r["stacked_speedup"] > 0


def test_reference_dsa_is_siamese_with_a_seed_and_per_image_without():
    aug = bench._ReferenceDSA("flip_scale_rotate_crop_cutout_color")
    x = torch.randn(6, 1, 28, 28)
    for seed in range(5):  # the same seed: the same group and magnitudes, whatever the batch
        a, b = aug(x, seed), aug(x[:2], seed)
        assert torch.allclose(a[:2], b, atol=1e-6)
        assert torch.allclose(a[0:1].expand(2, -1, -1, -1), aug(x[:1].expand(2, -1, -1, -1).contiguous(), seed),
                              atol=1e-6)
    torch.manual_seed(0)
    same = x[:1].expand(8, -1, -1, -1).contiguous()
    outs = [aug(same) for _ in range(6)]  # no seed: images of one batch are transformed independently
    assert any(not torch.allclose(o[0], o[1]) for o in outs)


def test_channels_last_training_matches_the_default_layout():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 1, 28, 28, generator=g), torch.arange(30) % 3
    factory = net_factory("convnet", width=8, num_classes=3)
    cfg = train.TrainConfig(epochs=3, batch_size=16, augment="color_crop_cutout_flip_scale_rotate")
    a = train.train_models(factory, x, y, seeds=[1], config=cfg, channels_last=True)
    b = train.train_models(factory, x, y, seeds=[1], config=cfg, channels_last=False)
    for k in a.params:
        assert torch.allclose(a.params[k], b.params[k], atol=1e-4, rtol=1e-3), k


def test_evaluate_stacked_on_a_cpu_equals_one_at_a_time():
    g = torch.Generator().manual_seed(0)
    syn = C.random_real_subset(torch.randn(40, 1, 28, 28, generator=g), torch.arange(40) % 4, 2)
    tx, ty = torch.randn(20, 1, 28, 28, generator=g), torch.arange(20) % 4
    kw = dict(models=2, epochs=3, augment=False, width=4)
    stacked, alone = C.evaluate_synthetic(syn, tx, ty, stack=True, **kw), C.evaluate_synthetic(syn, tx, ty, stack=False, **kw)
    assert stacked["accuracies"] == alone["accuracies"]
