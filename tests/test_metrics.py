import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from dcprivacy import metrics


def _data(n, seed, ties=False, shift=0.5):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = rng.normal(size=n) + shift * labels
    return (np.round(scores, 1) if ties else scores), labels


@pytest.mark.parametrize("n,ties,seed", [(7, True, 0), (200, False, 1), (200, True, 2), (5000, True, 3), (5000, False, 4)])
def test_metrics_equal_sklearn_and_the_vectorized_counts(n, ties, seed):
    s, lab = _data(n, seed, ties)
    ref_fpr, ref_tpr, _ = roc_curve(lab, s)
    fpr, tpr = metrics.roc(s, lab)
    assert np.array_equal(fpr, ref_fpr) and np.array_equal(tpr, ref_tpr)
    assert metrics.auc(s, lab) == pytest.approx(roc_auc_score(lab, s), abs=1e-12)
    f, t, _ = roc_curve(lab, s, drop_intermediate=False)
    for target in (1e-3, 1e-2, 0.1, 0.5):
        assert metrics.tpr_at_fpr(s, lab, target) == t[f <= target].max()
    assert metrics.balanced_accuracy(s, lab) == pytest.approx(np.max(1 - (f + 1 - t) / 2), abs=1e-12)
    # the bootstrap's counting formulas, on the original sample, give the same numbers
    values, g = np.unique(s, return_inverse=True)
    fast = metrics._from_counts(metrics._counts(g[lab][None], len(values)),
                                metrics._counts(g[~lab][None], len(values)), (1e-3, 1e-2, 0.1, 0.5))
    assert fast["auc"][0] == pytest.approx(metrics.auc(s, lab), abs=1e-12)
    assert fast["balanced_accuracy"][0] == pytest.approx(metrics.balanced_accuracy(s, lab), abs=1e-12)
    for target in (1e-3, 1e-2, 0.1, 0.5):
        assert fast[f"tpr@{target:g}"][0] == metrics.tpr_at_fpr(s, lab, target)


def test_bootstrap_matches_sklearn_on_each_resample():
    s, lab = _data(300, 5, ties=True)
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(lab), np.flatnonzero(~lab)
    values, g = np.unique(s, return_inverse=True)
    draws = [(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(5)]
    cp = metrics._counts(np.stack([g[p] for p, _ in draws]), len(values))
    cn = metrics._counts(np.stack([g[q] for _, q in draws]), len(values))
    fast = metrics._from_counts(cp, cn, (0.01,))
    for b, (p, q) in enumerate(draws):
        idx = np.concatenate([p, q])
        assert fast["auc"][b] == pytest.approx(roc_auc_score(lab[idx], s[idx]), abs=1e-12)
        assert fast["tpr@0.01"][b] == metrics.tpr_at_fpr(s[idx], lab[idx], 0.01)


def test_chance_scores_give_chance_metrics_within_their_intervals():
    """Scores independent of membership: AUC 0.5 and TPR@FPR = FPR, inside the 95% intervals of
    (nearly) every one of 20 independent data sets (16 or fewer would happen with probability < 1%)."""
    covered = {"auc": 0, "tpr@0.01": 0, "tpr@0.1": 0}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        lab = rng.random(4000) < 0.5
        out = metrics.summary(rng.normal(size=lab.size), lab, fprs=(1e-2, 0.1), bootstrap=200, seed=seed)
        assert abs(out["auc"] - 0.5) < 0.05
        for key, truth in (("auc", 0.5), ("tpr@0.01", 0.01), ("tpr@0.1", 0.1)):
            lo, hi = out[f"{key}_ci"]
            covered[key] += lo <= truth <= hi
    assert min(covered.values()) >= 17, covered
    assert out["members"] + out["nonmembers"] == lab.size and out["level"] == 0.95


def test_separating_scores_and_determinism():
    lab = np.arange(1000) % 2 == 0
    s = lab + np.random.default_rng(0).uniform(0, 0.5, size=lab.size)
    out = metrics.summary(s, lab, bootstrap=50)
    assert out["auc"] == 1 and out["balanced_accuracy"] == 1 and out["tpr@0.001"] == 1
    assert out["auc_ci"] == (1.0, 1.0)
    # reversed scores: the worst attack
    assert metrics.auc(-s, lab) == 0 and metrics.tpr_at_fpr(-s, lab, 0.01) == 0
    assert metrics.balanced_accuracy(-s, lab) == 0.5  # the trivial threshold
    s2, lab2 = _data(3000, 7)
    a = metrics.bootstrap_ci(s2, lab2, resamples=100, seed=3)
    assert a == metrics.bootstrap_ci(s2, lab2, resamples=100, seed=3, max_elements=10_000)  # batching-free
    assert a != metrics.bootstrap_ci(s2, lab2, resamples=100, seed=4)
    assert metrics.summary(s2, lab2, bootstrap=0)["auc_ci"] is None


def test_bad_arguments_say_what_to_do():
    s, lab = _data(100, 0)
    with pytest.raises(ValueError, match="labels"):
        metrics.auc(s, lab[:50])
    with pytest.raises(ValueError, match="both members"):
        metrics.auc(s, np.ones(100, bool))
    with pytest.raises(ValueError, match="bool"):
        metrics.auc(s, np.full(100, 2))
    with pytest.raises(ValueError, match="finite"):
        metrics.auc(np.full(100, np.nan), lab)
    with pytest.raises(ValueError, match="fprs.*between 0 and 1"):
        metrics.tpr_at_fpr(s, lab, 1.5)
    with pytest.raises(ValueError, match="bootstrap"):
        metrics.summary(s, lab, bootstrap=-1)
    with pytest.raises(ValueError, match="resamples"):
        metrics.bootstrap_ci(s, lab, resamples=0)
    with pytest.raises(ValueError, match="level"):
        metrics.bootstrap_ci(s, lab, level=95)
