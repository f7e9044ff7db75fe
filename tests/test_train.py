import pytest
import torch
import torch.nn.functional as F

from dcprivacy import nets, train


def _toy(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5 + y.view(-1, 1, 1, 1).float()
    return x, y


def _reference(factory, x, y, seed, member, cfg):
    """One model, trained the textbook way: nn.Module + torch.optim.SGD, same batch order."""
    net = factory(seed)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen = train._data_generator(seed, "cpu")
    n = int(member.sum())
    for epoch in range(cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (0.1 if epoch >= int(cfg.epochs * cfg.decay_at) else 1.0)
        own = member.nonzero().flatten()
        order = own[torch.randperm(n, generator=gen)]
        for s in range(0, n, cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net


@pytest.mark.parametrize("arch", ["convnet", "mlp"])
def test_stacked_training_equals_training_each_model_alone(arch):
    x, y = _toy()
    factory = nets.net_factory(arch, width=8, num_classes=3)
    cfg = train.TrainConfig(epochs=4, batch_size=16)
    members = torch.rand(3, len(x), generator=torch.Generator().manual_seed(1)) < 0.5  # unequal set sizes
    assert len(set(members.sum(1).tolist())) > 1
    stacked = train.train_models(factory, x, y, seeds=[10, 11, 12], members=members, config=cfg, chunk=3)
    loop = train.train_models(factory, x, y, seeds=[10, 11, 12], members=members, config=cfg, chunk=1)
    for i, seed in enumerate([10, 11, 12]):
        ref = _reference(factory, x, y, seed, members[i], cfg)
        for name, p in ref.named_parameters():
            assert torch.allclose(stacked.params[name][i], p, atol=1e-5), (name, i)
            assert torch.allclose(loop.params[name][i], p, atol=1e-5), (name, i)


def test_models_differ_by_seed_and_learn():
    x, y = _toy(90)
    ens = train.train_models(nets.net_factory("convnet", width=8, num_classes=3), x, y, seeds=[0, 1],
                             config=train.TrainConfig(epochs=15, batch_size=32))
    assert not torch.equal(ens.params["features.0.weight"][0], ens.params["features.0.weight"][1])
    acc = train.accuracy(ens, x, y)
    assert acc.shape == (2,) and acc.min() > 0.9
    logits = train.predict(ens, x[:7])
    assert logits.shape == (2, 7, 3)
    assert torch.allclose(train.predict(ens, x[:7], chunk=2), logits, atol=1e-5)
    assert train.predict(ens, x[:7], method="embed").shape == (2, 7, 8 * 4 * 4)
    assert torch.allclose(ens.model(1)(x[:7]), logits[1], atol=1e-5)


def test_augmented_training_is_deterministic_by_seed():
    x, y = _toy(30)
    cfg = train.TrainConfig(epochs=2, batch_size=8, augment="color_crop_cutout_flip_scale_rotate")
    f = nets.net_factory("convnet", width=4, num_classes=3)
    a = train.train_models(f, x, y, seeds=[0, 1], config=cfg, aug_seed=3, chunk=2)
    b = train.train_models(f, x, y, seeds=[0, 1], config=cfg, aug_seed=3, chunk=2)
    c = train.train_models(f, x, y, seeds=[0, 1], config=cfg, aug_seed=4, chunk=2)
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not all(torch.equal(a.params[k], c.params[k]) for k in a.params)


def test_bad_arguments_fail_before_training():
    x, y = _toy(12)
    f = nets.net_factory("mlp", width=4, num_classes=3)
    with pytest.raises(ValueError, match="members has shape"):
        train.train_models(f, x, y, seeds=[0, 1], members=torch.ones(3, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one training example"):
        train.train_models(f, x, y, seeds=[0], members=torch.zeros(1, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="epochs"):
        train.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown group"):
        train.TrainConfig(augment="color_blur")


def test_sgd_step_is_torch_sgd_and_skips_inactive_models():
    """The update chapter 1 shows: torch.optim.SGD's, for every model at once; inactive models keep θ and v."""
    g = torch.Generator().manual_seed(0)
    theta, grads = torch.randn(2, 3, generator=g), [torch.randn(2, 3, generator=g) for _ in range(3)]
    params, moment = {"w": theta.clone()}, {"w": torch.zeros(2, 3)}
    ref = theta.clone().requires_grad_(True)
    opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, weight_decay=5e-4)
    for gr in grads:
        train.sgd_step(params, [gr], moment, lr=0.1, momentum=0.9, weight_decay=5e-4)
        ref.grad = gr.clone()
        opt.step()
    assert torch.allclose(params["w"], ref.detach(), atol=1e-6)
    before, v = params["w"].clone(), moment["w"].clone()
    train.sgd_step(params, [grads[0]], moment, lr=0.1, momentum=0.9, weight_decay=5e-4,
                   active=torch.tensor([True, False]))
    assert torch.equal(params["w"][1], before[1]) and torch.equal(moment["w"][1], v[1])
    assert not torch.equal(params["w"][0], before[0])
