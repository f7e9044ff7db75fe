"""Empirical privacy audits in one run: canaries included independently, guesses, an ε lower bound.

The audit of Steinke, Nasr & Jagielski ("Privacy Auditing with One (1) Training Run", NeurIPS 2023):

1. **Canaries.** ``m`` records, each included in the private data independently with probability ½
   (:func:`inclusions`: the bits come from a *public* seed; the mechanism's own coins come from a
   separate, secret generator).
2. **One run** of the mechanism on the private data with the included canaries.
3. **A score per canary** from what the auditor sees (the released model or set: black box; every
   release of the mechanism: white box), higher for "included".
4. **Guesses.** The auditor abstains on all but the ``k₊`` highest-scoring canaries (guessed IN) and
   the ``k₋`` lowest (guessed OUT): ``r = k₊ + k₋`` guesses, ``v`` of them right.
5. **The bound** (their Theorem 7, for (ε, δ)-DP with δ ≥ 0): if the mechanism is (ε, δ)-DP, then
   ``P[v or more right] ≤ β + 2mδ · max_{1≤i≤v} (P[W ≥ v − i] − β) / i``, with
   ``W ~ Binomial(r, e^ε / (1 + e^ε))`` and ``β = P[W ≥ v]`` (:func:`p_value`). The audit certifies
   every ε whose p-value is at most α (:func:`epsilon_lower`).

Why one run suffices: each canary's bit is an independent fair coin, so under (ε, δ)-DP each guess is
right with probability at most about e^ε/(1 + e^ε) *whatever the other canaries did* — the guesses
behave like r coin flips of that bias (up to the δ term), and a binomial tail bounds how many can be
right. Scores that share models and examples without independent inclusions (the leave-one-out LiRA
scores of chapters 4–5) have no such structure: their errors are correlated, and Clopper–Pearson
intervals over them are too narrow.

**Choosing k₊ and k₋.** Guess counts picked after looking at how many guesses came out right would
test many hypotheses and report the best. :func:`audit` takes a grid of (k₊, k₋) declared *before* the
run and corrects for it by Bonferroni: each pair is tested at α / (number of pairs), and the largest
ε certified by any of them holds at level α.

White-box canaries for chapter 8's mechanisms (:class:`EmbeddingCanaries` for DP-DM,
:class:`GradientCanaries` for DP-SGD) are records whose clipped contribution is a fixed direction —
the worst case the sensitivity analysis allows; image canaries for the black box are mislabelled
training images (:func:`mislabelled_canaries`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

DEFAULT_ALPHA = 0.05


# --- the bound ---------------------------------------------------------------------------------------

def _check_counts(canaries: int, guesses: int, correct: int, delta: float) -> None:
    for name, value in (("canaries", canaries), ("guesses", guesses), ("correct", correct)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name}={value}: must be a whole number ≥ 0")
    if canaries < 1:
        raise ValueError(f"canaries={canaries}: must be ≥ 1")
    if guesses > canaries:
        raise ValueError(f"guesses={guesses} > canaries={canaries}: at most one guess per canary")
    if correct > guesses:
        raise ValueError(f"correct={correct} > guesses={guesses}: at most every guess is right")
    if not 0 <= delta < 1:
        raise ValueError(f"delta={delta}: must lie in [0, 1)")


def p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float = 0.0) -> float:
    """The p-value of ``correct`` or more right guesses out of ``guesses``, for a mechanism that is
    (``epsilon``, ``delta``)-DP, with ``canaries`` canaries each included independently with probability ½
    (Steinke, Nasr & Jagielski 2023, Theorem 7):

        β + 2·m·δ · max_{1≤i≤v} (P[W ≥ v − i] − β) / i,   W ~ Binomial(r, e^ε/(1 + e^ε)),  β = P[W ≥ v].

    The binomial tails are computed in log space (scipy's ``logsf`` and ``logpmf``); the differences
    P[W ≥ v − i] − β = P[v − i ≤ W < v] are cumulative sums of probabilities, never differences of
    nearly equal numbers. Returns a number in [0, 1]."""
    from scipy.special import expit
    from scipy.stats import binom
    _check_counts(canaries, guesses, correct, delta)
    if not epsilon >= 0:
        raise ValueError(f"epsilon={epsilon}: must be ≥ 0")
    m, r, v = int(canaries), int(guesses), int(correct)
    if v == 0:
        return 1.0
    q = float(expit(epsilon))  # e^ε/(1 + e^ε): the accuracy of ε-DP randomized response
    log_beta = float(binom.logsf(v - 1, r, q))  # log P[W ≥ v]
    p = math.exp(log_beta)
    if delta > 0:
        logpmf = binom.logpmf(np.arange(v - 1, -1, -1), r, q)  # log P[W = v − i], i = 1 … v
        log_between = np.logaddexp.accumulate(logpmf)  # log P[v − i ≤ W < v]
        log_max = float(np.max(log_between - np.log(np.arange(1, v + 1))))
        p += 2 * m * delta * math.exp(log_max)
    return min(p, 1.0)


@functools.lru_cache(maxsize=4096)  # pure; audits of many runs ask for the same few (m, r, v)
def epsilon_lower(canaries: int, guesses: int, correct: int, delta: float = 0.0,
                  alpha: float = DEFAULT_ALPHA) -> float:
    """The ε lower bound of a one-run audit: the largest ε such that every ε' ≤ ε has
    :func:`p_value` ≤ ``alpha`` — i.e. the audit rejects (ε', ``delta``)-DP at level α for all of them.

    The definition is valid whatever the shape of the p-value in ε: an (ε₀, δ)-DP mechanism yields a bound above ε₀
    only when the test of ε₀ itself rejects, which happens with probability at most α. The p-value
    rises with ε (tested over m, r, v and δ), so the search is a bisection — an upper end found by
    doubling, then halvings to 1e-7 — followed by a check of a grid of ε' below the result: should one of
    them not be rejected, the bound falls back to the last grid point below it that is (the search's
    assumption failed there). With 2·m·δ ≤ 1, one more right guess never lowers the bound, and a larger δ
    never raises it (both tested). Returns 0 when even ε = 0 is not rejected."""
    _check_counts(canaries, guesses, correct, delta)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: must lie in (0, 1)")
    ok = lambda e: p_value(canaries, guesses, correct, e, delta) <= alpha
    if not ok(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while ok(hi):  # p → 1 as ε → ∞ (every guess right is then expected), so this ends
        lo, hi = hi, 2 * hi
        if hi > 1e4:
            raise RuntimeError("epsilon_lower: no upper end below ε = 1e4 (the p-value does not rise with ε)")
    while hi - lo > 1e-7:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    grid = np.linspace(0.0, lo, 10)[:-1]  # grid[0] = 0 is rejected (checked above)
    first = next((i for i, e in enumerate(grid) if not ok(float(e))), None)
    return float(lo) if first is None else float(grid[first - 1])  # only ε' that are all rejected


# --- guesses and the audit ---------------------------------------------------------------------------

def inclusions(canaries: int, *, seed: int) -> torch.Tensor:
    """Which of ``canaries`` canaries go into the private data: bool [m], each True independently with
    probability ½, drawn from the *public* ``seed`` (the auditor knows the bits; the mechanism's own
    randomness must come from a different, secret generator)."""
    if int(canaries) != canaries or canaries < 1:
        raise ValueError(f"canaries={canaries}: must be a whole number ≥ 1")
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 0xCA4A]).generate_state(1)[0]))
    return torch.rand(int(canaries), generator=g) < 0.5


def guess_grid(canaries: int, fractions: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """The declared (k₊, k₋) pairs of an audit from fractions of the ``canaries``: e.g. (0.1, 0.0) guesses
    the top tenth IN and abstains on the rest. Pairs that round to the same counts are kept once."""
    pairs = []
    for fp, fm in fractions:
        if not (0 <= fp <= 1 and 0 <= fm <= 1 and fp + fm <= 1 and fp + fm > 0):
            raise ValueError(f"guess fractions ({fp}, {fm}): each in [0, 1], together in (0, 1]")
        k = (int(round(fp * canaries)), int(round(fm * canaries)))
        if sum(k) > 0 and k not in pairs:
            pairs.append(k)
    if not pairs:
        raise ValueError(f"guess fractions {fractions}: every pair rounds to no guess at {canaries} canaries")
    return pairs


def guesses(scores, k_plus: int, k_minus: int) -> np.ndarray:
    """+1 for the ``k_plus`` highest scores (guessed IN), −1 for the ``k_minus`` lowest (guessed OUT), 0 for
    the rest (abstain). Ties are broken by position (a rule that does not look at the inclusions)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not np.isfinite(s).all():
        raise ValueError("scores: contain NaN or infinity")
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > len(s):
        raise ValueError(f"k_plus={k_plus}, k_minus={k_minus}: each ≥ 0, together at most the {len(s)} canaries")
    order = np.argsort(s, kind="stable")  # ascending
    g = np.zeros(len(s), dtype=np.int8)
    g[order[len(s) - k_plus:]] = 1
    g[order[:k_minus]] = -1
    return g


@dataclass
class AuditResult:
    """A one-run audit: the ε it certifies at level ``alpha`` and the guesses that certified it."""
    epsilon: float  # the largest ε certified by any declared (k₊, k₋), each tested at alpha / tests
    canaries: int  # m
    k_plus: int  # of the pair that certified ``epsilon``
    k_minus: int
    correct: int  # v of that pair
    delta: float
    alpha: float
    tests: int  # declared (k₊, k₋) pairs (Bonferroni)
    rows: list = field(default_factory=list)  # (k₊, k₋, v, ε) of every declared pair

    @property
    def guesses(self) -> int:
        return self.k_plus + self.k_minus


def audit(scores, included, *, grid: Sequence[tuple[int, int]], delta: float,
          alpha: float = DEFAULT_ALPHA) -> AuditResult:
    """Audit from one run: ``scores`` [m] (higher = guessed IN), ``included`` [m] the canaries' true bits,
    ``grid`` the (k₊, k₋) pairs declared in advance. Each pair is tested at level α / len(grid)
    (Bonferroni), so the largest ε any pair certifies holds at level ``alpha``."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    inc = (included.cpu().numpy() if torch.is_tensor(included) else np.asarray(included)).astype(bool).ravel()
    if len(s) != len(inc):
        raise ValueError(f"scores has {len(s)} entries but included {len(inc)}: one score per canary")
    grid = [(int(a), int(b)) for a, b in grid]
    if not grid:
        raise ValueError("grid: declare at least one (k_plus, k_minus) pair")
    level = alpha / len(grid)
    rows = []
    for kp, km in grid:
        g = guesses(s, kp, km)
        v = int(((g == 1) & inc).sum() + ((g == -1) & ~inc).sum())
        rows.append((kp, km, v, epsilon_lower(len(s), kp + km, v, delta, level)))
    best = max(rows, key=lambda row: row[3])
    return AuditResult(best[3], len(s), best[0], best[1], best[2], delta, alpha, len(grid), rows)


# --- white-box scores --------------------------------------------------------------------------------

def release_scores(projections, rate: float, scale: float | None = None) -> np.ndarray:
    """Per-canary scores from what each release shows of it: ``projections`` [R, m] = the release of
    iteration t projected on canary i's (unit, clipped to C) direction, divided by C — about 1 + noise
    when the canary was in the data and the Poisson sample (rate ``rate``) took it, noise otherwise.

    The score is the log-likelihood ratio of "included" against "not" for that model, summed over the
    releases: Σ_t log(1 − q + q·exp((s_t − ½)/τ²)), τ the noise's standard deviation — by default
    estimated from the projections themselves (1.4826 × their median absolute deviation, which the
    rare sampled canaries hardly move). The auditor may use any function of what it sees: the bound
    holds for every score; a better score only buys power."""
    s = np.asarray(projections, dtype=np.float64)
    if s.ndim != 2 or not np.isfinite(s).all():
        raise ValueError(f"projections: expected finite values [releases, canaries], got shape {s.shape}")
    if not 0 < rate <= 1:
        raise ValueError(f"rate={rate}: must lie in (0, 1]")
    if scale is None:
        scale = 1.4826 * float(np.median(np.abs(s - np.median(s))))
    tau2 = max(float(scale), 1e-3) ** 2
    with np.errstate(divide="ignore"):
        log_out = math.log1p(-rate) if rate < 1 else -np.inf
    return np.logaddexp(log_out, math.log(rate) + (s - 0.5) / tau2).sum(0)


def simulate_release_audit(canaries: int, noise_multiplier: float, rate: float, releases: int, *,
                           fractions: Sequence[tuple[float, float]], delta: float, alpha: float = DEFAULT_ALPHA,
                           seed: int = 0, chunk: int = 20000) -> AuditResult:
    """The white-box audit of an idealised mechanism, simulated: ``canaries`` canary records, each
    included with probability ½, each taken by every one of ``releases`` Poisson samples with probability
    ``rate``; every release shows each canary's projection, 1 (sampled) or 0 (not) plus Gaussian noise of
    standard deviation σ = ``noise_multiplier`` (nothing else interferes: the best case for the auditor of a
    subsampled Gaussian mechanism). Scored by :func:`release_scores` with the true σ and audited on the
    declared ``fractions`` grid. What the audit of a real run can certify at most, at any m — in seconds."""
    rng = np.random.default_rng(seed)
    included = rng.random(canaries) < 0.5
    scores = np.empty(canaries)
    for a in range(0, canaries, chunk):  # canaries are independent: score them in chunks
        inc = included[a:a + chunk]
        taken = (rng.random((releases, len(inc))) < rate) & inc
        proj = taken + noise_multiplier * rng.standard_normal((releases, len(inc)))
        scores[a:a + chunk] = release_scores(proj, rate, scale=noise_multiplier)
    return audit(scores, included, grid=guess_grid(canaries, fractions), delta=delta, alpha=alpha)


def _directions(m: int, dim: int, generator: torch.Generator, zero_sum: bool) -> torch.Tensor:
    u = torch.randn(m, dim, generator=generator, dtype=torch.float64)
    if zero_sum:  # orthogonal to (1, …, 1), along which every ReLU embedding has a large component
        u = u - u.mean(1, keepdim=True)
    return (u / u.norm(dim=1, keepdim=True)).float()


class EmbeddingCanaries:
    """White-box canaries for DP-DM: ``m`` records whose embedding, under every network, is a fixed
    direction of norm ``norm`` (> C, so that clipping binds) in the block of their label — the worst case
    the sensitivity argument allows (one clipped embedding of norm C in one class sum), one per canary. ``included`` [m] are the public bits.

    Passed to :func:`dcprivacy.dp.dp_distribution_matching` as ``audit=``: every iteration calls
    :meth:`sample` (the included canaries that the secret Poisson sample takes join the real ones) and
    :meth:`observe` with the release — the noisy clipped class sums — which is projected on every
    canary's direction. :meth:`scores` turns the projections into per-canary scores."""

    def __init__(self, included: torch.Tensor, dim: int, num_classes: int, *, rate: float, clip: float, seed: int,
                 secret_seed: int, norm: float | None = None, device=None):
        self.included, self.rate = included.bool().cpu(), float(rate)
        m = len(self.included)
        g = torch.Generator().manual_seed(int(seed))
        self.labels = torch.randint(num_classes, (m,), generator=g)
        self.directions = _directions(m, dim, g, zero_sum=True)  # unit rows
        self.clip = float(clip)
        self.norm = 2.0 * self.clip if norm is None else float(norm)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._rows = (self.directions * self.norm).to(self.device)
        self._labels = self.labels.to(self.device)
        self._dirs = self.directions.to(self.device)
        self._members = self.included.nonzero().flatten()
        self._sampler = torch.Generator().manual_seed(int(secret_seed))  # secret: which canaries a step takes
        self.projections: list[torch.Tensor] = []

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings [b, dim] and labels [b] of the included canaries that this iteration's Poisson
        sample (the mechanism's rate, secret) takes."""
        take = self._members[torch.rand(len(self._members), generator=self._sampler) < self.rate].to(self.device)
        return self._rows[take], self._labels[take]

    def observe(self, release: torch.Tensor) -> None:
        """Record the release [num_classes, dim] projected on each canary's direction, over C."""
        self.projections.append(((release[self._labels] * self._dirs).sum(1) / self.clip).float().cpu())

    def scores(self) -> np.ndarray:
        """Per-canary scores from every release observed (:func:`release_scores`)."""
        return release_scores(torch.stack(self.projections).numpy(), self.rate)


class GradientCanaries:
    """White-box canaries for DP-SGD: ``m`` records whose per-example gradient is a fixed direction of
    norm ``norm`` (> C, so that clipping binds) in parameter space, whatever the model — the worst case
    the clipping argument allows. ``included`` [m] are the public bits.

    Passed to :func:`dcprivacy.dp.dpsgd_train_models` as ``audit=``: after every backward pass
    :meth:`insert` appends the per-example gradients of the included canaries that the step's secret
    Poisson sample takes to Opacus's per-example gradients (which the optimizer then clips, sums and
    noises); after the step :meth:`observe` projects the released noisy gradient sum on every canary's
    direction (what an auditor who sees every intermediate model can recover)."""

    def __init__(self, included: torch.Tensor, dim: int, *, rate: float, clip: float, seed: int, secret_seed: int,
                 norm: float | None = None, device=None):
        self.included, self.rate = included.bool().cpu(), float(rate)
        g = torch.Generator().manual_seed(int(seed))
        self.directions = _directions(len(self.included), dim, g, zero_sum=False)
        self.clip = float(clip)
        self.norm = 2.0 * self.clip if norm is None else float(norm)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._dirs = self.directions.to(self.device)
        self._members = self.included.nonzero().flatten()
        self._sampler = torch.Generator().manual_seed(int(secret_seed))
        self.projections: list[torch.Tensor] = []

    def insert(self, params: Sequence[torch.Tensor]) -> None:
        """Append the gradients of the included canaries that this step's Poisson sample (the mechanism's
        rate, secret) takes to every parameter's ``grad_sample``."""
        take = self._members[torch.rand(len(self._members), generator=self._sampler) < self.rate].to(self.device)
        rows = self._dirs[take] * self.norm
        start = 0
        for p in params:
            n = p.numel()
            extra = rows[:, start:start + n].reshape(len(take), *p.shape).to(p.grad_sample.dtype)
            p.grad_sample = torch.cat([p.grad_sample, extra])
            start += n
        if start != self._dirs.shape[1]:
            raise ValueError(f"GradientCanaries: the model has {start} parameters, the canaries {self._dirs.shape[1]}")

    def observe(self, params: Sequence[torch.Tensor], expected_batch: float) -> None:
        """Record the step's noisy gradient sum (``p.grad`` × the public ``expected_batch``) projected on
        each canary's direction, over C."""
        flat = torch.cat([p.grad.reshape(-1) for p in params]) * expected_batch
        self.projections.append((self._dirs @ flat / self.clip).float().cpu())

    def scores(self) -> np.ndarray:
        """Per-canary scores from every release observed (:func:`release_scores`)."""
        return release_scores(torch.stack(self.projections).numpy(), self.rate)


# --- black-box canaries --------------------------------------------------------------------------------

def mislabelled_canaries(train_x: torch.Tensor, train_y: torch.Tensor, canaries: int, *, exclude: torch.Tensor,
                         num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``canaries`` training images outside ``exclude`` (the pool), each given a random *wrong* label:
    (images, labels, dataset indices). A mislabelled image contradicts what every other image of its look
    teaches, so a model that saw it must memorise it — the easiest canary to detect from the model
    alone. Drawn from the public ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    free = torch.ones(len(train_y), dtype=torch.bool)
    free[exclude] = False
    idx = free.nonzero().flatten()
    idx = idx[torch.randperm(len(idx), generator=g)[:canaries]]
    if len(idx) < canaries:
        raise ValueError(f"canaries={canaries}: only {len(idx)} training images lie outside the pool")
    shift = torch.randint(1, num_classes, (canaries,), generator=g)
    return train_x[idx], (train_y[idx] + shift) % num_classes, idx


# --- chapter 8: one audited run of each pipeline ----------------------------------------------------------

AUDITED = ("real", "dm", "dp-dm-broken", "dp-dm", "dp-sgd")  # what :func:`run_audit` runs


@dataclass
class AuditedRun:
    """One run of a pipeline with both kinds of canaries, and what each auditor certifies from it."""
    name: str
    claimed_epsilon: float  # what the pipeline's accountant reports (∞: no noise, no claim)
    noise_multiplier: float  # the σ the mechanism actually used
    white: AuditResult  # white box: canary records, every release
    black: AuditResult  # black box: mislabelled images, the released model(s)
    accuracy: float  # test accuracy of the released model(s), canaries included in training
    white_scores: np.ndarray = field(repr=False, default=None)
    black_scores: np.ndarray = field(repr=False, default=None)
    seconds: float = 0.0


# The canaries' own secret stream: apart from every stream the mechanisms draw from the same secret
# (dp._subseed(secret, 0 / 1): DP-DM's noise and Poisson samples, DP-SGD's samples and noise), so that which
# canaries a step takes is independent of which records it takes and of the noise.
CANARY_STREAM = 0xCA4A


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def _canary_scores(models, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """The black-box score of each image canary: LiRA's φ of its (wrong) label, averaged over the image
    and its mirror and over the released models."""
    from .mia import logit_scaled_confidence, query_logits
    phi = logit_scaled_confidence(query_logits(models, images, augment="flip"), labels.view(1, -1, 1).cpu())
    return phi.mean((0, 2)).numpy()


def run_audit(name: str, x: torch.Tensor, y: torch.Tensor, canary_x: torch.Tensor, canary_y: torch.Tensor,
              test_x: torch.Tensor, test_y: torch.Tensor, *, cfg, seed: int = 0, device=None) -> AuditedRun:
    """One audited run of pipeline ``name`` (see ``AUDITED``) on the real pool ``x``/``y``, with two
    independent sets of canaries, each included with probability ½ by public bits (:func:`inclusions`):

    - ``cfg.audit_image_canaries`` image canaries ``canary_x``/``canary_y`` (e.g. :func:`mislabelled_canaries`)
      join the training images; the **black-box** auditor scores them by the released model(s)
      (:func:`_canary_scores`);
    - ``cfg.audit_canaries`` canary records (:class:`EmbeddingCanaries` for DM, :class:`GradientCanaries`
      for SGD) join the mechanism's records; the **white-box** auditor scores them from every release
      (:func:`release_scores`).

    Pipelines: ``"real"`` — the ConvNet trained on the pool by DP-SGD's code without noise (σ = 0:
    clipped SGD, no claim); ``"dm"`` — DP-DM without noise (no claim); ``"dp-dm"``, ``"dp-sgd"`` — at
    ``cfg.attack_epsilon``; ``"dp-dm-broken"`` — DP-DM whose mechanism adds ``1 / cfg.audit_noise_divisor``
    of the noise while the claim stays the accountant's ε for the full σ (a bug the audit must catch).
    DM's released set trains ``cfg.audit_models`` ConvNets (``cfg.eval_epochs`` epochs with DSA, as
    chapter 8 evaluates a release). Each auditor guesses on the declared grid ``cfg.audit_guesses`` (fractions of its
    canaries, Bonferroni) at level ``cfg.audit_alpha`` and δ = ``cfg.delta``. The mechanism's coins come
    from a secret seed derived apart from the public ones (reproducible here)."""
    import time

    from . import dp
    from .augment import DEFAULT_STRATEGY
    from .nets import make_net, net_factory
    from .train import TrainConfig, accuracy, train_models
    if name not in AUDITED:
        raise ValueError(f"pipeline {name!r}: allowed values are {', '.join(AUDITED)}")
    started = time.time()
    device = torch.device(device) if device is not None else x.device
    num_classes, shape = int(y.max()) + 1, tuple(x.shape[1:])
    m_img, m_rec = int(cfg.audit_image_canaries), int(cfg.audit_canaries)
    if len(canary_x) != m_img:
        raise ValueError(f"canary_x has {len(canary_x)} images, cfg.audit_image_canaries = {m_img}")
    inc_img, inc_rec = inclusions(m_img, seed=_seed(seed, 1)), inclusions(m_rec, seed=_seed(seed, 2))
    data_x = torch.cat([x.cpu(), canary_x.cpu()[inc_img]]).to(device)
    data_y = torch.cat([y.cpu(), canary_y.cpu()[inc_img]]).to(device)
    declared = len(x) + m_img / 2  # public: the pool's size by design plus the canaries expected in
    secret = _seed(seed, 0x5EC2E7, AUDITED.index(name))  # the mechanism's coins (and the canaries' samples)
    kw = dict(clip=cfg.clip, seed=_seed(seed, 3), secret_seed=_seed(secret, CANARY_STREAM), device=device)
    net_kw = dict(channels=shape[0], num_classes=num_classes, im_size=shape[-1], width=cfg.width)
    if name in ("dm", "dp-dm", "dp-dm-broken"):
        q, R = cfg.sample_rate, cfg.iterations
        claim = 0.0 if name == "dm" else dp.calibrate_noise(cfg.attack_epsilon, cfg.delta, q, R, cfg.accountant)
        sigma = claim / (cfg.audit_noise_divisor if name == "dp-dm-broken" else 1.0)
        records = EmbeddingCanaries(inc_rec, make_net("convnet", **net_kw).feature_dim, num_classes, rate=q, **kw)
        syn = dp.dp_distribution_matching(
            data_x, data_y, ipc=cfg.ipc, num_classes=num_classes, class_size=declared / num_classes,
            noise_multiplier=sigma, delta=cfg.delta, sample_rate=q, iterations=R, clip=cfg.clip, lr_img=cfg.lr_img,
            momentum=cfg.momentum, width=cfg.width, accountant=cfg.accountant, seed=seed, secret_seed=secret,
            device=device, desc=f"audit {name}", audit=records)
        factory = net_factory("convnet", **net_kw)
        models = train_models(factory, syn.images.to(device), syn.labels.to(device),
                              seeds=[seed + i for i in range(cfg.audit_models)], device=device, aug_seed=seed,
                              config=TrainConfig(epochs=cfg.eval_epochs, augment=DEFAULT_STRATEGY),
                              desc=f"audit {name} models")
        claimed = dp.epsilon(claim, q, R, cfg.delta, cfg.accountant)
    else:
        factory = net_factory("convnet", **net_kw)
        dim = sum(p.numel() for p in factory(seed).parameters())
        records = GradientCanaries(inc_rec, dim, rate=cfg.dpsgd_sample_rate, **kw)
        res = dp.dpsgd_train_models(
            factory, data_x, data_y, seeds=[seed], target_epsilon=math.inf if name == "real" else cfg.attack_epsilon,
            delta=cfg.delta, dataset_size=declared, epochs=cfg.dpsgd_epochs, sample_rate=cfg.dpsgd_sample_rate,
            clip=cfg.clip, lr=cfg.dpsgd_lr, accountant=cfg.accountant, secret_seeds=[secret], device=device,
            desc=f"audit {name}", audit=records)
        models, sigma, claimed = res.models, res.noise_multiplier, res.epsilon
    grid = lambda m: guess_grid(m, cfg.audit_guesses)
    white_scores, black_scores = records.scores(), _canary_scores(models, canary_x.to(device), canary_y)
    acc = float(accuracy(models, test_x.to(device), test_y.to(device)).mean())
    return AuditedRun(name, claimed, sigma,
                      audit(white_scores, inc_rec, grid=grid(m_rec), delta=cfg.delta, alpha=cfg.audit_alpha),
                      audit(black_scores, inc_img, grid=grid(m_img), delta=cfg.delta, alpha=cfg.audit_alpha),
                      acc, white_scores, black_scores, time.time() - started)


__all__ = ["p_value", "epsilon_lower", "inclusions", "guess_grid", "guesses", "AuditResult", "audit",
           "release_scores", "simulate_release_audit", "EmbeddingCanaries", "GradientCanaries", "mislabelled_canaries", "DEFAULT_ALPHA",
           "AUDITED", "AuditedRun", "run_audit"]
