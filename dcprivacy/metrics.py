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


def _pigeonhole(K: int, n: int, resamples: int, seed: int, batch: int):
    """The resamples of the clustered bootstrap, in batches: (times each run was drawn [b, K], times each
    example was drawn [b, n]). Drawn one resample at a time, so the same resamples whatever the batch."""
    rng = np.random.default_rng(seed)
    for start in range(0, int(resamples), batch):
        draws = [(rng.integers(0, K, K), rng.integers(0, n, n)) for _ in range(min(batch, int(resamples) - start))]
        yield _counts(np.stack([r for r, _ in draws]), K), _counts(np.stack([e for _, e in draws]), n)


class _Weighted:
    """The metrics of one score grid [runs, examples] (its kept pairs) under pigeonhole weights: pair (k, j)
    counts (draws of run k)·(draws of example j) times."""

    def __init__(self, s, lab, keep, fprs):
        self.run_of, self.ex_of = np.nonzero(keep)  # the kept pairs, run-major
        self.values, self.group = np.unique(s[keep], return_inverse=True)
        self.pos, self.fprs = lab[keep], fprs
        self.size = len(self.values) + len(self.group)  # the memory of one resample, in elements

    def __call__(self, runs: np.ndarray, examples: np.ndarray) -> dict[str, np.ndarray]:
        b, U = runs.shape[0], len(self.values)
        w = runs[:, self.run_of] * examples[:, self.ex_of]  # [b, P]
        flat = (self.group + U * np.arange(b)[:, None]).ravel()
        cp = np.bincount(flat, (w * self.pos).ravel(), b * U).reshape(b, U)
        cn = np.bincount(flat, (w * ~self.pos).ravel(), b * U).reshape(b, U)
        ok = (cp.sum(1) > 0) & (cn.sum(1) > 0)  # a resample without members or non-members scores nothing
        with np.errstate(invalid="ignore", divide="ignore"):
            out = _from_counts(cp, cn, self.fprs)
        return {key: np.where(ok, v, np.nan) for key, v in out.items()}


def _clustered_ci(s, lab, keep, fprs, resamples, seed, level, max_elements):
    """Runs and examples resampled with replacement; pair (k, j) weighs (draws of run k)·(draws of example j)."""
    K, n = s.shape
    weighted = _Weighted(s, lab, keep, fprs)
    batch = max(1, int(max_elements) // weighted.size)
    return _quantiles([weighted(r, e) for r, e in _pigeonhole(K, n, resamples, seed, batch)], level)


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


# ---- paired comparisons and equivalence -------------------------------------------------------------

def paired_bootstrap(grids: dict, *, fprs=(1e-3, 1e-2), resamples: int = 2000, seed: int = 0,
                     max_elements: int = 2 ** 22) -> tuple[dict, dict, np.ndarray]:
    """The clustered bootstrap of several attacks on **one** experiment, paired: every resample draws one
    set of runs and one set of pool examples, and all the grids are scored on that same draw.

    ``grids``: ``{name: (scores, labels)}`` or ``{name: (scores, labels, keep)}``, each [runs, examples]
    over the *same* K runs and n examples (e.g. several pipelines trained on one pool with one set of LiRA
    masks). Scores that share runs and examples are not independent: an example that is easy to attack in
    one pipeline tends to be in another, a run's members are the same in every pipeline. Resampling them
    together keeps that dependence in every difference computed from the result, which is what makes a
    paired interval narrower — and right — where two marginal intervals are not.

    Returns ``(estimate, samples, runs)``: ``estimate[name][metric]`` on the data as they are,
    ``samples[name][metric]`` [resamples] (NaN where a resample drew no member or no non-member), and
    ``runs`` [resamples, K], how often each run was drawn (to resample per-run quantities, e.g. test
    accuracy, the same way). The resamples are those of :func:`bootstrap_ci` with the same ``seed``."""
    fprs = _check_fprs(fprs)
    _check_ci(resamples, 0.95, "clustered")
    if not grids:
        raise ValueError("grids: give at least one {name: (scores, labels)}")
    weighted, shape = {}, None
    for name, g in grids.items():
        if not isinstance(g, (tuple, list)) or len(g) not in (2, 3):
            raise ValueError(f"grids[{name!r}]: expected (scores, labels) or (scores, labels, keep)")
        s, lab, k = _grid(g[0], g[1], g[2] if len(g) == 3 else None)
        if shape is not None and s.shape != shape:
            raise ValueError(f"grids[{name!r}] has shape {s.shape}, the first grid {shape}: a paired bootstrap "
                             f"needs the same runs and examples in every grid")
        shape = s.shape
        weighted[name] = _Weighted(s, lab, k, fprs)
    K, n = shape
    one = (np.ones((1, K)), np.ones((1, n)))
    estimate = {name: {key: float(v[0]) for key, v in w(*one).items()} for name, w in weighted.items()}
    batch = max(1, int(max_elements) // sum(w.size for w in weighted.values()))
    parts, runs = {name: [] for name in grids}, []
    for r, e in _pigeonhole(K, n, resamples, seed, batch):
        runs.append(r)
        for name, w in weighted.items():
            parts[name].append(w(r, e))
    samples = {name: {key: np.concatenate([p[key] for p in ps]) for key in ps[0]} for name, ps in parts.items()}
    return estimate, samples, np.concatenate(runs)


def _interp_rows(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Row by row, the piecewise-linear curve through (xs[b], ys[b]) [B, S] (in any order) at x[b]; held at
    its end values outside its range, as ``np.interp``."""
    order = np.argsort(xs, 1)
    xs, ys = np.take_along_axis(xs, order, 1), np.take_along_axis(ys, order, 1)
    i = np.clip((xs <= x[:, None]).sum(1) - 1, 0, xs.shape[1] - 2)[:, None]
    x0, x1 = np.take_along_axis(xs, i, 1)[:, 0], np.take_along_axis(xs, i + 1, 1)[:, 0]
    y0, y1 = np.take_along_axis(ys, i, 1)[:, 0], np.take_along_axis(ys, i + 1, 1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(x1 > x0, (x - x0) / (x1 - x0), 0.0), 0, 1)
    return y0 + t * (y1 - y0)


def curve_difference(grids: dict, accuracy: dict, points, curve, *, fprs=(1e-3, 1e-2),
                     resamples: int = 2000, seed: int = 0, max_elements: int = 2 ** 22) -> dict:
    """How much more an attack finds against each pipeline of ``points`` than against a curve of baselines,
    read at that pipeline's accuracy — with a paired clustered bootstrap of the difference.

    ``grids`` as for :func:`paired_bootstrap` (every name of ``points`` and ``curve`` among them);
    ``accuracy``: ``{name: [K]}`` each run's test accuracy. For every metric (``auc``,
    ``balanced_accuracy``, ``tpr@<fpr>``) the difference is ``metric(p) − c(acc(p))``, where ``c``
    interpolates linearly between the curve's (accuracy, metric) points, accuracy being the mean over the
    runs. In each resample the same runs and examples are drawn for every grid and the runs' accuracies
    are averaged with the same draws, so a point, the curve and their accuracies move together.

    Returns ``{p: {metric: {"estimate": d, "samples": [resamples]}, "accuracy": {...}}}`` for each ``p`` of
    ``points``, where ``"accuracy"`` holds ``"point"`` (p's mean accuracy), ``"curve"`` (the baselines',
    in the order of ``curve``), ``"inside"`` (whether p lies within the curve's range) and
    ``"outside_share"`` (the share of resamples in which it does not: there the curve is held at its end,
    never extrapolated)."""
    points, curve = [points] if isinstance(points, str) else list(points), list(curve)
    if len(curve) < 2 or set(points) & set(curve) or not points:
        raise ValueError(f"points={points}, curve={curve}: give one or more points and two or more baselines, "
                         f"none of them both")
    names = [*points, *curve]
    missing = [p for p in names if p not in grids or p not in accuracy]
    if missing:
        raise ValueError(f"{missing}: every pipeline of the comparison needs a grid and per-run accuracies")
    estimate, samples, runs = paired_bootstrap({p: grids[p] for p in names}, fprs=fprs, resamples=resamples,
                                               seed=seed, max_elements=max_elements)
    acc = {p: np.asarray(accuracy[p], dtype=np.float64).ravel() for p in names}
    if any(a.shape != (runs.shape[1],) for a in acc.values()):
        raise ValueError(f"accuracy: one value per run ({runs.shape[1]}) for every pipeline")
    mean = {p: float(a.mean()) for p, a in acc.items()}
    resampled = {p: runs @ a / runs.sum(1) for p, a in acc.items()}  # [B]
    xs = [mean[c] for c in curve]
    lo, hi = np.min([resampled[c] for c in curve], 0), np.max([resampled[c] for c in curve], 0)
    out = {}
    for p in points:
        out[p] = {}
        for key in estimate[p]:
            d = estimate[p][key] - _interp_rows(np.array([mean[p]]), np.array([xs]),
                                                np.array([[estimate[c][key] for c in curve]]))[0]
            ds = samples[p][key] - _interp_rows(resampled[p], np.stack([resampled[c] for c in curve], 1),
                                                np.stack([samples[c][key] for c in curve], 1))
            out[p][key] = {"estimate": float(d), "samples": ds}
        out[p]["accuracy"] = {"point": mean[p], "curve": xs, "inside": min(xs) <= mean[p] <= max(xs),
                              "outside_share": float(np.mean((resampled[p] < lo) | (resampled[p] > hi)))}
    return out


VERDICTS = ("less", "more", "equivalent", "not distinguishable")


def equivalence_test(estimate: float, samples, margin: float, *, alpha: float = 0.05, tests: int = 1,
                     power: float = 0.8) -> dict:
    """One comparison's verdict from bootstrap ``samples`` of a difference, at family-wise level ``alpha``
    over ``tests`` comparisons (Bonferroni: each at ``alpha / tests``).

    - **difference**: the two-sided percentile interval at level ``1 − alpha/tests``; it excludes 0 →
      ``"less"`` (below 0) or ``"more"`` (above);
    - **equivalence** (two one-sided tests, TOST): the percentile interval at level ``1 − 2·alpha/tests``
      lies inside ``(−margin, +margin)`` → ``"equivalent"`` (within ±``margin``);
    - neither → ``"not distinguishable"`` (at this amount of data).

    A difference that is significant *and* inside the margin is reported as ``"less"``/``"more"``, with
    ``within_margin`` True. The two tests guard different errors — calling a null difference real, and
    calling a difference of ``margin`` or more negligible — each at most ``alpha / tests``.

    ``power``: the smallest difference the comparison detects with this probability, ``detectable`` =
    (z_{1−α'/2} + z_power)·SE, SE the bootstrap standard deviation (a normal approximation). Returns a
    dict: ``verdict`` (one of ``VERDICTS``), ``estimate``, ``ci``, ``tost_ci``, ``se``, ``detectable``,
    ``within_margin``, ``margin``, ``level`` (of ``ci``)."""
    from scipy.stats import norm
    if not margin > 0:
        raise ValueError(f"margin={margin}: the equivalence margin must be > 0, declared before looking at the data")
    if not 0 < alpha < 1 or int(tests) < 1:
        raise ValueError(f"alpha={alpha}, tests={tests}: need 0 < alpha < 1 and at least one test")
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise ValueError("samples: need at least two finite bootstrap samples of the difference")
    a = alpha / int(tests)
    ci = tuple(float(v) for v in np.quantile(x, [a / 2, 1 - a / 2]))
    tost = tuple(float(v) for v in np.quantile(x, [a, 1 - a]))
    within = -margin < tost[0] and tost[1] < margin
    verdict = "less" if ci[1] < 0 else "more" if ci[0] > 0 else "equivalent" if within else "not distinguishable"
    se = float(x.std(ddof=1))
    return {"verdict": verdict, "estimate": float(estimate), "ci": ci, "tost_ci": tost, "se": se,
            "detectable": float((norm.ppf(1 - a / 2) + norm.ppf(power)) * se), "within_margin": bool(within),
            "margin": float(margin), "level": 1 - a}


__all__ = ["roc", "auc", "tpr_at_fpr", "balanced_accuracy", "bootstrap_ci", "summary", "BOOTSTRAPS",
           "paired_bootstrap", "curve_difference", "equivalence_test", "VERDICTS"]
