"""Argument checks at the public API: each raises ``ValueError`` naming the argument and what was expected.

Bad inputs fail here, before any work, instead of deep inside a loop (``bincount only supports 1-d``)
or not at all (NaN images that train to chance accuracy).
"""
from __future__ import annotations

import math

import torch


def images(x, name: str = "real_x", *, rows: int | None = None, any_shape: bool = False) -> torch.Tensor:
    """A non-empty float tensor [N, C, H, W] of finite values (``any_shape``: [N, ...])."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of images [N, C, H, W], got {type(x).__name__}")
    if (x.dim() != 4 and not (any_shape and x.dim() >= 2)) or x.shape[0] == 0:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: expected images [N, C, H, W] with N ≥ 1 "
                         f"(add a channel dimension with x.unsqueeze(1))")
    if not x.is_floating_point():
        raise ValueError(f"{name} has dtype {x.dtype}: expected floating-point images (normalised, e.g. float32)")
    if rows is not None and x.shape[0] != rows:
        raise ValueError(f"{name} has {x.shape[0]} rows, expected {rows}")
    finite(x, name)
    return x


def labels(y, name: str = "real_y", *, rows: int | None = None, num_classes: int | None = None) -> torch.Tensor:
    """A 1-d integer tensor of class indices in 0 … num_classes − 1."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name} has shape {tuple(y.shape)}: expected a 1-d tensor of class indices, one per image")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} has dtype {y.dtype}: expected integer class indices (e.g. y.long())")
    if rows is not None and len(y) != rows:
        raise ValueError(f"{name} has {len(y)} entries but the images have {rows} rows: give one label per image")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{name}: class indices must be ≥ 0 (found {int(y.min())})")
    if num_classes is not None and len(y) and int(y.max()) >= num_classes:
        raise ValueError(f"{name}: class index {int(y.max())} ≥ num_classes={num_classes}")
    return y


def finite(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: {bad} value(s) are NaN or infinite; every value must be finite")
    return x


def number(value, name: str, *, low=None, high=None, low_open: bool = False, integer: bool = False):
    """A finite number in [low, high] (``low_open``: (low, high]); ``integer``: a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{name}={value!r}: expected {kind}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={value}: must be finite")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name}={value}: must be {'>' if low_open else '≥'} {low}"
                         + (f" and ≤ {high}" if high is not None else ""))
    if high is not None and value > high:
        raise ValueError(f"{name}={value}: must be ≤ {high}")
    return value
