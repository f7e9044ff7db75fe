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
    # RMIA, against a population of fresh noise images with random labels that no model saw (plain queries:
    # the mirror image of noise is another, unmemorised, image, whose probability would dilute the average)
    population = mia.scores_from_models(ens, torch.randn(1000, 1, 8, 8, generator=g),
                                        torch.randint(0, 4, (1000,), generator=g))
    for attack in mia.RMIA_ATTACKS:
        res = mia.rmia_leave_one_out(phi, population, members, attack=attack)
        assert max(res.details["a"]) < 0.05  # memorised: p̄_IN ≈ 1 whatever p̄_OUT, i.e. a ≈ 0
        out = res.summary(fprs=(1e-2,), bootstrap=0)
        assert out["auc"] > 0.97 and out["tpr@0.01"] > 0.5, (attack, out)


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


# --- RMIA ---------------------------------------------------------------------------------------------

def _phi(p):
    """The logit-scaled confidence of a true-class probability p."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def test_rmia_known_answer_by_hand():
    """One target, two reference models, two pool examples, three population samples, one query.

    Probabilities of the true class: target x₁ 0.8, x₂ 0.4; reference 0 trained on x₁ (0.9) not x₂ (0.2),
    reference 1 the other way round (x₁ 0.5, x₂ 0.6). Population ζ: target 0.5, 0.3, 0.9; references
    0.5, 0.4, 0.6 and 0.5, 0.2, 0.9 (neither trained on them). With a = 0.5, p̄ = ½(1.5·p̄_OUT + 0.5).
    Online: p̄(x₁) = (0.9 + 0.5)/2 = 0.7, r(x₁) = 8/7 ≈ 1.143; p̄(x₂) = 0.4, r(x₂) = 1; p̄(ζ) from the OUT
    means 0.5, 0.3, 0.75 of both references: 0.625, 0.475, 0.8125, r(ζ) = 0.8, 0.632, 1.108. With κ = 1.3,
    x₁ (1.143/1.3 = 0.879) dominates ζ₁ and ζ₂, x₂ (0.769) only ζ₂ → 2/3 and 1/3.
    Offline: one OUT model per example (reference 1 for x₁, 0 for x₂, and reference 0 for ζ):
    p̄(x₁) = 0.625, r = 1.28; p̄(x₂) = 0.4, r = 1; p̄(ζ) = 0.625, 0.55, 0.7, r(ζ) = 0.8, 0.545, 1.286;
    κ = 1.1 → x₁: 2/3 (1.28 < 1.1·1.286), x₂: 2/3 (1 ≥ 1.1·0.8).
    The fitted a: 1 − p̄_IN = (0.1, 0.4), 1 − p̄_OUT = (0.5, 0.8) → a = (0.1 + 0.4) / (0.5 + 0.8)."""
    target, shadows = _phi([0.8, 0.4]), _phi([[0.9, 0.2], [0.5, 0.6]])
    members = np.array([[True, False], [False, True]])
    z_target, z_shadows = _phi([0.5, 0.3, 0.9]), _phi([[0.5, 0.4, 0.6], [0.5, 0.2, 0.9]])
    args = (target, shadows, members, z_target, z_shadows)
    frac = lambda sc: np.floor(3 * sc) / 3  # the paper's fraction; the rest of the score orders ties
    online = mia.rmia(*args, attack="online", kappa=1.3, a=0.5)
    assert online.shape == (2,) and np.allclose(frac(online), [2 / 3, 1 / 3])
    # the tie-break: x₁ clears ζ₁'s ratio (0.8) by log(0.879 / 0.8), x₂ ζ₂'s (0.632) by log(0.769 / 0.632)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    r_z = [0.5 / 0.625, 0.3 / 0.475]
    assert np.allclose(online, [(2 + sigmoid(np.log(8 / 7 / 1.3 / r_z[0]))) / 3,
                                (1 + sigmoid(np.log(1 / 1.3 / r_z[1]))) / 3])
    assert np.allclose(frac(mia.rmia(*args, attack="offline", kappa=1.1, a=0.5)), [2 / 3, 2 / 3])
    # κ = 1 offline: the same fractions (1.28 < 1.286; 1 ≥ 0.8 and 0.545)
    assert np.allclose(frac(mia.rmia(*args, attack="offline", a=0.5)), [2 / 3, 2 / 3])
    # a = 1 is the OUT mean itself: r(ζ) = 1, 0.75, 1.5, and r(x₁) = 0.8/0.5 = 1.6, r(x₂) = 0.4/0.2 = 2 beat all;
    # the tie at 1 is broken by the margins over the highest ζ: log(1.6/1.5) < log(2/1.5)
    top = mia.rmia(*args, attack="offline", a=1.0)
    assert np.allclose(frac(top), [1, 1]) and np.allclose(top, 1 + sigmoid(np.log(np.array([1.6, 2]) / 1.5)) / 3)
    # a = 0: p̄ = ½(p̄_OUT + 1); r(x₁) = 0.8/0.75 ≈ 1.067, r(x₂) = 0.4/0.6 ≈ 0.667, r(ζ) = 0.5/0.75 ≈ 0.667,
    # 0.3/0.7 ≈ 0.429, 0.9/0.8 = 1.125; with κ = 1.1, x₁ dominates two, x₂ (0.606 after dividing by κ) one
    assert np.allclose(frac(mia.rmia(*args, attack="offline", a=0.0, kappa=1.1)), [2 / 3, 1 / 3])
    a = mia._fit_a(mia.log_true_class_probability(shadows[..., None]), members, None)
    assert np.isclose(a, 0.5 / 1.3)
    for attack in mia.RMIA_ATTACKS:  # a=None: the fitted a
        assert np.array_equal(mia.rmia(*args, attack=attack, kappa=1.3), mia.rmia(*args, attack=attack, kappa=1.3, a=a))


def _rmia_naive(s, z, m, attack, a, kappa=mia.KAPPA):
    """Leave-one-out RMIA the slow, obvious way: loops over targets, examples and population samples."""
    K, n, A = s.shape
    p, pz = 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-z))  # probability of the true class
    p, pz = p.mean(-1), pz.mean(-1)  # averaged over the queries
    out = np.zeros((K, n))
    for t in range(K):
        refs = [r for r in range(K) if r != t]
        a_t = a[t] if np.ndim(a) else a
        chosen = []
        for j in range(n):
            ins = [r for r in refs if m[r, j]]
            outs = [r for r in refs if not m[r, j]]
            if attack == "online":
                k = min(len(ins), len(outs))
                chosen.append(ins[:k] + outs[:k])
            else:  # the fewest OUT models any example has, for every example
                c = min(sum(not m[r, i] for r in refs) for i in range(n))
                chosen.append(outs[:c])
        n_z = int(np.median([len(c) for c in chosen]))
        mix = lambda q: 0.5 * ((1 + a_t) * q + (1 - a_t))  # the paper's approximation of p̄ from p̄_OUT
        rz = [pz[t, i] / mix(np.mean([pz[r, i] for r in refs[:n_z]])) for i in range(z.shape[1])]
        for j in range(n):
            mean = np.mean([p[r, j] for r in chosen[j]])
            rx = p[t, j] / (mix(mean) if attack == "offline" else mean)
            out[t, j] = np.mean([rx >= kappa * r for r in rz])
    return out  # the paper's fraction, without the tie-break


def _same_order_within_targets(scores, naive):
    """Within each target the tie-broken scores refine the fractions: sorted by score, the fractions never
    go down."""
    for sc, nv in zip(scores, naive):
        o = np.argsort(sc, kind="stable")
        assert (np.diff(nv[o]) >= -1e-12).all()


@pytest.mark.parametrize("attack", ["online", "offline"])
def test_rmia_leave_one_out_equals_the_obvious_loops(attack):
    rng = np.random.default_rng(0)
    K, n, nz, A = 6, 25, 40, 2
    m = mia.membership_masks(K, n, seed=2).numpy()
    s = rng.normal(size=(K, n, A)) + m[..., None] + rng.normal(0, 2, (1, n, 1))
    z = rng.normal(size=(K, nz, A)) + rng.normal(0, 2, (1, nz, 1))
    res = mia.rmia_leave_one_out(s, z, m, attack=attack, a=0.3)
    assert res.name == f"rmia-{attack}" and res.runs == K and np.array_equal(res.labels, m.ravel())
    frac = lambda sc: np.floor(nz * sc + 1e-9) / nz  # the paper's fraction; the rest orders ties
    assert np.allclose(frac(res.per_run()[0]), _rmia_naive(s, z, m, attack, 0.3), atol=1e-12)
    _same_order_within_targets(res.per_run()[0], _rmia_naive(s, z, m, attack, 0.3))
    fitted = mia.rmia_leave_one_out(s, z, m, attack=attack, kappa=1.5)
    a = fitted.details["a"]
    assert len(a) == K and all(0 <= v <= 1 for v in a) and len(set(a)) == K  # one a per target
    assert np.allclose(frac(fitted.per_run()[0]), _rmia_naive(s, z, m, attack, a, kappa=1.5))
    assert len(np.unique(fitted.scores)) == fitted.scores.size  # no ties left
    # the same target attacked with the others as separate references
    keep = np.arange(K) != 2
    one = mia.rmia(torch.from_numpy(s[2]), torch.from_numpy(s[keep]), torch.from_numpy(m[keep]),
                   torch.from_numpy(z[2]), torch.from_numpy(z[keep]), attack=attack, a=0.3)
    assert one.shape == (n,) and np.allclose(one, res.per_run()[0][2])


def test_rmia_fits_a_without_the_target():
    """Each target's a comes from its reference models alone: changing the target's outputs changes its
    scores, never its a; and a is the slope the approximation needs (planted: 1 − p_IN = 0.3·(1 − p_OUT))."""
    rng = np.random.default_rng(1)
    K, n = 8, 200
    m = mia.membership_masks(K, n, seed=0).numpy()
    s = rng.normal(size=(K, n, 1)) + 1.5 * m[..., None] + rng.normal(0, 2, (1, n, 1))
    z = rng.normal(size=(K, 300, 1)) + rng.normal(0, 2, (1, 300, 1))
    base = mia.rmia_leave_one_out(s, z, m, attack="offline")
    s2, z2 = s.copy(), z.copy()
    s2[3], z2[3] = rng.normal(size=(n, 1)), rng.normal(size=(300, 1))
    other = mia.rmia_leave_one_out(s2, z2, m, attack="offline")
    assert other.details["a"][3] == base.details["a"][3]
    assert not np.allclose(other.per_run()[0][3], base.per_run()[0][3])
    p_out = rng.uniform(0.05, 0.95, n)
    p = np.where(m, 1 - 0.3 * (1 - p_out), p_out)[..., None]  # every IN model moves p 70% of the way to 1
    fitted = mia.rmia_leave_one_out(_phi(p), z, m, attack="offline")
    assert np.allclose(fitted.details["a"], 0.3)


def test_rmia_finds_planted_members_with_few_reference_models():
    """φ_IN ~ N(μ_j + 1, 1), φ_OUT ~ N(μ_j, 1), population φ ~ N(μ_ζ, 1) with the same spread of μ: RMIA
    beats chance by far with the most references, and still with one model per side (where LiRA cannot
    estimate a spread); more references help."""
    rng = np.random.default_rng(0)
    K, n, nz = 16, 1000, 2000
    m = mia.membership_masks(K, n, seed=1).numpy()
    s = (rng.normal(0, 2, n) + m)[..., None] + rng.normal(size=(K, n, 2))
    z = rng.normal(0, 2, nz)[None, :, None] + rng.normal(size=(K, nz, 2))
    for attack in mia.RMIA_ATTACKS:
        full = mia.rmia_leave_one_out(s, z, m, attack=attack).summary(bootstrap=100)
        few = mia.rmia_leave_one_out(s, z, m, attack=attack, per_side=1).summary(bootstrap=100)
        assert full["auc"] > 0.74 and few["auc_ci"][0] > 0.65, (attack, full["auc"], few["auc"])
        assert full["auc"] > few["auc"] + 0.02
        assert full["tpr@0.01"] > 0.05 and full["tpr@0.001"] > 0.004  # far above the FPR


def test_rmia_without_signal_gives_tpr_equal_to_fpr():
    """Pool and population alike, membership changing nothing: every RMIA score is a population quantile
    of an exchangeable sample, so members and non-members are scored alike (AUC ½, TPR ≈ FPR)."""
    rng = np.random.default_rng(0)
    K, n, nz = 16, 2000, 3000
    m = mia.membership_masks(K, n, seed=1).numpy()
    s = rng.normal(0, 2, n)[:, None] + rng.normal(size=(K, n, 2))
    z = rng.normal(0, 2, nz)[None, :, None] + rng.normal(size=(K, nz, 2))
    for attack in mia.RMIA_ATTACKS:
        for per_side in (None, 1):
            r = mia.rmia_leave_one_out(s, z, m, attack=attack, per_side=per_side)
            out = metrics.summary(*r.per_run(), bootstrap=200, fprs=(0.01, 0.1))
            assert out["auc_ci"][0] < 0.5 < out["auc_ci"][1], (attack, per_side, out["auc"])
            assert abs(out["tpr@0.01"] - 0.01) < 0.006 and abs(out["tpr@0.1"] - 0.1) < 0.03, (attack, per_side, out)
            nonmember = r.scores[~r.labels]  # a non-member's score is uniform on [0, 1]
            assert abs(nonmember.mean() - 0.5) < 0.02 and abs((nonmember > 0.9).mean() - 0.1) < 0.02


def test_rmia_bad_arguments():
    rng = np.random.default_rng(0)
    m = mia.membership_masks(4, 30, seed=0).numpy()
    s, z = rng.normal(size=(4, 30, 2)), rng.normal(size=(4, 20, 2))
    with pytest.raises(ValueError, match="attack='global'.*'online', 'offline'"):
        mia.rmia_leave_one_out(s, z, m, attack="global")
    with pytest.raises(ValueError, match="kappa=0"):
        mia.rmia_leave_one_out(s, z, m, kappa=0)
    with pytest.raises(ValueError, match="a=1.5"):
        mia.rmia_leave_one_out(s, z, m, attack="offline", a=1.5)
    with pytest.raises(ValueError, match="per_side=0"):
        mia.rmia_leave_one_out(s, z, m, per_side=0)
    with pytest.raises(ValueError, match="population has shape"):
        mia.rmia_leave_one_out(s, z[..., :1], m)
    m2 = mia.membership_masks(2, 30, seed=0).numpy()  # K = 2: the one reference is on the other side
    for attack in mia.RMIA_ATTACKS:
        with pytest.raises(ValueError, match="example 0 has no usable reference model \\(target 0\\)"):
            mia.rmia_leave_one_out(s[:2], z[:2], m2, attack=attack)
    never = np.zeros((1, 30), dtype=bool)  # one reference model, which trained on none of the pool
    with pytest.raises(ValueError, match="needs ≥ 2 reference models"):
        mia.rmia(s[0], s[1:2], never, z[0], z[1:2], attack="offline")
    assert mia.rmia(s[0], s[1:2], never, z[0], z[1:2], attack="offline", a=0.5).shape == (30,)
    # a probability of 10⁻⁴⁰⁰ keeps its logarithm
    assert np.isclose(mia.log_true_class_probability(np.array([[-920.0]]))[0], -920.0)
