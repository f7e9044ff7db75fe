"""Differentiable siamese augmentation (DSA, Zhao & Bilen 2021), reproducible and vectorized.

DSA picks, per call, one group of operations from a strategy such as
``"color_crop_cutout_flip_scale_rotate"`` and applies it with random magnitudes. *Siamese* means the
real and the synthetic images of one class receive the very same transformation, so that matching
them compares like with like; the transformation must be differentiable so gradients reach the
synthetic pixels.

This implementation draws every random number from a ``torch.Generator`` (the reference reseeds
the global RNG from the wall clock) and augments all classes in one pass: each image carries an
index into a table of transformations, one row per class (siamese) or per image. The operations
that a row did not pick get identity parameters, so every image goes through the same few tensor
operations — one affine resampling (flip, scale, rotate and crop are all affine), one colour
transform, one cutout mask — with no per-image Python and no host synchronisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GROUPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class DSAParams:
    """Magnitudes of the reference implementation (``ParamDiffAug``)."""
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0  # degrees
    ratio_crop_pad: float = 0.125  # of the image side
    ratio_cutout: float = 0.5  # of the image side
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


def parse_strategy(strategy: str | None) -> tuple[str, ...]:
    """``"color_crop"`` → ``("color", "crop")``; ``None``/``""``/``"none"`` → ``()``."""
    if strategy is None or strategy.lower() in ("", "none"):
        return ()
    groups = tuple(strategy.split("_"))
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise ValueError(f"augmentation strategy {strategy!r}: unknown group(s) {bad}; "
                         f"allowed groups are {', '.join(GROUPS)}, joined by '_'")
    return groups


@dataclass
class Transforms:
    """A table of ``n`` random transformations (one row per class or per image)."""
    theta: torch.Tensor  # [n, 2, 3] affine sampling matrices (identity where no geometric op)
    shift: torch.Tensor  # [n] brightness shift
    saturation: torch.Tensor  # [n] saturation factor
    contrast: torch.Tensor  # [n] contrast factor
    cutout: torch.Tensor  # [n, 3]: on/off, row centre, column centre

    def __len__(self) -> int:
        return self.theta.shape[0]


def sample_transforms(n: int, strategy: str | None, size: tuple[int, int], *,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                      params: DSAParams = DSAParams(), share: int = 1) -> Transforms:
    """Draw ``n`` DSA transformations for images of ``size`` (H, W).

    Each block of ``share`` consecutive rows picks one group of the strategy uniformly at random
    (the reference picks one group per call: ``share`` = the batch size when augmenting a training
    batch); the magnitudes are drawn for every row.
    """
    groups = parse_strategy(strategy)
    H, W = size
    kw = dict(generator=generator, device=device)

    def u(*shape):  # uniform [0, 1)
        return torch.rand(*shape, **kw)

    if groups:
        if share < 1:
            raise ValueError(f"share={share}: must be at least 1")
        pick = torch.randint(len(groups), (-(-n // share),), **kw).repeat_interleave(share)[:n]
    else:
        pick = torch.full((n,), -1, dtype=torch.long, device=device)

    def on(group):
        return pick == groups.index(group) if group in groups else torch.zeros(n, dtype=torch.bool, device=device)

    one, zero = torch.ones(n, device=device), torch.zeros(n, device=device)
    # colour: brightness shift, saturation factor, contrast factor (identity 0, 1, 1)
    c = on("color")
    shift = torch.where(c, (u(n) - 0.5) * params.brightness, zero)
    saturation = torch.where(c, u(n) * params.saturation, one)
    contrast = torch.where(c, u(n) + params.contrast, one)
    # geometry, as one affine map per row
    r = params.ratio_scale
    sx = torch.where(on("scale"), u(n) * (r - 1 / r) + 1 / r, one)
    sy = torch.where(on("scale"), u(n) * (r - 1 / r) + 1 / r, one)
    angle = torch.where(on("rotate"), (u(n) - 0.5) * 2 * params.ratio_rotate * math.pi / 180, zero)
    flip = torch.where(on("flip") & (u(n) < params.prob_flip), -one, one)
    sh, sw = int(H * params.ratio_crop_pad + 0.5), int(W * params.ratio_crop_pad + 0.5)
    ty = torch.where(on("crop"), torch.randint(-sh, sh + 1, (n,), **kw).float(), zero)
    tx = torch.where(on("crop"), torch.randint(-sw, sw + 1, (n,), **kw).float(), zero)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sx * cos * flip, -sin, 2 * tx / W], 1),
                         torch.stack([sin * flip, sy * cos, 2 * ty / H], 1)], 1)
    # cutout: a square of side ratio·H zeroed around a random centre
    ch, cw = int(H * params.ratio_cutout + 0.5), int(W * params.ratio_cutout + 0.5)
    oy = torch.randint(0, H + (1 - ch % 2), (n,), **kw).float()
    ox = torch.randint(0, W + (1 - cw % 2), (n,), **kw).float()
    cutout = torch.stack([on("cutout").float(), oy, ox], 1)
    return Transforms(theta, shift, saturation, contrast, cutout)


def apply_transforms(x: torch.Tensor, t: Transforms, index: torch.Tensor | None = None,
                     params: DSAParams = DSAParams()) -> torch.Tensor:
    """Augment ``x`` [B, C, H, W]; image ``i`` gets row ``index[i]`` of ``t`` (default: row ``i``).

    Differentiable in ``x``. Passing the class labels as ``index`` for both the real and the
    synthetic batch is what makes the augmentation siamese.
    """
    if index is not None:
        t = Transforms(t.theta[index], t.shift[index], t.saturation[index], t.contrast[index], t.cutout[index])
    B, C, H, W = x.shape
    v = (B, 1, 1, 1)
    # colour (brightness, saturation, contrast — the reference's order)
    x = x + t.shift.view(v)
    x = (x - x.mean(1, keepdim=True)) * t.saturation.view(v) + x.mean(1, keepdim=True)
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * t.contrast.view(v) + m
    # geometry: one bilinear resampling with zero padding (exact for integer shifts and flips)
    grid = F.affine_grid(t.theta.to(x.dtype), [B, C, H, W], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # cutout
    ch, cw = int(H * params.ratio_cutout + 0.5), int(W * params.ratio_cutout + 0.5)
    rows = torch.arange(H, device=x.device).view(1, H)
    cols = torch.arange(W, device=x.device).view(1, W)
    top, left = t.cutout[:, 1:2] - ch // 2, t.cutout[:, 2:3] - cw // 2
    in_r = (rows >= top) & (rows < top + ch)
    in_c = (cols >= left) & (cols < left + cw)
    hole = (in_r.unsqueeze(2) & in_c.unsqueeze(1)) & t.cutout[:, 0:1].bool().unsqueeze(2)
    return x * (~hole).unsqueeze(1).to(x.dtype)


def dsa(x: torch.Tensor, strategy: str | None, *, generator: torch.Generator | None = None,
        index: torch.Tensor | None = None, num: int | None = None, share: int = 1,
        params: DSAParams = DSAParams()) -> torch.Tensor:
    """Draw transformations and apply them: per image, or per ``index`` row (``num`` rows)."""
    if not parse_strategy(strategy):
        return x
    n = x.shape[0] if index is None else (num if num is not None else int(index.max()) + 1)
    t = sample_transforms(n, strategy, tuple(x.shape[-2:]), generator=generator, device=x.device,
                          params=params, share=share)
    return apply_transforms(x, t, index, params)
