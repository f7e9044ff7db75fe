"""How well does a membership-inference attack work? ROC, AUC, TPR at a fixed FPR, bootstrap CIs.

An attack gives every (model, example) pair a *score*, higher meaning "more likely a member"; the
*labels* say which pairs really were members. Everything here reads scores against labels the way
LiRA (Carlini et al., 2022) reports them: the ROC curve, its area, the balanced accuracy of the
best threshold, and — what matters for privacy — the true-positive rate at a very low
false-positive rate (0.1%, 1%).

Point estimates come from scikit-learn. Confidence intervals come from a bootstrap. The scores of
an attack are not independent draws: every model scores every example, so the scores of one
example (an easy or a vulnerable one) move together across models, and those of one model (one
that overfits more) move together across examples. The default bootstrap (``method="clustered"``)
respects that: given scores as [runs, examples], each resample draws examples with replacement,
each with its scores in all runs, and runs with replacement, each with all its examples — a
two-way (pigeonhole) bootstrap, whose (run, example) pair is weighted by how often its run and its
example were drawn (Owen, "The pigeonhole bootstrap", 2007; slightly conservative). The naive one
(``method="naive"``) resamples (run, example) pairs as if independent — members and non-members
separately — and is kept to show by how much it understates the uncertainty. Every resample is
scored at once in numpy by counting, at each distinct score, how many (weighted) members and
non-members sit there (no sorting and no scikit-learn call per resample). ``tests/test_metrics.py``
checks that counting gives scikit-learn's numbers, and that the clustered intervals cover the truth
at about their nominal rate where the naive ones do not.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 scores and bool labels, or a ValueError that says what is wrong."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    lab = np.asarray(labels).ravel()
    if s.shape != lab.shape:
        raise ValueError(f"scores has {s.size} entries but labels has {lab.size}: give one label per score")
    if lab.dtype != bool:
        if not np.isin(lab, (0, 1)).all():
            raise ValueError("labels: must be bool (True = member) or 0/1")
        lab = lab.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("scores: contains NaN or infinity; every score must be finite")
    if lab.all() or not lab.any():
        raise ValueError("labels: need both members (True) and non-members (False)")
    return s, lab


def _check_fprs(fprs) -> tuple[float, ...]:
    fprs = tuple(float(f) for f in np.atleast_1d(fprs))
    if not all(0 < f < 1 for f in fprs):
        raise ValueError(f"fprs={fprs}: every false-positive rate must lie strictly between 0 and 1")
    return fprs


def roc(scores, labels, *, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve ``(fpr, tpr)`` of "member when score ≥ threshold" (``sklearn.metrics.roc_curve``)."""
    s, lab = _check(scores, labels)
    fpr, tpr, _ = roc_curve(lab, s, drop_intermediate=drop_intermediate)
    return fpr, tpr


def auc(scores, labels) -> float:
    """Area under the ROC curve: the chance that a random member outscores a random non-member."""
    s, lab = _check(scores, labels)
    return float(roc_auc_score(lab, s))


def tpr_at_fpr(scores, labels, fpr: float = 1e-3) -> float:
    """The largest TPR among thresholds whose FPR is at most ``fpr`` (LiRA's "TPR at 0.1% FPR").

    With ``n`` non-members an FPR of ``fpr`` allows ``⌊fpr·n⌋`` false positives; below ``1/n`` it
    allows none, so a low-FPR number needs many non-members to mean anything."""
    (fpr,) = _check_fprs(fpr)
    f, t = roc(scores, labels, drop_intermediate=False)
    return float(t[f <= fpr].max())  # (0, 0) is always on the curve


def balanced_accuracy(scores, labels) -> float:
    """Accuracy of the best threshold on a balanced set: max over thresholds of 1 − (FPR + FNR)/2."""
    f, t = roc(scores, labels, drop_intermediate=False)
    return float(np.max(1 - (f + 1 - t) / 2))


def _from_counts(cp: np.ndarray, cn: np.ndarray, fprs) -> dict[str, np.ndarray]:
    """The metrics of ``B`` score sets given as counts: ``cp``, ``cn`` [B, U] are how many members
    and non-members have each of ``U`` distinct scores (in ascending order). Returns arrays [B]."""
    n_pos, n_neg = cp.sum(1), cn.sum(1)
    below = np.cumsum(cn, 1) - cn  # non-members strictly below each score
    out = {"auc": (cp * (below + 0.5 * cn)).sum(1) / (n_pos * n_neg)}  # Mann–Whitney U, ties count 1/2
    tpr = np.cumsum(cp[:, ::-1], 1)[:, ::-1] / n_pos[:, None]  # rule "score ≥ u", for each u
    fpr = np.cumsum(cn[:, ::-1], 1)[:, ::-1] / n_neg[:, None]
    out["balanced_accuracy"] = np.maximum(0.5, (1 - (fpr + 1 - tpr) / 2).max(1))  # 0.5: threshold +∞
    for f in fprs:
        out[f"tpr@{f:g}"] = np.where(fpr <= f, tpr, 0.0).max(1)
    return out


def _counts(groups: np.ndarray, U: int) -> np.ndarray:
    """Rows of ``groups`` [B, n] (indices < U) → counts [B, U], with one bincount."""
    B = groups.shape[0]
    flat = (groups + U * np.arange(B)[:, None]).ravel()
    return np.bincount(flat, minlength=B * U).reshape(B, U).astype(np.float64)


BOOTSTRAPS = ("clustered", "naive")


def _check_ci(resamples, level, method):
    if int(resamples) < 1:
        raise ValueError(f"resamples={resamples}: must be at least 1")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must lie strictly between 0 and 1 (e.g. 0.95)")
    if method not in BOOTSTRAPS:
        raise ValueError(f"method={method!r}: allowed values are {', '.join(map(repr, BOOTSTRAPS))}")


def _grid(scores, labels, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores and labels as [runs, examples] (a 1-D array is one run) and the mask of the pairs kept."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[None] if s.ndim == 1 else s
    lab = np.asarray(labels)
    lab = lab[None] if lab.ndim == 1 else lab
    if s.ndim != 2 or s.shape != lab.shape:
        raise ValueError(f"scores {s.shape} and labels {lab.shape}: give both as [runs, examples] (or both 1-D)")
    k = np.ones(s.shape, bool) if keep is None else np.asarray(keep, bool)
    k = k[None] if k.ndim == 1 else k
    if k.shape != s.shape:
        raise ValueError(f"keep has shape {k.shape}, expected {s.shape}: one flag per (run, example) score")
    _check(s[k], lab[k])  # finite scores, bool labels, both classes among the kept pairs
    return s, lab.astype(bool), k


def _quantiles(parts, level):
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    return {key: tuple(float(v) for v in np.nanquantile(np.concatenate([p[key] for p in parts]), q))
            for key in parts[0]}


def _naive_ci(s, lab, fprs, resamples, seed, level, max_elements):
    """Members and non-members resampled separately, every (run, example) pair on its own."""
    values, group = np.unique(s, return_inverse=True)
    gp, gn = group[lab], group[~lab]
    U, n = len(values), len(s)
    high = np.repeat([len(gp), len(gn)], [len(gp), len(gn)])  # one draw per member, then per non-member
    rng = np.random.default_rng(seed)
    batch = max(1, int(max_elements) // (U + n))
    parts = []
    for start in range(0, int(resamples), batch):  # the same resamples whatever the batch size
        idx = rng.integers(0, high, (min(batch, int(resamples) - start), n))
        cp, cn = _counts(gp[idx[:, :len(gp)]], U), _counts(gn[idx[:, len(gp):]], U)
        parts.append(_from_counts(cp, cn, fprs))
    return _quantiles(parts, level)


def _clustered_ci(s, lab, keep, fprs, resamples, seed, level, max_elements):
    """Runs and examples resampled with replacement; pair (k, j) weighs (draws of run k)·(draws of example j)."""
    K, n = s.shape
    run_of, ex_of = np.nonzero(keep)  # the kept pairs, run-major
    values, group = np.unique(s[keep], return_inverse=True)
    pos = lab[keep]
    U, P = len(values), len(group)
    rng = np.random.default_rng(seed)
    batch = max(1, int(max_elements) // (U + P))
    parts = []
    for start in range(0, int(resamples), batch):
        b = min(batch, int(resamples) - start)
        draws = [(rng.integers(0, K, K), rng.integers(0, n, n)) for _ in range(b)]  # batch-free: one resample at a time
        runs = _counts(np.stack([r for r, _ in draws]), K)  # [b, K] times each run was drawn
        examples = _counts(np.stack([e for _, e in draws]), n)  # [b, n]
        w = runs[:, run_of] * examples[:, ex_of]  # [b, P]
        flat = (group + U * np.arange(b)[:, None]).ravel()
        cp = np.bincount(flat, (w * pos).ravel(), b * U).reshape(b, U)
        cn = np.bincount(flat, (w * ~pos).ravel(), b * U).reshape(b, U)
        ok = (cp.sum(1) > 0) & (cn.sum(1) > 0)  # a resample without members or non-members scores nothing
        with np.errstate(invalid="ignore", divide="ignore"):
            out = _from_counts(cp, cn, fprs)
        parts.append({key: np.where(ok, v, np.nan) for key, v in out.items()})
    return _quantiles(parts, level)


def bootstrap_ci(scores, labels, *, fprs=(1e-3, 1e-2), resamples: int = 1000, seed: int = 0,
                 level: float = 0.95, method: str = "clustered", keep=None,
                 max_elements: int = 2 ** 22) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the AUC, the balanced accuracy and the TPR at each FPR.

    ``scores``, ``labels``: [runs, examples] (e.g. :meth:`dcprivacy.mia.AttackResult.per_run`), or 1-D for
    the scores of one run; ``keep`` [runs, examples]: which pairs count (default all), e.g. one group of
    members and every non-member. ``method``: ``"clustered"`` (default) resamples examples, each with
    its scores in all runs, and runs, each with all its examples (see the module docstring);
    ``"naive"`` resamples the kept (run, example) pairs independently, members and non-members
    separately, so every resample has the FPR resolution of the original — and ignores that scores
    of one example or one model are correlated, so its intervals are too narrow. ``seed`` fixes the
    resamples; ``max_elements`` bounds the memory of one batch of resamples. Returns
    ``{metric: (low, high)}`` with the keys of :func:`summary` (``"auc"``, ``"balanced_accuracy"``,
    ``"tpr@0.001"``, …)."""
    fprs = _check_fprs(fprs)
    _check_ci(resamples, level, method)
    s, lab, k = _grid(scores, labels, keep)
    if method == "naive":
        return _naive_ci(s[k], lab[k], fprs, resamples, seed, level, max_elements)
    return _clustered_ci(s, lab, k, fprs, resamples, seed, level, max_elements)


def summary(scores, labels, *, fprs=(1e-3, 1e-2), bootstrap: int = 200, seed: int = 0,
            level: float = 0.95, method: str = "clustered", keep=None) -> dict:
    """All the metrics of one attack, with bootstrap intervals (:func:`bootstrap_ci`, ``method``).

    ``scores``, ``labels`` (and ``keep``) as for :func:`bootstrap_ci`: [runs, examples], or 1-D for one run.
    Keys: ``auc``, ``balanced_accuracy``, ``tpr@<fpr>`` for each of ``fprs`` (e.g. ``tpr@0.001``),
    each with ``<key>_ci`` = ``(low, high)`` (``None`` when ``bootstrap=0``); ``members`` and
    ``nonmembers`` (counts of kept scores); ``bootstrap``, ``level`` and ``method``."""
    fprs = _check_fprs(fprs)
    if int(bootstrap) < 0:
        raise ValueError(f"bootstrap={bootstrap}: the number of resamples must be ≥ 0 (0: no intervals)")
    _check_ci(max(1, int(bootstrap)), level, method)
    grid_s, grid_lab, k = _grid(scores, labels, keep)
    s, lab = grid_s[k], grid_lab[k]
    out = {"auc": auc(s, lab), "balanced_accuracy": balanced_accuracy(s, lab)}
    out.update({f"tpr@{f:g}": tpr_at_fpr(s, lab, f) for f in fprs})
    ci = bootstrap_ci(grid_s, grid_lab, keep=k, fprs=fprs, resamples=bootstrap, seed=seed, level=level,
                      method=method) if bootstrap else {}
    out.update({f"{key}_ci": ci.get(key) for key in list(out)})
    out.update(members=int(lab.sum()), nonmembers=int((~lab).sum()), bootstrap=int(bootstrap), level=level,
               method=method)
    return out


__all__ = ["roc", "auc", "tpr_at_fpr", "balanced_accuracy", "bootstrap_ci", "summary", "BOOTSTRAPS"]
