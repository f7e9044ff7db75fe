import math

import pytest
import torch

from dcprivacy import augment as A


def _img(n=4, c=1, h=28, seed=0):
    return torch.randn(n, c, h, h, generator=torch.Generator().manual_seed(seed))


def test_none_strategy_is_identity():
    x = _img()
    assert A.dsa(x, None) is x and A.dsa(x, "none") is x
    t = A.sample_transforms(4, None, (28, 28), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(A.apply_transforms(x, t), x, atol=1e-5)


def test_unknown_group_fails_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed groups are color, crop, cutout, flip, scale, rotate"):
        A.parse_strategy("color_blur")


def test_deterministic_by_generator():
    x = _img(8)
    a = A.dsa(x, A.DEFAULT_STRATEGY, generator=torch.Generator().manual_seed(1))
    b = A.dsa(x, A.DEFAULT_STRATEGY, generator=torch.Generator().manual_seed(1))
    c = A.dsa(x, A.DEFAULT_STRATEGY, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_siamese_rows_share_one_transformation():
    x = _img(1).expand(6, -1, -1, -1)
    t = A.sample_transforms(2, A.DEFAULT_STRATEGY, (28, 28), generator=torch.Generator().manual_seed(0))
    out = A.apply_transforms(x, t, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert torch.equal(out[0], out[1]) and torch.equal(out[3], out[5])


def test_crop_is_an_exact_integer_translation_with_zero_padding():
    x = _img(16, seed=3)
    t = A.sample_transforms(16, "crop", (28, 28), generator=torch.Generator().manual_seed(0))
    out = A.apply_transforms(x, t)
    shifts = t.theta[:, :, 2] * 28 / 2  # in pixels
    for i in range(16):
        dx, dy = (int(round(v)) for v in shifts[i].tolist())
        assert abs(dx) <= 4 and abs(dy) <= 4  # ±round(28 · 0.125)
        expected = torch.zeros_like(x[i])
        src = x[i][:, max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)]
        expected[:, max(-dy, 0):28 - max(dy, 0), max(-dx, 0):28 - max(dx, 0)] = src
        assert torch.allclose(out[i], expected, atol=1e-4), i


def test_flip_cutout_and_colour_match_their_definitions():
    x = _img(64, seed=4)
    g = torch.Generator().manual_seed(0)
    t = A.sample_transforms(64, "flip", (28, 28), generator=g)
    out = A.apply_transforms(x, t)
    flipped = t.theta[:, 0, 0] < 0
    assert 0 < flipped.sum() < 64  # p = 0.5
    assert torch.allclose(out[flipped], x[flipped].flip(3), atol=1e-4)
    assert torch.allclose(out[~flipped], x[~flipped], atol=1e-4)
    t = A.sample_transforms(64, "cutout", (28, 28), generator=g)
    out = A.apply_transforms(x, t)
    zeroed = (out == 0).flatten(1).sum(1)
    assert zeroed.max() == 14 * 14 and zeroed.min() > 0  # a 14×14 square, clipped at the border
    t = A.sample_transforms(64, "color", (28, 28), generator=g)
    out = A.apply_transforms(x, t)
    m = x.mean((1, 2, 3), keepdim=True) + t.shift.view(-1, 1, 1, 1)
    expected = (x + t.shift.view(-1, 1, 1, 1) - m) * t.contrast.view(-1, 1, 1, 1) + m  # grey: saturation is a no-op
    assert torch.allclose(out, expected, atol=1e-4)
    assert (t.contrast >= 0.5).all() and (t.contrast <= 1.5).all() and t.shift.abs().max() <= 0.5


def test_scale_and_rotate_ranges():
    t = A.sample_transforms(500, "scale_rotate", (28, 28), generator=torch.Generator().manual_seed(0))
    th = t.theta
    scaled = (th[:, 0, 1] == 0) & (th[:, 1, 0] == 0)
    sx = th[scaled, 0, 0]
    assert sx.min() >= 1 / 1.2 - 1e-6 and sx.max() <= 1.2 + 1e-6
    angle = torch.atan2(th[~scaled, 1, 0], th[~scaled, 0, 0])
    assert angle.abs().max() <= math.radians(15) + 1e-6


def test_share_picks_one_group_per_block():
    t = A.sample_transforms(40, "flip_cutout", (28, 28), generator=torch.Generator().manual_seed(5), share=10)
    cut = t.cutout[:, 0].view(4, 10)
    assert ((cut == cut[:, :1]).all(1)).all()


def test_gradients_flow_to_the_images():
    x = _img(4).requires_grad_(True)
    A.dsa(x, A.DEFAULT_STRATEGY, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
