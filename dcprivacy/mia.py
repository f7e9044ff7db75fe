"""Membership inference: was this example in the training set of that model?

The experiment of LiRA (Carlini et al., "Membership Inference Attacks From First Principles"):

1. :func:`membership_masks` splits a pool of examples over ``K`` runs so that every example is IN
   (trained on) for exactly half of them.
2. Each run trains a model (:func:`dcprivacy.train.train_models` takes the masks as ``members``)
   and every model scores every pool example: :func:`scores_from_models` gives LiRA's
   logit-scaled confidence φ (:func:`logit_scaled_confidence`), :func:`loss_scores` the negated
   cross-entropy of the loss attack (Yeom et al., 2018).
3. :func:`leave_one_out` attacks each run in turn with the other runs as its shadow models and
   returns an :class:`AttackResult` — scores and true labels of every (run, example) pair —
   for :mod:`dcprivacy.metrics`.

Attacks (``attack=``): ``"online"`` LiRA fits, per example, one Gaussian to the shadows' φ on
models trained WITH the example (IN) and one to those trained WITHOUT it (OUT), and scores the
target's φ by the log-likelihood ratio; ``"offline"`` fits the OUT Gaussian only and scores how
far above it the target's φ lies (one-sided); ``"global"`` is one threshold on the target's own
score for every example (with :func:`loss_scores`, the loss attack).

Everything after the models' outputs is numpy float64, vectorized over runs, examples and queries.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_ndtr

from . import metrics
from .train import predict

ATTACKS = ("online", "offline", "global")
AUGMENTS = ("none", "flip")
MIN_STD = 1e-4  # floor of a fitted std, relative to the pooled one (shadows whose φ all agree)


def membership_masks(runs: int, n: int, *, seed: int = 0) -> torch.Tensor:
    """LiRA's split of ``n`` pool examples over ``runs`` models: bool [runs, n], True = IN.

    Drawn as the reference does: a uniform ``runs × n`` matrix, ``argsort`` along the runs, and run
    ``i`` is IN for example ``j`` when ``order[i, j] < runs / 2``. Each column is a random
    permutation, so every example is IN for exactly ``runs / 2`` runs."""
    if int(runs) != runs or runs < 2 or runs % 2:
        raise ValueError(f"runs={runs}: must be an even number ≥ 2 (each example is IN for exactly runs/2 runs)")
    if int(n) != n or n < 1:
        raise ValueError(f"n={n}: the pool size must be a positive integer")
    order = np.random.default_rng(seed).uniform(size=(int(runs), int(n))).argsort(0)
    return torch.from_numpy(order < runs // 2)


# ---- scores from logits ---------------------------------------------------------------------------

def _logits_labels(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(logits).to(torch.float64)
    if z.dim() < 1 or z.shape[-1] < 2:
        raise ValueError(f"logits has shape {tuple(z.shape)}: the last dimension must hold ≥ 2 classes")
    y = torch.as_tensor(labels, device=z.device).long()
    try:
        y = y.expand(z.shape[:-1])
    except RuntimeError:
        raise ValueError(f"labels has shape {tuple(y.shape)}, which does not broadcast to logits.shape[:-1] = "
                         f"{tuple(z.shape[:-1])}; for logits [models, n, queries, classes] pass labels[:, None]") from None
    if y.numel() and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels: must lie in 0..{z.shape[-1] - 1} (the classes of the logits)")
    return z, y.unsqueeze(-1)


def logit_scaled_confidence(logits, labels) -> torch.Tensor:
    """LiRA's score φ = log p_y − log Σ_{y'≠y} p_{y'} = log(p_y / (1 − p_y)), float64, shape ``logits.shape[:-1]``.

    The softmax normaliser cancels, leaving φ = z_y − logsumexp_{y'≠y} z_{y'}: computed from the logits
    ``z`` [..., classes] without forming a probability, it stays exact when p_y rounds to 1 (margins of 1000).
    ``labels`` broadcast against ``logits.shape[:-1]``."""
    z, y = _logits_labels(logits, labels)
    others = z.scatter(-1, y, float("-inf"))
    return (z.gather(-1, y) - torch.logsumexp(others, -1, keepdim=True)).squeeze(-1)


def cross_entropy(logits, labels) -> torch.Tensor:
    """Per-example cross-entropy loss −log p_y in float64, shape ``logits.shape[:-1]``.

    Computed as log(1 + e^{−φ}) from φ (:func:`logit_scaled_confidence`), so that a tiny loss (a
    memorised example, p_y = 1 − 10⁻²⁰) keeps its digits instead of rounding to 0."""
    return torch.logaddexp(torch.zeros((), dtype=torch.float64), -logit_scaled_confidence(logits, labels))


def loss_scores(logits, labels) -> torch.Tensor:
    """The loss attack's score (Yeom et al., 2018): −loss, so that a member (low loss) scores high."""
    return -cross_entropy(logits, labels)


def query_logits(ens, x: torch.Tensor, *, augment: str = "none", batch_size: int = 256) -> torch.Tensor:
    """Logits of every model on every example and query: [N_models, n, A, classes].

    ``augment``: ``"none"`` (A = 1) or ``"flip"`` (A = 2: the image and its horizontal mirror, LiRA's
    default queries)."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r}: allowed values are {', '.join(map(repr, AUGMENTS))}")
    views = [x] if augment == "none" else [x, x.flip(-1)]
    return torch.stack([predict(ens, v, batch_size=batch_size) for v in views], dim=2)


def scores_from_models(ens, x: torch.Tensor, y: torch.Tensor, *, augment: str = "none",
                       batch_size: int = 256) -> torch.Tensor:
    """φ of every model (an :class:`~dcprivacy.train.Ensemble`) on every example and query: [N_models, n, A]."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    return logit_scaled_confidence(query_logits(ens, x, augment=augment, batch_size=batch_size),
                                   torch.as_tensor(y)[:, None])


# ---- LiRA ------------------------------------------------------------------------------------------

def _runs_array(scores, name: str) -> np.ndarray:
    """Scores [K, n] or [K, n, A] as float64 [K, n, A]."""
    s = scores.detach().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores)
    s = s.astype(np.float64)
    if s.ndim == 2:
        s = s[..., None]
    if s.ndim != 3:
        raise ValueError(f"{name} has shape {s.shape}: expected [runs, n] or [runs, n, queries]")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: contains NaN or infinity; compute φ with logit_scaled_confidence (finite for any logits)")
    return s


def _mask_array(members, shape, name: str) -> np.ndarray:
    m = members.detach().cpu().numpy() if torch.is_tensor(members) else np.asarray(members)
    if m.shape != tuple(shape):
        raise ValueError(f"{name} has shape {m.shape}, expected {tuple(shape)} = (runs, n), one row per run")
    if m.dtype != bool:
        raise ValueError(f"{name}: must be a bool mask (True = the run trained on the example)")
    return m


def _balanced(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The IN and OUT shadows used for each example: the first ``n_j`` of each group in run order,
    ``n_j = min(#IN_j, #OUT_j)`` (as the reference does). Equal counts matter: in leave-one-out the
    target leaves its own group one shadow short, and a centre estimated from fewer shadows is
    noisier, which on its own pushes members' scores down (AUC below 0.5 with no signal at all)."""
    n = np.minimum(m.sum(0), (~m).sum(0))
    return m & (np.cumsum(m, 0) <= n), ~m & (np.cumsum(~m, 0) <= n)


def _fit(s: np.ndarray, g: np.ndarray):
    """Median, sum of squared deviations from the mean, and count of the scores ``s`` [S, n, A] of the
    shadows selected by ``g`` [S, n], per example and query."""
    v = np.where(g[..., None], s, np.nan)
    c = g.sum(0)[:, None]  # [n, 1]
    srt = np.sort(v, 0)  # NaN last
    pick = lambda i: np.take_along_axis(srt, np.broadcast_to(np.maximum(i, 0)[None], (1,) + srt.shape[1:]), 0)[0]
    median = 0.5 * (pick((c - 1) // 2) + pick(c // 2))
    mean = np.nansum(v, 0) / np.maximum(c, 1)
    m2 = np.nansum((v - mean) ** 2, 0)
    return median, m2, np.broadcast_to(c, m2.shape)


def _attack(s, m, x, attack: str, fixed_variance: bool, who: str = "", out_shadows=None) -> np.ndarray:
    """Scores [T, n] of the targets' φ ``x`` [T, n, A] against the shadows ``s`` [S, n, A] with
    membership ``m`` [S, n] (see :func:`lira`). ``out_shadows`` [n] (offline only): use at most that
    many OUT shadows per example, the first in run order (see :func:`leave_one_out`)."""
    if attack == "global":
        return x.mean(-1)
    g_in, g_out = _balanced(m) if attack == "online" else (m, ~m)
    if attack == "offline" and out_shadows is not None:
        g_out = g_out & (np.cumsum(g_out, 0) <= out_shadows)
    kinds = ("IN", "OUT") if attack == "online" else ("OUT",)  # offline never looks at IN models
    fits = [_fit(s, g_in if kind == "IN" else g_out) for kind in kinds]  # (median, m2, count)
    for (_, _, c), kind in zip(fits, kinds):
        if (c == 0).any():
            j = int(np.argwhere(c[:, 0] == 0)[0, 0])
            raise ValueError(f"example {j} has no {kind} shadow model{who}: {attack} LiRA needs at least one per "
                             f"example; use more runs (membership_masks gives every example runs/2 IN)"
                             + (", or attack='offline'" if kind == "IN" else ""))
    # One σ for all examples: the shadows' spread around their own example's mean, pooled.
    pooled = np.sqrt(sum(m2.sum() for _, m2, _ in fits) / sum(c.sum() for _, _, c in fits))
    sds = [np.full_like(m2, pooled) if fixed_variance else np.where(c >= 2, np.sqrt(m2 / np.maximum(c, 1)), pooled)
           for _, m2, c in fits]  # fewer than 2 shadows: the pooled σ stands in
    sds = [np.maximum(sd, max(MIN_STD * pooled, 1e-12)) for sd in sds]
    if attack == "offline":  # −log P[φ_OUT ≥ φ]: how surprising φ is for a model that never saw the example
        return -log_ndtr(-(x - fits[0][0]) / sds[0]).mean(-1)
    logpdf = lambda med, sd: -0.5 * ((x - med) / sd) ** 2 - np.log(sd)
    return (logpdf(fits[0][0], sds[0]) - logpdf(fits[1][0], sds[1])).mean(-1)  # mean over queries


def _check_attack(attack: str):
    if attack not in ATTACKS:
        raise ValueError(f"attack={attack!r}: allowed values are {', '.join(map(repr, ATTACKS))}")


def lira(target, shadows, shadow_members, *, attack: str = "online", fixed_variance: bool = False) -> np.ndarray:
    """LiRA scores of target models from separate shadow models (higher = more likely a member).

    ``shadows``: φ [S, n] or [S, n, A] of the shadow models on the ``n`` examples (A queries);
    ``shadow_members``: bool [S, n]; ``target``: φ of the attacked models, [T, n(, A)], or of one model,
    [n(, A)] (then the result is [n] instead of [T, n]).

    Per example and query the IN and OUT shadow scores — the same number of each for the online
    attack (see :func:`_balanced`) — give a centre (their median, as in the reference) and a spread: the example's own std (``fixed_variance=False``) or one std for all
    examples (``True``; the reference's choice with few shadows): the shadows' deviations from their
    own example's mean, pooled over examples, queries and (online) both groups. (The reference's
    fixed σ also counts the spread between examples; one σ shared by IN and OUT gives the online
    attack the same ranking whatever its value.) A group with a single shadow uses the pooled std;
    a group with none raises (online needs IN and OUT shadows, offline OUT ones). Every std is at
    least ``MIN_STD`` × the pooled one. Several queries are combined by the mean of their per-query
    scores, as in the reference.

    ``attack``: ``"online"`` log N(φ; IN) − log N(φ; OUT); ``"offline"`` −log P[OUT ≥ φ], the
    one-sided test of the paper (the reference's script scores offline by the two-sided −log N(φ;
    OUT)); ``"global"`` φ itself, averaged over queries (shadows unused)."""
    _check_attack(attack)
    s = _runs_array(shadows, "shadows")
    m = _mask_array(shadow_members, s.shape[:2], "shadow_members")
    if s.shape[0] == 0:
        raise ValueError("shadows: no shadow models given; LiRA needs scores of at least one shadow model [S ≥ 1, n]")
    x = target.detach().cpu().numpy() if torch.is_tensor(target) else np.asarray(target, dtype=np.float64)
    single = x.ndim == (shadows.dim() if torch.is_tensor(shadows) else np.ndim(shadows)) - 1
    x = _runs_array(x[None] if single else x, "target")
    if x.shape[1:] != s.shape[1:]:
        raise ValueError(f"target has (n, queries) = {x.shape[1:]} but shadows {s.shape[1:]}: score the same examples")
    out = _attack(s, m, x, attack, fixed_variance)
    return out[0] if single else out


@dataclass
class AttackResult:
    """Scores (higher = member) and true labels of every (target run, example) pair, flattened
    run-major; ``runs`` recovers the [runs, n] layout (:meth:`per_run`)."""
    name: str
    scores: np.ndarray
    labels: np.ndarray
    runs: int = 1

    def per_run(self) -> tuple[np.ndarray, np.ndarray]:
        return self.scores.reshape(self.runs, -1), self.labels.reshape(self.runs, -1)

    def roc(self):
        return metrics.roc(self.scores, self.labels)

    def summary(self, **kwargs) -> dict:
        """:func:`dcprivacy.metrics.summary` of this attack, with ``name`` added (intervals clustered by
        run and example unless ``method="naive"``)."""
        return {"name": self.name, **metrics.summary(*self.per_run(), **kwargs)}


def leave_one_out(scores, members, *, attack: str = "online", fixed_variance: bool = False,
                  name: str | None = None) -> AttackResult:
    """Attack every run in turn, the other ``K − 1`` runs being its shadow models.

    ``scores``: φ (or any per-model score, e.g. :func:`loss_scores` with ``attack="global"``) of the
    ``K`` runs' models on the pool, [K, n] or [K, n, A]; ``members``: bool [K, n], e.g. from
    :func:`membership_masks`. Returns an :class:`AttackResult` with ``K·n`` scores and labels
    ``members`` (see :func:`lira` for the attacks and the handling of few shadows). With LiRA masks
    the other runs hold ``K/2 − 1`` IN and ``K/2`` OUT shadows of an example the target trained on, and
    ``K/2`` IN and ``K/2 − 1`` OUT of one it did not. Both attacks use the same number of shadows
    whatever the target's label: the online attack ``K/2 − 1`` of each kind (:func:`_balanced`), so it
    needs ``K ≥ 4``; the offline attack ``K/2 − 1`` OUT shadows (in general, one fewer than the
    example's OUT runs), the first in run order — otherwise non-members' OUT centres would come from
    one shadow fewer, be noisier, and score differently from members' with no signal at all.
    One loop over the ``K`` targets (its row deleted, the shadows' medians fitted afresh), everything
    else vectorized."""
    _check_attack(attack)
    s = _runs_array(scores, "scores")
    m = _mask_array(members, s.shape[:2], "members")
    if s.shape[0] < 2:
        raise ValueError(f"scores has {s.shape[0]} run(s): leave-one-out needs at least 2 (one target, one shadow)")
    out_shadows = (~m).sum(0) - 1 if attack == "offline" else None  # what a non-member's target leaves
    out = np.stack([_attack(np.delete(s, t, 0), np.delete(m, t, 0), s[t:t + 1], attack, fixed_variance,
                            f" (target {t})", out_shadows)[0]
                    for t in range(s.shape[0])])  # each run the target once, the others its shadows
    if name is None:
        name = attack + (" (fixed variance)" if fixed_variance and attack != "global" else "")
    return AttackResult(name, out.ravel(), m.ravel().copy(), runs=s.shape[0])


__all__ = ["membership_masks", "logit_scaled_confidence", "cross_entropy", "loss_scores", "query_logits",
           "scores_from_models", "lira", "leave_one_out", "AttackResult", "ATTACKS", "AUGMENTS"]
