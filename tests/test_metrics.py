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


def test_clustered_bootstrap_covers_the_tpr_at_low_fpr():
    """The TPR at 0.1% and 1% FPR at the quick profile's sizes: 16 runs, a pool of 1000 (8000 non-member
    scores: 8 false positives at 0.1%), a few exposed examples (5% of the pool with a large membership
    signal, the rest a small one, all with per-example levels and per-run shifts). Over 40 independent
    experiments the clustered 95% interval covers the population TPR at least 85% of the time at both
    FPRs. (300 experiments of this model, 80 resamples each, covered 98% and 96%; with no signal, 100%: the interval is
    conservative rather than too narrow there.) Population TPR: members' scores are a two-Gaussian mixture."""
    from scipy.stats import norm

    from dcprivacy.mia import membership_masks
    K, n, draws = 16, 1000, 40
    sm, sc, sa, se, share, big = 0.2, 0.1, 0.5, 0.5, 0.05, 2.0
    sn, sp = np.hypot(sa, se), np.sqrt(sa ** 2 + sm ** 2 + sc ** 2 + se ** 2)
    truth = {f: (1 - share) * norm.sf(sn * norm.isf(f) / sp) + share * norm.sf((sn * norm.isf(f) - big) / sp)
             for f in (1e-3, 1e-2)}
    masks = membership_masks(K, n, seed=0).numpy()
    covered = {f: 0 for f in truth}
    for d in range(draws):
        rng = np.random.default_rng(d)
        mu = np.where(rng.random(n) < share, big, 0.0) + rng.normal(0, sm, n)
        s = rng.normal(0, sa, n) + masks * (mu + rng.normal(0, sc, K)[:, None]) + rng.normal(0, se, (K, n))
        ci = metrics.bootstrap_ci(s, masks, resamples=80, seed=d)
        for f in truth:
            lo, hi = ci[f"tpr@{f:g}"]
            covered[f] += lo <= truth[f] <= hi
    assert min(covered.values()) >= 0.85 * draws, covered


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


# ---- paired comparisons against a curve, and equivalence (issue 22 §1) ---------------------------------

def _pipelines(seed, masks, signals, accuracies, shared=0.8):
    """Score grids of several pipelines on one pool and one set of masks: every example has a level and a
    vulnerability shared by all pipelines (an outlier is exposed by each), every pipeline its own run effects
    and noise; members' scores rise by ``signal + shared·vulnerability``. Returns (grids, per-run accuracies)."""
    rng = np.random.default_rng(seed)
    K, n = masks.shape
    vulnerability, level = rng.normal(0, 1, n), rng.normal(0, 0.5, n)
    grids, acc = {}, {}
    for name, signal in signals.items():
        s = level + masks * (signal + shared * vulnerability + rng.normal(0, 0.2, K)[:, None]) \
            + rng.normal(0, 0.5, (K, n))
        grids[name], acc[name] = (s, masks), accuracies[name] + rng.normal(0, 0.01, K)
    return grids, acc


CURVE_ACC = {"c0": 0.5, "c1": 0.6, "c2": 0.7, "point": 0.65}


def test_paired_bootstrap_is_the_clustered_bootstrap_of_each_grid():
    from dcprivacy.mia import membership_masks
    masks = membership_masks(6, 300, seed=0).numpy()
    grids, _ = _pipelines(0, masks, {"a": 0.3, "b": 0.0}, {"a": 0.5, "b": 0.5})
    estimate, samples, runs = metrics.paired_bootstrap(grids, fprs=(0.01,), resamples=80, seed=4)
    assert runs.shape == (80, 6) and (runs.sum(1) == 6).all()
    for name, (s, lab) in grids.items():
        one = metrics.summary(s, lab, fprs=(0.01,), bootstrap=80, seed=4)
        assert estimate[name]["auc"] == pytest.approx(one["auc"], abs=1e-12)
        assert estimate[name]["tpr@0.01"] == one["tpr@0.01"]
        q = np.quantile(samples[name]["auc"], [0.025, 0.975])  # the same resamples as bootstrap_ci's
        assert np.allclose(q, one["auc_ci"])
    # batching changes nothing; grids of other shapes are refused
    again = metrics.paired_bootstrap(grids, fprs=(0.01,), resamples=80, seed=4, max_elements=20_000)
    assert np.array_equal(again[1]["a"]["auc"], samples["a"]["auc"])
    with pytest.raises(ValueError, match="same runs and examples"):
        metrics.paired_bootstrap({"a": grids["a"], "c": (grids["b"][0][:, :10], masks[:, :10])})


def test_curve_difference_finds_a_planted_difference_and_pairing_narrows_it():
    """A point far above a flat curve (members found much more often) is 'more'; one with no signal at all,
    'less'. The paired interval of the difference is narrower than two marginal intervals would suggest,
    because the pipelines share the examples' vulnerability."""
    from dcprivacy.mia import membership_masks
    masks = membership_masks(8, 400, seed=1).numpy()
    for signal, expected in ((2.0, "more"), (None, "less")):
        grids, acc = _pipelines(2, masks, {"point": signal or 0, "c0": 0.6, "c1": 0.6, "c2": 0.6}, CURVE_ACC)
        if signal is None:  # no membership signal at all: members score as non-members
            grids["point"] = (np.random.default_rng(9).normal(size=masks.shape), masks)
        out = metrics.curve_difference(grids, acc, ["point"], ["c0", "c1", "c2"], fprs=(0.01,), resamples=200)["point"]
        assert out["accuracy"]["inside"] and out["accuracy"]["outside_share"] < 0.05
        for key in ("auc", "tpr@0.01"):
            v = metrics.equivalence_test(out[key]["estimate"], out[key]["samples"], margin=0.01, tests=2)
            assert v["verdict"] == expected, (signal, key, v)
            assert v["ci"][0] <= v["estimate"] <= v["ci"][1] and v["level"] == 1 - 0.05 / 2
    # pairing: the difference's interval against marginal ones, for a point with the curve's own signal
    grids, acc = _pipelines(3, masks, {"point": 0.3, "c0": 0.3, "c1": 0.3, "c2": 0.3}, CURVE_ACC)
    out = metrics.curve_difference(grids, acc, ["point"], ["c0", "c1", "c2"], fprs=(0.01,), resamples=200)["point"]
    _, samples, _ = metrics.paired_bootstrap(grids, fprs=(0.01,), resamples=200)
    marginal = np.hypot(samples["point"]["auc"].std(), 0.5 * np.hypot(samples["c1"]["auc"].std(),
                                                                      samples["c2"]["auc"].std()))
    assert out["auc"]["samples"].std() < 0.8 * marginal


def test_curve_difference_null_rejects_at_most_at_its_level():
    """The point has the curve's own signal (a flat curve: the truth is a difference of 0 at any accuracy).
    Over 50 independent experiments the 95% paired interval excludes 0 for at most 10% of them, for the AUC
    and the TPR at 1% FPR (8 false positives of 800 non-member scores, 8 runs). The bound is the nominal 5%
    with room for binomial noise over 50 draws; measured when written: 1 and 0 rejections of 50."""
    from dcprivacy.mia import membership_masks
    masks = membership_masks(8, 200, seed=0).numpy()
    rejected = {"auc": 0, "tpr@0.01": 0}
    draws = 50
    for d in range(draws):
        grids, acc = _pipelines(100 + d, masks, {"point": 0.3, "c0": 0.3, "c1": 0.3, "c2": 0.3}, CURVE_ACC)
        out = metrics.curve_difference(grids, acc, ["point"], ["c0", "c1", "c2"], fprs=(0.01,), resamples=100,
                                       seed=d)["point"]
        for key in rejected:
            rejected[key] += metrics.equivalence_test(out[key]["estimate"], out[key]["samples"],
                                                      margin=1.0)["verdict"] in ("less", "more")
    assert max(rejected.values()) <= 0.10 * draws, rejected


def test_rows_interpolate_as_numpy_does():
    rng = np.random.default_rng(0)
    xs, ys = rng.random((50, 4)), rng.random((50, 4))
    x = rng.uniform(-0.2, 1.2, 50)  # some outside the range: held at the ends
    expected = [np.interp(x[b], np.sort(xs[b]), ys[b][np.argsort(xs[b])]) for b in range(50)]
    assert np.allclose(metrics._interp_rows(x, xs, ys), expected)


def test_equivalence_test_logic():
    rng = np.random.default_rng(0)
    z = rng.normal(size=4000)
    tight, wide = 0.1 * z, 1.0 * z
    assert metrics.equivalence_test(0.0, tight, margin=0.5)["verdict"] == "equivalent"
    assert metrics.equivalence_test(0.0, wide, margin=0.5)["verdict"] == "not distinguishable"
    assert metrics.equivalence_test(3.0, 3 + wide, margin=0.5)["verdict"] == "more"
    assert metrics.equivalence_test(-3.0, -3 + wide, margin=0.5)["verdict"] == "less"
    # significant and within the margin: the difference wins, the margin is noted
    v = metrics.equivalence_test(0.5, 0.5 + tight, margin=1.0)
    assert v["verdict"] == "more" and v["within_margin"]
    # TOST uses the 1 − 2α interval: 90% inside ±margin, though the 95% one is not
    x = 0.5 * z
    m = np.quantile(x, 0.96)  # between the 95th and the 97.5th percentile
    assert metrics.equivalence_test(0.0, x, margin=m)["verdict"] == "equivalent"
    assert np.quantile(x, 0.975) > m
    # Bonferroni: ten tests widen every interval (each at α/10); the smallest detectable difference grows
    one, ten = metrics.equivalence_test(0.0, x, margin=m), metrics.equivalence_test(0.0, x, margin=m, tests=10)
    assert ten["verdict"] == "not distinguishable" and ten["level"] == pytest.approx(0.995)
    assert ten["ci"][0] < one["ci"][0] and ten["ci"][1] > one["ci"][1]
    assert one["detectable"] == pytest.approx((1.959964 + 0.841621) * x.std(ddof=1), rel=1e-5)
    assert ten["detectable"] > one["detectable"]
    with pytest.raises(ValueError, match="margin"):
        metrics.equivalence_test(0.0, x, margin=0)
    with pytest.raises(ValueError, match="two finite"):
        metrics.equivalence_test(0.0, [np.nan, 1.0], margin=1)
