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
    measurement: ideally 0). With ``perturb=True``: ``perturbed[t, g, r, j]`` = ‖s_j(T_n) − s_j(T_n^ξ)‖,
    where T_n^ξ is T_n with x_r replaced by x_r + ξ_r, a random perturbation of the norm that moves the
    real mean exactly as far as removing x_r does (NaN where x_r is an initialiser);
    ``perturbation_norm[g, r]`` = ‖ξ_r‖ at n = ``n_grid[g]``. ``alignment[t, g, r]``: the cosine between
    the mean shift of the synthetic images, mean_j (s_j(T_n) − s_j(T_n ∖ {x_r})), and x_r − mean(T_n ∖ {x_r})
    — 1 for linear DM run to its fixed point; ``perturbed_alignment``: the same between mean_j (s_j(T_n^ξ) − s_j(T_n)) and ξ_r.
    """
    n_grid: tuple[int, ...]
    m: int
    iterations: tuple[int, ...]
    removed: torch.Tensor  # [removed] positions (in the class's order) of the removed samples
    initialiser: torch.Tensor  # [removed] bool: the removed sample initialised a synthetic image
    shift: torch.Tensor  # [iterations, n, removed, m]
    control: torch.Tensor  # [iterations, n, m]
    images: torch.Tensor  # [iterations, n, m, C, H, W]: the synthetic set of each T_n after each iteration count
    alignment: torch.Tensor | None = None  # [iterations, n, removed]
    perturbed: torch.Tensor | None = None  # [iterations, n, removed, m], NaN for initialisers
    perturbed_alignment: torch.Tensor | None = None  # [iterations, n, removed], NaN for initialisers
    perturbation_norm: torch.Tensor | None = None  # [n, removed], NaN for initialisers
    config: dict = field(default_factory=dict)

    @property
    def set_shift(self) -> torch.Tensor:
        """‖S(T) − S(T ∖ {x_r})‖_F: [iterations, n, removed]."""
        return self.shift.pow(2).sum(-1).sqrt()

    @property
    def perturbed_set_shift(self) -> torch.Tensor:
        """‖S(T) − S(T^ξ)‖_F: [iterations, n, removed] (NaN for initialisers; needs ``perturb=True``)."""
        if self.perturbed is None:
            raise ValueError("this measurement ran without perturb=True: there is no perturbed run")
        return self.perturbed.pow(2).sum(-1).sqrt()


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


def equal_norm_perturbations(x: torch.Tensor, n_grid: Sequence[int], removed: torch.Tensor, *,
                             seed: int = 0) -> torch.Tensor:
    """x_r + ξ for every n of ``n_grid`` and removed position r: [n, removed, C, H, W].

    ξ points in a random direction (isotropic Gaussian, one direction per r, drawn from ``seed``, the same
    for every n) and has the norm ‖x_r − mean(T_n ∖ {x_r})‖, so that replacing x_r by x_r + ξ moves the
    mean of T_n by ξ/n — exactly as far as removing x_r moves it, (x_r − mean(T_n ∖ {x_r}))/n — but in a
    direction that carries nothing about x_r."""
    gen = torch.Generator().manual_seed(int(seed) ^ 0x9E3779B9)  # a stream of its own, not DM's
    u = torch.randn(len(removed), *x.shape[1:], generator=gen).to(x.device, x.dtype)
    u = u / u.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
    out = []
    for n in n_grid:
        xr = x[removed]
        loo_mean = (x[:n].sum(0, keepdim=True) - xr) / (n - 1)  # [R, C, H, W]
        norm = (xr - loo_mean).flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        out.append(xr + norm * u)
    return torch.stack(out)


def removal_shifts(x: torch.Tensor, n_grid: Sequence[int], m: int, removed: Sequence[int], *,
                   init: Sequence[int] | None = None, substitute: int | None = None, perturb: bool = False,
                   iterations: int | Sequence[int] = 100, arch: str = "convnet", width: int = 128, depth: int = 3,
                   lr_img: float = 1.0, momentum: float = 0.5, seed: int = 0,
                   device=None) -> Removal:
    """Condense T_n = ``x[:n]`` and every T_n ∖ {``x[r]``} with DM, for every n in ``n_grid``, in one
    call that shares all random draws; return how far each synthetic image moved.

    ``x`` [N, C, H, W]: the samples of *one* class, in a random order. ``init``: positions of the
    ``m`` samples that initialise S (default: the first m). ``removed``: positions below
    ``min(n_grid)``; those that are initialisers are replaced in their slot by ``substitute``
    (default: the first position that is neither an initialiser nor removed). ``perturb``: also
    condense, in the same call, T_n with each removed non-initialiser x_r replaced by x_r + ξ_r
    (:func:`equal_norm_perturbations`, drawn from ``seed``): a change of T_n as large as the removal's
    that carries no information about x_r — the control that tells "the set depends on x_r" from "any
    change this small moves the set". DM runs as the reference does it (SGD with momentum on the
    images, a fresh random network per iteration) but with full batches and without augmentation — see
    the module's docstring for why. ``iterations``: a number, or several (the run goes to the largest
    and keeps a snapshot at each).
    """
    its, n_grid, removed, init_t, hit, substitute = _removal_positions(x, n_grid, m, removed, init, substitute,
                                                                       iterations)
    # the measurement: one DM call, the same random draws for every run
    R, G, n_max = len(removed), len(n_grid), max(n_grid)
    other = (~hit.any(1)).nonzero().flatten() if perturb else torch.zeros(0, dtype=torch.long)
    P = len(other)  # per n: T_n, T_n again (control), each T_n ∖ {x_r}, each T_n with x_r + ξ_r
    runs = 2 + R + P
    pool = x[:n_max]
    if P:  # the perturbed copies join the pool after x[:n_max]; run (g, 2 + R + p) swaps x_r for its copy
        moved = equal_norm_perturbations(x, n_grid, removed[other], seed=seed)  # [G, P, C, H, W]
        pool = torch.cat([pool, moved.flatten(0, 1).to(x.dtype)])
    members = torch.zeros(G, runs, len(pool), dtype=torch.bool)
    for g, n in enumerate(n_grid):
        members[g, :, :n] = True
        members[g, 2 + R + torch.arange(P), removed[other]] = False
        members[g, 2 + R + torch.arange(P), n_max + g * P + torch.arange(P)] = True
    members[:, 2 + torch.arange(R), removed] = False
    inits = init_t.expand(G, runs, m).clone()
    inits[:, 2:2 + R] = torch.where(hit, torch.tensor(substitute), init_t.expand(R, m))
    y = torch.zeros(len(pool), dtype=torch.long)
    sets = distribution_matching(pool, y, ipc=m, init=inits.view(G * runs, m), iterations=its[-1],
                                 lr_img=lr_img, momentum=momentum, batch_real=None, augment=None, arch=arch,
                                 width=width, depth=depth, num_classes=1, seed=seed,
                                 members=members.view(G * runs, len(pool)), snapshots=its, device=device,
                                 desc=f"DM leave-one-out m={m}")
    imgs = torch.stack([torch.stack([s.history["snapshots"][t] for s in sets]) for t in its])
    imgs = imgs.view(len(its), G, runs, m, *x.shape[1:])
    diff = lambda a, b: (a - b).flatten(-3).norm(dim=-1)
    config = dict(arch=arch, width=width, depth=depth, lr_img=lr_img, momentum=momentum, seed=seed,
                  substitute=substitute, init=init_t.tolist(), perturb=perturb)
    # directions: how much of the set's mean shift points along what changed in T_n
    base = imgs[:, :, :1]
    xr = x[removed].flatten(1).cpu()
    loo = torch.stack([(x[:n].flatten(1).sum(0).cpu() - xr) / (n - 1) for n in n_grid])  # [G, R, d]
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b.to(a), dim=-1)
    alignment = cos((base - imgs[:, :, 2:2 + R]).mean(3).flatten(-3), xr - loo)
    out = Removal(n_grid, m, its, removed, hit.any(1), diff(base, imgs[:, :, 2:2 + R]),
                  diff(imgs[:, :, 0], imgs[:, :, 1]), imgs[:, :, 0], alignment=alignment, config=config)
    if perturb:
        nan = lambda *shape: torch.full(shape, float("nan"))
        out.perturbed, out.perturbed_alignment = nan(len(its), G, R, m), nan(len(its), G, R)
        out.perturbation_norm = nan(G, R)
        if P:
            xi = (moved - x[removed[other]]).flatten(2).cpu()  # [G, P, d]
            out.perturbed[:, :, other] = diff(base, imgs[:, :, 2 + R:])
            out.perturbed_alignment[:, :, other] = cos((imgs[:, :, 2 + R:] - base).mean(3).flatten(-3), xi)
            out.perturbation_norm[:, other] = xi.norm(dim=-1)
    return out


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


def unit_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of one value per independent unit, with a Student-t interval: (mean, low, high).

    Use it when the values that vary independently are few: in chapter 6 the units are the repeats (each
    its own class, sample order and network draws); the samples removed within a repeat share all three,
    so they are averaged into their repeat's value first, and the interval is over repeats. With a handful
    of units a percentile bootstrap under-covers (it never sees more spread than the units show: 4 units
    have 35 distinct resamples); the t interval widens as the units get fewer (t at 97.5% with 3 degrees of
    freedom is 3.18). It assumes the units' values are roughly normal."""
    from scipy.stats import t as student_t
    v = np.asarray(values, float).ravel()
    if v.size < 2:
        raise ValueError(f"values: need at least two independent units, got {v.size}")
    half = student_t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


@dataclass
class Comparison:
    """:func:`compare_units`' verdict on a difference (one value per independent unit) against 0."""
    mean: float
    low: float  # the ``level`` interval (two-sided)
    high: float
    tost_low: float  # the 1 − 2α interval of the two one-sided tests (equivalence)
    tost_high: float
    margin: float  # equivalence margin, in the units of the values
    detectable: float  # the smallest true difference these units detect with probability ``power``
    units: int
    equivalent: bool  # the 1 − 2α interval lies within ±margin
    verdict: str  # "larger", "smaller", "equivalent" or "not distinguishable"


def compare_units(values, margin: float, *, level: float = 0.95, power: float = 0.8) -> Comparison:
    """A verdict on a paired difference, given one value per independent unit (e.g. a repeat's mean log
    ratio of two shifts): "larger" or "smaller" when the ``level`` t interval excludes 0; otherwise
    "equivalent" when the two one-sided tests, each at α = 1 − ``level``, put it within ±``margin``
    (the 1 − 2α interval, 90% for a 95% ``level``, inside ±margin); otherwise "not distinguishable" at
    this number of units. ``detectable``: the smallest true difference these units detect with
    probability ``power`` (two-sided t test; the usual approximation (t_{1−α/2} + t_power)·sd/√units)."""
    from scipy.stats import t as student_t
    if margin <= 0:
        raise ValueError(f"margin={margin}: must be positive")
    v = np.asarray(values, float).ravel()
    mean, low, high = unit_ci(v, level)
    _, tlo, thi = unit_ci(v, 2 * level - 1)  # each one-sided test at α = 1 − level
    df, se = v.size - 1, v.std(ddof=1) / np.sqrt(v.size)
    detectable = float((student_t.ppf(0.5 + level / 2, df) + student_t.ppf(power, df)) * se)
    equivalent = -margin < tlo and thi < margin
    verdict = ("larger" if low > 0 else "smaller" if high < 0 else
               "equivalent" if equivalent else "not distinguishable")
    return Comparison(mean, low, high, tlo, thi, float(margin), detectable, v.size, bool(equivalent), verdict)


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


__all__ = ["Removal", "removal_shifts", "equal_norm_perturbations", "loglog_slopes", "mean_ci", "unit_ci",
           "Comparison", "compare_units", "standardized_shift"]
