import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from dcprivacy import nets


@pytest.mark.parametrize("im_size,channels", [(28, 1), (32, 3)])
def test_convnet_shapes_match_the_literature(im_size, channels):
    net = nets.ConvNet(channels=channels, width=128, depth=3, im_size=im_size)
    x = torch.randn(2, channels, im_size, im_size)
    assert net.embed(x).shape == (2, 2048) and net(x).shape == (2, 10)
    assert net.features[0].padding == ((3, 3) if im_size == 28 else (1, 1))
    norm = net.features[1]
    assert isinstance(norm, torch.nn.GroupNorm) and norm.num_groups == norm.num_channels == 128


def test_convnet_options():
    assert nets.ConvNet(width=32, depth=2).feature_dim == 32 * 8 * 8
    for norm in nets.NORMS:
        net = nets.ConvNet(width=8, norm=norm)
        assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="allowed values"):
        nets.ConvNet(norm="batchnorm")
    with pytest.raises(ValueError, match="allowed values"):
        nets.make_net("resnet")


def test_instance_norm_does_not_mix_images():
    net = nets.ConvNet(width=16)
    x = torch.randn(6, 1, 28, 28)
    assert torch.allclose(net(x), torch.cat([net(x[i:i + 1]) for i in range(6)]), atol=1e-5)


def test_seeded_construction_is_deterministic():
    a, b = nets.make_net("convnet", width=8, seed=5), nets.make_net("convnet", width=8, seed=5)
    c = nets.make_net("convnet", width=8, seed=6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


@pytest.mark.parametrize("arch", ["convnet", "mlp", "linear"])
def test_models_work_under_functional_call_and_vmap(arch):
    models = [nets.make_net(arch, width=16, seed=i) for i in range(3)]
    params, buffers = stack_module_state(models)
    base = nets.make_net(arch, width=16).to("meta")
    x = torch.randn(4, 1, 28, 28)
    out = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
    expected = torch.stack([m(x) for m in models])
    assert torch.allclose(out, expected, atol=1e-5)


def test_linear_extractor_is_linear_with_gaussian_weights():
    net = nets.LinearExtractor(width=2000)
    w = net.theta.weight
    assert abs(w.mean().item()) < 0.01 and abs(w.std().item() - 1) < 0.01
    x, y = torch.randn(1, 1, 28, 28), torch.randn(1, 1, 28, 28)
    assert torch.allclose(net.embed(x + 2 * y), net.embed(x) + 2 * net.embed(y), atol=1e-3)


def test_flop_count():
    # conv1 32·32·128·9·2 + conv2 16·16·128·128·9·2 + conv3 8·8·128·128·9·2
    expected = 2 * 9 * (32 * 32 * 128 * 1 + 16 * 16 * 128 * 128 + 8 * 8 * 128 * 128)
    assert nets.conv_flops(nets.ConvNet()) == expected


def test_pooling_equals_avg_pool2d_in_every_layout_and_under_vmap():
    from dcprivacy.nets import AvgPool2x2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    pool = AvgPool2x2()
    want = torch.nn.functional.avg_pool2d(x, 2)
    assert torch.allclose(pool(x), want, rtol=0, atol=1e-12)
    assert torch.allclose(pool(x.contiguous(memory_format=torch.channels_last)), want, rtol=0, atol=1e-12)
    stacked = torch.randn(4, 3, 5, 8, 8, generator=g, dtype=torch.float64)
    assert torch.allclose(vmap(pool)(stacked), torch.nn.functional.avg_pool2d(stacked.flatten(0, 1), 2).view(4, 3, 5, 4, 4))
    (grad,) = torch.autograd.grad(pool(x).sum(), x)
    assert torch.equal(grad, torch.full_like(x, 0.25))


def test_first_conv_stays_float32_under_autocast_only_while_trained():
    net = nets.make_net("convnet", width=8, seed=0)
    x = torch.randn(2, 1, 28, 28)
    first = net.features[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert first(x).dtype == torch.float32  # trained: float32 (its bfloat16 weight gradient is slow)
        assert net.features[4](first(x)).dtype == torch.bfloat16  # the next conv: bfloat16
        first.requires_grad_(False)
        assert first(x).dtype == torch.bfloat16  # frozen (DM's random extractor): bfloat16 like the rest
    assert isinstance(first, torch.nn.Conv2d) and set(dict(net.named_parameters())) >= {"features.0.weight"}
