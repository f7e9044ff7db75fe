"""Do synthetic images look like the real images they came from? Nearest neighbours and SSIM.

Two measures of how alike two images are, both on the images as a reader sees them (pixel values in
[0, 1]):

- **pixel L2**: the Euclidean distance between the images, for every pair of two sets at once
  (``torch.cdist`` in float64, in chunks — no per-pair Python);
- **SSIM** (Wang et al., 2004), from scikit-image's ``structural_similarity`` with the paper's
  settings (Gaussian window σ = 1.5, population covariances). scikit-image compares one pair per
  call, so SSIM is computed only where it is needed: to re-rank the nearest neighbours in L2
  (:func:`nearest_ssim`), against given images (:func:`ssim_to`), and exhaustively only to check
  the re-ranking on a few images (:func:`exhaustive_nearest_ssim`).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

SSIM_SETTINGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)  # Wang et al. (2004)


def _flat64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(len(x), -1).to(torch.float64)


def pairwise_l2(a: torch.Tensor, b: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
    """Pixel L2 distance of every image of ``a`` [A, ...] to every image of ``b`` [B, ...]: [A, B], float64.

    ``b`` goes through in chunks of ``chunk`` images, so a large training set never needs an [A, B, pixels]
    tensor."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)}: the images must have the same shape")
    fa = _flat64(a)
    # the direct formula, not ‖a‖² + ‖b‖² − 2a·b: an image's distance to itself comes out exactly 0
    return torch.cat([torch.cdist(fa, _flat64(b[i:i + chunk]).to(fa.device), compute_mode="donot_use_mm_for_euclid_dist")
                      for i in range(0, len(b), chunk)] or [fa.new_zeros(len(a), 0)], dim=1)


def nearest_l2(queries: torch.Tensor, refs: torch.Tensor, k: int = 1, *, chunk: int = 8192):
    """The ``k`` nearest images of ``refs`` to each query in pixel L2: (distances, indices), each [Q, k],
    nearest first."""
    if not 1 <= k <= len(refs):
        raise ValueError(f"k={k}: must lie between 1 and the {len(refs)} reference images")
    d = pairwise_l2(queries, refs, chunk=chunk)
    dist, idx = d.topk(k, dim=1, largest=False)
    return dist, idx


def _hwc(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] tensor → [N, H, W, C] float64 array."""
    return x.detach().cpu().to(torch.float64).permute(0, 2, 3, 1).numpy()


def ssim_pairs(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0) -> np.ndarray:
    """SSIM of ``a[i]`` with ``b[i]`` for every i: [N]. Images [N, C, H, W] with values in a range of
    width ``data_range`` (1 for pixels in [0, 1])."""
    if a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)}: need two equally shaped stacks of images")
    xa, xb = _hwc(a), _hwc(b)
    return np.array([structural_similarity(p, q, data_range=data_range, channel_axis=-1, **SSIM_SETTINGS)
                     for p, q in zip(xa, xb)], dtype=np.float64)


def ssim_to(queries: torch.Tensor, refs: torch.Tensor, idx: torch.Tensor, *, data_range: float = 1.0) -> np.ndarray:
    """SSIM of each query with the reference images it names: ``idx`` [Q, K] → [Q, K]."""
    idx = torch.as_tensor(idx).long().cpu()
    if idx.dim() != 2 or len(idx) != len(queries):
        raise ValueError(f"idx has shape {tuple(idx.shape)}: expected [{len(queries)}, K], K references per query")
    q = queries.detach().cpu().repeat_interleave(idx.shape[1], dim=0)
    r = refs.detach().cpu()[idx.flatten()]
    return ssim_pairs(q, r, data_range=data_range).reshape(idx.shape)


def nearest_ssim(queries: torch.Tensor, refs: torch.Tensor, *, candidates: int = 10,
                 include: torch.Tensor | None = None, data_range: float = 1.0):
    """The most SSIM-similar image of ``refs`` to each query, among its ``candidates`` nearest in L2
    (and ``include[q]``, when given: e.g. the image that initialised it). Returns (ssim [Q], index [Q]).

    Exhaustive SSIM would call scikit-image once per (query, reference) pair; the L2 neighbours are
    where the SSIM neighbour almost always is (:func:`exhaustive_nearest_ssim` checks it)."""
    _, idx = nearest_l2(queries, refs, k=min(candidates, len(refs)))
    idx = idx.cpu()
    if include is not None:
        idx = torch.cat([idx, torch.as_tensor(include).long().cpu().view(-1, 1)], dim=1)
    s = ssim_to(queries, refs, idx, data_range=data_range)
    best = s.argmax(1)
    return s[np.arange(len(s)), best], idx[torch.arange(len(idx)), torch.from_numpy(best)]


def exhaustive_nearest_ssim(queries: torch.Tensor, refs: torch.Tensor, *, data_range: float = 1.0):
    """The most SSIM-similar image of ``refs`` to each query, searching all of them (one scikit-image
    call per pair: for checks on a few queries). Returns (ssim [Q], index [Q])."""
    idx = torch.arange(len(refs)).expand(len(queries), -1)
    s = ssim_to(queries, refs, idx, data_range=data_range)
    best = s.argmax(1)
    return s[np.arange(len(s)), best], torch.from_numpy(best)


def init_match_rate(nearest: torch.Tensor, init: torch.Tensor) -> float:
    """The share of synthetic images whose nearest real image is the one that initialised them."""
    nearest, init = torch.as_tensor(nearest).cpu().view(-1), torch.as_tensor(init).cpu().view(-1)
    if nearest.shape != init.shape or len(init) == 0:
        raise ValueError(f"nearest {tuple(nearest.shape)} and init {tuple(init.shape)}: one index per synthetic image")
    return (nearest == init).double().mean().item()


__all__ = ["SSIM_SETTINGS", "pairwise_l2", "nearest_l2", "ssim_pairs", "ssim_to", "nearest_ssim",
           "exhaustive_nearest_ssim", "init_match_rate"]
