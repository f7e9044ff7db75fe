import numpy as np
import pytest
import torch
from scipy.stats import norm

from dcprivacy import metrics, mia, nets, train


def test_membership_masks_split_every_example_in_half():
    m = mia.membership_masks(16, 500, seed=3)
    assert m.dtype == torch.bool and m.shape == (16, 500)
    assert (m.sum(0) == 8).all()  # each example IN for exactly K/2 runs
    assert 0.4 < m[0].float().mean() < 0.6  # and each run holds about half the pool
    assert torch.equal(m, mia.membership_masks(16, 500, seed=3))
    assert not torch.equal(m, mia.membership_masks(16, 500, seed=4))
    assert len({tuple(c) for c in m.T.tolist()}) > 400  # different examples, different splits
    for runs in (3, 0, 2.5):
        with pytest.raises(ValueError, match="runs=.*even"):
            mia.membership_masks(runs, 10)
    with pytest.raises(ValueError, match="n="):
        mia.membership_masks(4, 0)


def test_logit_scaled_confidence_is_stable_and_exact():
    z = torch.randn(5, 7, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randint(0, 10, (5, 7), generator=torch.Generator().manual_seed(1))
    p = z.softmax(-1)
    py = p.gather(-1, y[..., None]).squeeze(-1)
    phi = mia.logit_scaled_confidence(z, y)
    assert phi.dtype == torch.float64 and phi.shape == (5, 7)
    assert torch.allclose(phi, torch.log(py) - torch.log(1 - py), atol=1e-10)
    assert torch.allclose(mia.cross_entropy(z, y), -torch.log(py), atol=1e-10)
    # two classes: φ = z_y − z_other exactly; huge margins stay finite and exact
    big = torch.tensor([[1000.0, 0.0], [0.0, 1000.0], [-500.0, 500.0]])
    assert torch.equal(mia.logit_scaled_confidence(big, torch.tensor([0, 0, 1])),
                       torch.tensor([1000.0, -1000.0, 1000.0], dtype=torch.float64))
    many = torch.tensor([[1000.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(mia.logit_scaled_confidence(many, torch.tensor([0])),
                          torch.tensor([1000 - np.log(3)], dtype=torch.float64))
    loss = mia.cross_entropy(torch.tensor([[50.0, 0.0]]), torch.tensor([0]))
    assert loss.item() > 0 and np.isclose(loss.item(), np.exp(-50.0), rtol=1e-12)  # not rounded to 0
    # float32 logits and numpy input; labels broadcast over queries
    z4 = torch.randn(3, 4, 2, 5, generator=torch.Generator().manual_seed(2))
    y4 = torch.randint(0, 5, (4,), generator=torch.Generator().manual_seed(3))
    a = mia.logit_scaled_confidence(z4, y4[:, None])
    b = mia.logit_scaled_confidence(z4.numpy(), y4.numpy()[:, None])
    assert a.shape == (3, 4, 2) and torch.equal(a, b) and torch.isfinite(a).all()
    assert torch.allclose(mia.loss_scores(z4, y4[:, None]), -mia.cross_entropy(z4, y4[:, None]))
    with pytest.raises(ValueError, match="broadcast"):
        mia.logit_scaled_confidence(z4, y4)
    with pytest.raises(ValueError, match="labels: must lie in 0..4"):
        mia.logit_scaled_confidence(z4, (y4 + 5)[:, None])
    with pytest.raises(ValueError, match="2 classes"):
        mia.logit_scaled_confidence(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def _naive(s, m, attack, fixed_variance):
    """Leave-one-out LiRA the slow, obvious way: loops over targets and examples."""
    K, n, A = s.shape
    out = np.zeros((K, n))
    for t in range(K):
        shadow = np.arange(K) != t
        groups = [("in", m & shadow[:, None]), ("out", ~m & shadow[:, None])]
        if attack == "offline":  # as many OUT shadows whatever the target: one fewer than the example's OUT runs
            groups = groups[1:]
            for j in range(n):
                groups[0][1][np.flatnonzero(groups[0][1][:, j])[(~m[:, j]).sum() - 1:], j] = False
        else:  # the online attack uses as many IN as OUT shadows: the first ones of each, in run order
            for j in range(n):
                k = min(groups[0][1][:, j].sum(), groups[1][1][:, j].sum())
                for _, g in groups:
                    g[np.flatnonzero(g[:, j])[k:], j] = False
        ss = sum(((s[g[:, j], j] - s[g[:, j], j].mean(0)) ** 2).sum() for _, g in groups for j in range(n))
        pooled = np.sqrt(ss / sum(g.sum() * A for _, g in groups))
        for j in range(n):
            fit = {}
            for name, g in groups:
                v = s[g[:, j], j]  # [shadows, A]
                sd = np.std(v, 0) if (len(v) >= 2 and not fixed_variance) else np.full(A, pooled)
                fit[name] = (np.median(v, 0), np.maximum(sd, mia.MIN_STD * pooled))
            x = s[t, j]
            if attack == "online":
                llr = norm.logpdf(x, *fit["in"]) - norm.logpdf(x, *fit["out"])
            else:
                llr = -norm.logsf(x, *fit["out"])
            out[t, j] = llr.mean()
    return out


@pytest.mark.parametrize("attack", ["online", "offline"])
@pytest.mark.parametrize("fixed_variance", [False, True])
def test_leave_one_out_equals_the_obvious_loops(attack, fixed_variance):
    rng = np.random.default_rng(0)
    K, n, A = 7, 30, 2
    counts = rng.integers(2, K - 1, n)  # irregular: 2 … K−2 IN runs per example, so every leave-one-out
    m = rng.random((K, n)).argsort(0) < counts  # target keeps ≥ 1 IN and ≥ 1 OUT shadow (1: pooled std)
    s = np.round(rng.normal(size=(K, n, A)) + m[..., None], 1)  # ties, to test the ranks
    res = mia.leave_one_out(s, m, attack=attack, fixed_variance=fixed_variance)
    assert res.scores.shape == res.labels.shape == (K * n,) and res.runs == K
    assert np.array_equal(res.labels, m.ravel())
    assert np.allclose(res.per_run()[0], _naive(s, m, attack, fixed_variance), rtol=1e-9, atol=1e-9)
    # the same target attacked with the others as separate shadows
    keep = np.arange(K) != 2
    shadow_m = m[keep].copy()
    if attack == "offline":  # leave-one-out drops a member's extra OUT shadow (the last): here marked IN, unused
        for j in np.flatnonzero(m[2]):
            shadow_m[np.flatnonzero(~shadow_m[:, j])[-1], j] = True
    one = mia.lira(s[2], s[keep], shadow_m, attack=attack, fixed_variance=fixed_variance)
    assert one.shape == (n,) and np.allclose(one, res.per_run()[0][2])
    two = mia.lira(torch.from_numpy(s[[2, 2]]), torch.from_numpy(s[keep]), torch.from_numpy(shadow_m),
                   attack=attack, fixed_variance=fixed_variance)
    assert two.shape == (2, n) and np.allclose(two[1], one)


def test_lira_reaches_the_optimal_auc_on_gaussian_scores():
    """φ_IN ~ N(μ_j + 1, 1), φ_OUT ~ N(μ_j, 1) with μ_j spread over examples: the likelihood-ratio test
    gives AUC Φ(1/√2) ≈ 0.760 (Φ(1) ≈ 0.841 with two independent queries); one global threshold far less."""
    rng = np.random.default_rng(0)
    K, n = 64, 2000
    m = mia.membership_masks(K, n, seed=1).numpy()
    mu = rng.normal(0, 3, n)
    s = mu + m + rng.normal(size=(K, n))
    auc = {}
    for a in ("online", "offline"):
        for fv in (False, True):
            r = mia.leave_one_out(s, m, attack=a, fixed_variance=fv)
            auc[a, fv] = metrics.auc(r.scores, r.labels)
    theory = norm.cdf(1 / np.sqrt(2))
    for key, value in auc.items():  # 31 IN / 32 OUT shadows: a little below the known-Gaussian optimum
        assert theory - 0.025 < value < theory + 0.005, (key, value, theory)
    assert abs(auc[("online", True)] - theory) < 0.015
    glob = mia.leave_one_out(s, m, attack="global")
    assert metrics.auc(glob.scores, glob.labels) < theory - 0.1
    s2 = (mu + m)[..., None] + rng.normal(size=(K, n, 2))
    two = mia.leave_one_out(s2, m, fixed_variance=True)
    assert abs(metrics.auc(two.scores, two.labels) - norm.cdf(1.0)) < 0.02


def test_too_few_shadows_and_bad_arguments():
    m = mia.membership_masks(2, 50, seed=0)
    s = torch.randn(2, 50, dtype=torch.float64)
    for attack in ("online", "offline"):  # K = 2: the one shadow is always on the other side
        with pytest.raises(ValueError, match="no (IN|OUT) shadow model.*use more runs"):
            mia.leave_one_out(s, m, attack=attack)
    m4, s4 = mia.membership_masks(4, 50, seed=0), torch.randn(4, 50)
    for attack in ("online", "offline"):  # a single IN or OUT shadow: the pooled std stands in
        assert np.isfinite(mia.leave_one_out(s4, m4, attack=attack).scores).all()
    m4[:, 0] = torch.tensor([True, False, False, False])  # example 0: IN for run 0 only
    with pytest.raises(ValueError, match="example 0 has no IN shadow model \\(target 0\\).*attack='offline'"):
        mia.leave_one_out(s4, m4)
    assert np.isfinite(mia.leave_one_out(s4, m4, attack="offline").scores).all()
    with pytest.raises(ValueError, match="attack='bogus'.*'online', 'offline', 'global'"):
        mia.leave_one_out(s, m, attack="bogus")
    with pytest.raises(ValueError, match=r"members has shape \(2, 49\)"):
        mia.leave_one_out(s, m[:, :49])
    with pytest.raises(ValueError, match="members: must be a bool mask"):
        mia.leave_one_out(s, m.long())
    with pytest.raises(ValueError, match="scores: contains NaN"):
        mia.leave_one_out(s.masked_fill(m, float("nan")), m)
    with pytest.raises(ValueError, match="target has"):
        mia.lira(torch.zeros(3, 40), s, m)
    with pytest.raises(ValueError, match="augment='crop'.*'none', 'flip'"):
        mia.query_logits(None, torch.zeros(1, 1, 8, 8), augment="crop")


@pytest.fixture
def one_thread():
    """Ops this small run faster on one thread (ten times so on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_memorising_models_are_caught(one_thread):
    """MLPs trained to zero loss on random labels (K = 16 runs, LiRA masks): leave-one-out LiRA finds
    members at 0.1% FPR far more often than 0.1% of the time, and the loss attack's AUC is far above 0.5."""
    g = torch.Generator().manual_seed(0)
    n, K = 64, 16
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)  # random labels: only memorisation fits them
    members = mia.membership_masks(K, n, seed=0)
    factory = nets.net_factory("mlp", width=64, depth=1, num_classes=4, im_size=8)
    cfg = train.TrainConfig(epochs=30, lr=0.2, weight_decay=0.0, batch_size=n)  # full batch: one step an epoch
    ens = train.train_models(factory, x, y, seeds=range(K), members=members, config=cfg, chunk=K)
    logits = mia.query_logits(ens, x)
    assert logits.shape == (K, n, 1, 4)
    assert mia.cross_entropy(logits, y[:, None])[..., 0][members].mean() < 0.01  # memorised
    phi = mia.scores_from_models(ens, x, y)
    assert torch.equal(phi, mia.logit_scaled_confidence(logits, y[:, None]))
    flip = mia.scores_from_models(ens, x, y, augment="flip")
    assert flip.shape == (K, n, 2) and torch.equal(flip[..., :1], phi)
    assert torch.allclose(flip[..., 1], mia.scores_from_models(ens, x.flip(-1), y)[..., 0])
    lira = mia.leave_one_out(phi, members, fixed_variance=True)
    out = lira.summary(fprs=(1e-3,), bootstrap=100)
    assert out["name"] == "online (fixed variance)" and out["nonmembers"] == K * n // 2
    assert out["tpr@0.001"] > 0.2 and out["auc"] > 0.95, out  # 0.1% FPR of 512 non-members: no false positive
    loss = mia.leave_one_out(mia.loss_scores(logits, y[:, None]), members, attack="global", name="loss")
    assert metrics.auc(loss.scores, loss.labels) > 0.9


def test_mia_plots():
    from matplotlib.figure import Figure

    from dcprivacy import plots
    rng = np.random.default_rng(0)
    points = {}
    for name, shift in (("real", 1.0), ("condensed", 0.1)):
        lab = rng.random(2000) < 0.5
        points[name] = {**metrics.summary(rng.normal(size=2000) + shift * lab, lab, bootstrap=20),
                        "accuracy": 0.8, "accuracy_std": 0.01}
    ax = plots.privacy_utility(points, ax=Figure().subplots())
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "TPR at 0.1% FPR" and len(ax.containers) == 2
    assert [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == ":"] == [1e-3]  # chance
    ax = plots.privacy_utility(points, y="auc", ax=Figure().subplots())
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "AUC"
    with pytest.raises(ValueError, match="no 'epsilon'"):
        plots.privacy_utility(points, x="epsilon", ax=Figure().subplots())
    ax = plots.score_distributions(rng.normal(3, 1, 8), rng.normal(0, 1, 8), target=2.5, ax=Figure().subplots())
    assert len(ax.patches) > 0 and len(ax.lines) == 3  # two fitted Gaussians and the target


def test_no_signal_gives_chance_for_every_attack():
    """Scores independent of membership: leave-one-out must not push members below non-members
    (an online attack with one IN shadow fewer than OUT shadows would: AUC ≈ 0.485 at K = 16)."""
    rng = np.random.default_rng(0)
    m = mia.membership_masks(16, 3000, seed=1).numpy()
    s = rng.normal(size=(16, 3000)) + rng.normal(0, 3, 3000)
    for attack in ("online", "offline"):
        for fv in (False, True):
            r = mia.leave_one_out(s, m, attack=attack, fixed_variance=fv)
            summary = metrics.summary(r.scores, r.labels, bootstrap=300, seed=0)
            lo, hi = summary["auc_ci"]
            assert lo < 0.5 < hi, (attack, fv, summary["auc"], summary["auc_ci"])
