"""Leave-one-out sensitivity of distribution matching (DM) with any extractor, measured.

Chapter 3 computes how far *linear* DM's synthetic set moves when one real sample is removed.
With a ReLU network there is no closed form, so this module measures it with the real
:func:`dcprivacy.condense.distribution_matching`, in a controlled experiment:

- **Shared randomness.** T and every T' = T ∖ {x'} are condensed in *one* call through its
  ``members=`` argument: the same network draws, the same initial images, the same order of
  operations. The only difference between two runs is the removed sample.
- **Full batches, no augmentation** (``batch_real=None``, ``augment=None``): every iteration sees
  every member, so removing x' changes each iteration's real mean embedding by exactly
  (ψ(x') − mean ψ(T'))/n — nothing else.
- **Explicit initialisation.** The synthetic set starts from given real samples of T; when x' is
  one of them, T' starts from a substitute in its slot (x' is not in T').
- **One class.** DM's loss is a sum over classes, and instance normalisation keeps the classes
  apart inside the network, so the synthetic images of a class depend on that class's real images
  only: removing x' from class c leaves every other class's synthetic images exactly as they were.
  The sensitivity of the whole set is therefore that of the class of x', measured alone.
- **Every n at once.** T_n is the first n samples of a class in a fixed random order, so the runs
  for all n of a grid share one call (the pool is the largest T_n; each run's ``members`` row
  says which samples it may use).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .condense import distribution_matching


@dataclass
class Removal:
    """What :func:`removal_shifts` measured for one synthetic-set size m.

    ``shift[t, g, r, j]`` = ‖s_j(T_n) − s_j(T_n ∖ {x_r})‖ (L2 over pixels, normalised units) after
    ``iterations[t]`` iterations, for n = ``n_grid[g]``, removed sample r and synthetic image j;
    ``control[t, g, j]``: the same for a second run on T_n itself (the noise floor of the
    measurement: ideally 0).
    """
    n_grid: tuple[int, ...]
    m: int
    iterations: tuple[int, ...]
    removed: torch.Tensor  # [removed] positions (in the class's order) of the removed samples
    initialiser: torch.Tensor  # [removed] bool: the removed sample initialised a synthetic image
    shift: torch.Tensor  # [iterations, n, removed, m]
    control: torch.Tensor  # [iterations, n, m]
    images: torch.Tensor  # [iterations, n, m, C, H, W]: the synthetic set of each T_n after each iteration count
    config: dict = field(default_factory=dict)

    @property
    def set_shift(self) -> torch.Tensor:
        """‖S(T_n) − S(T_n ∖ {x_r})‖_F: [iterations, n, removed]."""
        return self.shift.pow(2).sum(-1).sqrt()


def _removal_positions(x, n_grid, m, removed, init, substitute, iterations):
    """:func:`removal_shifts`'s arguments checked and as tensors: (iteration counts, n_grid, removed, init,
    [R, m] which removed sample initialised which slot, substitute)."""
    its = (int(iterations),) if np.ndim(iterations) == 0 else tuple(sorted(int(i) for i in iterations))
    if its[0] < 0:
        raise ValueError(f"iterations={iterations}: must be ≥ 0")
    n_grid = tuple(int(n) for n in n_grid)
    removed = torch.as_tensor(list(removed), dtype=torch.long)
    init_t = torch.arange(m) if init is None else torch.as_tensor(list(init), dtype=torch.long)
    n_min, n_max = min(n_grid), max(n_grid)
    if len(init_t) != m or len(set(init_t.tolist())) != m:
        raise ValueError(f"init: need {m} distinct positions (one per synthetic image), got {init_t.tolist()}")
    if n_max > len(x):
        raise ValueError(f"n_grid={n_grid}: the largest n exceeds the {len(x)} samples in x")
    used = set(init_t.tolist()) | set(removed.tolist())
    if max(used) >= n_min or min(used) < 0:
        raise ValueError(f"init and removed must be positions below min(n_grid) = {n_min} (in every T_n)")
    hit = (removed[:, None] == init_t[None, :])  # [R, m]
    if substitute is None:
        substitute = next(i for i in range(n_min) if i not in used)
    elif substitute in used or not 0 <= substitute < n_min:
        raise ValueError(f"substitute={substitute}: must be below {n_min}, not an initialiser and not removed")
    return its, n_grid, removed, init_t, hit, substitute


def removal_shifts(x: torch.Tensor, n_grid: Sequence[int], m: int, removed: Sequence[int], *,
                   init: Sequence[int] | None = None, substitute: int | None = None,
                   iterations: int | Sequence[int] = 100, arch: str = "convnet", width: int = 128, depth: int = 3,
                   lr_img: float = 1.0, momentum: float = 0.5, seed: int = 0,
                   device=None) -> Removal:
    """Condense T_n = ``x[:n]`` and every T_n ∖ {``x[r]``} with DM, for every n in ``n_grid``, in one
    call that shares all random draws; return how far each synthetic image moved.

    ``x`` [N, C, H, W]: the samples of *one* class, in a random order. ``init``: positions of the
    ``m`` samples that initialise S (default: the first m). ``removed``: positions below
    ``min(n_grid)``; those that are initialisers are replaced in their slot by ``substitute``
    (default: the first position that is neither an initialiser nor removed). DM runs as the
    reference does it (SGD with momentum on the images, a fresh random network per iteration) but
    with full batches and without augmentation — see the module's docstring for why.
    ``iterations``: a number, or several (the run goes to the largest and keeps a snapshot at each).
    """
    its, n_grid, removed, init_t, hit, substitute = _removal_positions(x, n_grid, m, removed, init, substitute,
                                                                       iterations)
    # the measurement: one DM call, the same random draws for every run
    R, G, n_max = len(removed), len(n_grid), max(n_grid)
    runs = 2 + R  # per n: T_n, T_n again (control), then each T_n ∖ {x_r}
    members = torch.zeros(G, runs, n_max, dtype=torch.bool)
    for g, n in enumerate(n_grid):
        members[g, :, :n] = True
    members[:, 2 + torch.arange(R), removed] = False
    inits = init_t.expand(G, runs, m).clone()
    inits[:, 2:] = torch.where(hit, torch.tensor(substitute), init_t.expand(R, m))
    y = torch.zeros(n_max, dtype=torch.long)
    sets = distribution_matching(x[:n_max], y, ipc=m, init=inits.view(G * runs, m), iterations=its[-1],
                                 lr_img=lr_img, momentum=momentum, batch_real=None, augment=None, arch=arch,
                                 width=width, depth=depth, num_classes=1, seed=seed,
                                 members=members.view(G * runs, n_max), snapshots=its, device=device,
                                 desc=f"DM leave-one-out m={m}")
    imgs = torch.stack([torch.stack([s.history["snapshots"][t] for s in sets]) for t in its])
    imgs = imgs.view(len(its), G, runs, m, *x.shape[1:])
    diff = lambda a, b: (a - b).flatten(-3).norm(dim=-1)
    config = dict(arch=arch, width=width, depth=depth, lr_img=lr_img, momentum=momentum, seed=seed,
                  substitute=substitute, init=init_t.tolist())
    return Removal(n_grid, m, its, removed, hit.any(1), diff(imgs[:, :, :1], imgs[:, :, 2:]),
                   diff(imgs[:, :, 0], imgs[:, :, 1]), imgs[:, :, 0], config)


def loglog_slopes(n, values) -> np.ndarray:
    """Least-squares slope of log ``values`` against log ``n``, per column: ``values`` [len(n), columns] → [columns]."""
    lx = np.log(np.asarray(n, float))
    ly = np.log(np.asarray(values, float))
    lx = lx - lx.mean()
    return (lx[:, None] * (ly - ly.mean(0))).sum(0) / (lx ** 2).sum()


def mean_ci(values, level: float = 0.95, *, bootstrap: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and a percentile-bootstrap confidence interval: (mean, low, high)."""
    v = np.asarray(values, float).ravel()
    if v.size == 0:
        raise ValueError("values: need at least one value")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(bootstrap, v.size))].mean(1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def standardized_shift(score_in, score_out, *, bootstrap: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """How far removing a target moves its score, in units of the spread between training seeds.

    ``score_in[k]``, ``score_out[k]``: the target's score (e.g. LiRA's φ) on the model trained with
    seed ``k`` on S(T) and on S(T ∖ {target}). Returns (shift, low, high): shift = (mean in − mean out) /
    pooled standard deviation over seeds, with a percentile-bootstrap interval that resamples seeds
    (pairs). For two Gaussians of equal spread, the shift is 1/σ of a Gaussian mechanism (chapter 3)."""
    a, b = np.asarray(score_in, float).ravel(), np.asarray(score_out, float).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"score_in and score_out: need the same number (≥ 2) of seeds, got {a.size} and {b.size}")

    def d(i):
        x, y = a[i], b[i]
        sd = np.sqrt(0.5 * (x.var(-1, ddof=1) + y.var(-1, ddof=1)))
        return (x.mean(-1) - y.mean(-1)) / np.maximum(sd, 1e-12)

    rng = np.random.default_rng(seed)
    boot = d(rng.integers(0, a.size, size=(bootstrap, a.size)))
    q = (1 - level) / 2
    return float(d(np.arange(a.size))), float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))


__all__ = ["Removal", "removal_shifts", "loglog_slopes", "mean_ci", "standardized_shift"]
