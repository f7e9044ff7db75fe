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


def test_clustered_bootstrap_covers_the_truth_where_the_naive_one_does_not():
    """Attack scores share examples and models. Synthetic scores [runs, examples] with a strong per-example
    membership signal μ_j (some examples far more exposed than others), a per-run shift of it and a per-example
    level: φ = a_j + member·(μ_j + c_k) + e. The population AUC is Φ(m / √(s_μ² + s_c² + 2s_a² + 2s_e²)); over
    150 independent experiments the clustered 95% interval covers it 90–99% of the time, the naive one far less."""
    from scipy.stats import norm

    from dcprivacy.mia import membership_masks
    K, n, draws = 8, 60, 150
    m, sm, sc, sa, se = 1.0, 1.5, 0.3, 0.5, 0.5
    truth = norm.cdf(m / np.sqrt(sm ** 2 + sc ** 2 + 2 * sa ** 2 + 2 * se ** 2))
    masks = membership_masks(K, n, seed=0).numpy()
    covered = {"clustered": 0, "naive": 0}
    width = {"clustered": 0.0, "naive": 0.0}
    for d in range(draws):
        rng = np.random.default_rng(d)
        mu, a, c = rng.normal(m, sm, n), rng.normal(0, sa, n), rng.normal(0, sc, K)
        s = a + masks * (mu + c[:, None]) + rng.normal(0, se, (K, n))
        for method in covered:
            lo, hi = metrics.bootstrap_ci(s, masks, fprs=(0.01,), resamples=150, seed=d, method=method)["auc"]
            covered[method] += lo <= truth <= hi
            width[method] += (hi - lo) / draws
    assert 0.90 <= covered["clustered"] / draws <= 0.99, covered
    assert covered["naive"] / draws < 0.85, covered
    assert width["clustered"] > 1.5 * width["naive"], width


def test_clustered_bootstrap_keeps_groups_and_is_batch_free():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 300)) < 0.5
    s = rng.normal(size=(6, 300)) + masks
    keep = ~masks | (np.arange(300) < 100)  # the first 100 examples' members, and every non-member
    a = metrics.bootstrap_ci(s, masks, keep=keep, resamples=60, seed=1)
    assert a == metrics.bootstrap_ci(s, masks, keep=keep, resamples=60, seed=1, max_elements=5_000)
    out = metrics.summary(s, masks, keep=keep, bootstrap=60)
    assert out["members"] == int((masks & keep).sum()) and out["nonmembers"] == int((~masks).sum())
    assert out["auc"] == metrics.auc(s[keep], masks[keep]) and out["method"] == "clustered"
    lo, hi = out["auc_ci"]
    assert lo < out["auc"] < hi
    naive = metrics.summary(s, masks, keep=keep, bootstrap=60, method="naive")
    assert naive["auc"] == out["auc"] and naive["auc_ci"] != out["auc_ci"]
    with pytest.raises(ValueError, match="method"):
        metrics.bootstrap_ci(s, masks, method="pairs")
    with pytest.raises(ValueError, match="keep"):
        metrics.bootstrap_ci(s, masks, keep=keep[:, :10])
