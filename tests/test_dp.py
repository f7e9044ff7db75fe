"""DP-DM and DP-SGD: the mechanism's sensitivity and noise, the accounting, and the pipelines."""
import importlib.util
import math
import warnings

import pytest
import torch
from scipy import stats
from scipy.optimize import brentq

from dcprivacy import dp, nets, train

DELTA = 1e-5
opacus = pytest.mark.skipif(importlib.util.find_spec("opacus") is None, reason='needs Opacus: pip install -e ".[dp]"')


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is faster, and on a shared 2-core machine two threads that
    wait on each other made these tests 10× slower (measured: 2 s → 23 s for the DP-SGD test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _toy(n=60, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = torch.randn(n, 1, 28, 28, generator=g) * 0.5 + y.view(-1, 1, 1, 1).float()
    return x, y


def _embedder(width=4, k=3):
    return nets.make_net("convnet", width=width, num_classes=k, seed=0).requires_grad_(False).embed


# --- the mechanism ---------------------------------------------------------------------------------

def test_clipping_enforces_the_norm_and_leaves_short_rows_alone():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(200, 16, generator=g) * torch.logspace(-2, 2, 200).unsqueeze(1)
    out = dp.clip_rows(v, 1.5)
    norms, before = out.norm(dim=1), v.norm(dim=1)
    assert bool((norms <= 1.5 * (1 + 1e-6)).all())
    short = before <= 1.5
    assert short.any() and (~short).any()
    assert torch.equal(out[short], v[short])  # untouched, bit for bit
    assert torch.allclose(norms[~short], torch.full_like(norms[~short], 1.5))
    cos = torch.nn.functional.cosine_similarity(out[~short], v[~short])
    assert torch.allclose(cos, torch.ones_like(cos))  # direction kept


def test_one_example_moves_the_clipped_class_sums_by_at_most_C():
    """Add/remove neighbours, on the code path DP-DM uses: ConvNet embeddings → noisy_class_sums (σ = 0)."""
    x, y = _toy(30)
    embed, C = _embedder(), 0.7
    emb = embed(x)
    assert bool((emb.norm(dim=1) > C).all())  # the clip is active: the bound is reached, not avoided
    full = dp.noisy_class_sums(emb, y, 3, clip=C, noise_multiplier=0.0)
    for j in range(len(x)):
        keep = torch.arange(len(x)) != j
        less = dp.noisy_class_sums(emb[keep], y[keep], 3, clip=C, noise_multiplier=0.0)
        diff = full - less
        assert diff.norm() <= C * (1 + 1e-5)
        assert torch.allclose(diff.norm(), torch.tensor(C), rtol=1e-4)
        others = torch.arange(3) != y[j]
        assert torch.equal(diff[others], torch.zeros_like(diff[others]))  # one example, one class sum
    # a huge outlier added: still at most C
    big = torch.cat([emb, 1e6 * emb[:1]])
    more = dp.noisy_class_sums(big, torch.cat([y, y[:1]]), 3, clip=C, noise_multiplier=0.0)
    assert (more - full).norm() <= C * (1 + 1e-5)


def test_noise_has_the_stated_scale():
    """With the data fixed, (release − clipped sums) / (σ·C) should be i.i.d. N(0, 1).

    Chi-square test of the sum of squares over all 10 × 2000 coordinates, two-sided, false-alarm
    rate 1e-3 (seeded, so the outcome is fixed). Power: a noise scale off by 5% moves the
    statistic by about 10 standard deviations.
    """
    g = torch.Generator().manual_seed(0)
    num_classes, k, sigma, C = 10, 2000, 2.5, 0.3  # k: the embedding dimension; C: the clipping norm
    emb, y = torch.randn(500, k, generator=g), torch.arange(500) % num_classes
    clean = dp.noisy_class_sums(emb, y, num_classes, clip=C, noise_multiplier=0.0)
    z = ((dp.noisy_class_sums(emb, y, num_classes, clip=C, noise_multiplier=sigma, generator=g) - clean)
         / (sigma * C)).double()
    m = z.numel()
    s = float((z ** 2).sum())
    p = 2 * min(stats.chi2.cdf(s, m), stats.chi2.sf(s, m))
    assert p > 1e-3, (s / m, p)
    assert abs(float(z.mean())) < 4 / math.sqrt(m)  # centred (4 standard errors)
    assert abs(s / m / 1.05 ** 2 - 1) > 6 * math.sqrt(2 / m)  # the data rule out a noise scale 5% too large


# --- accounting ------------------------------------------------------------------------------------

def analytic_gaussian_epsilon(sigma, delta, sensitivity=1.0):
    """Balle & Wang (2018), Theorem 8: the exact ε of one Gaussian release, independent of Opacus."""
    a, b = sensitivity / (2 * sigma), sigma / sensitivity

    def delta_of(eps):
        return stats.norm.cdf(a - eps * b) - math.exp(eps) * stats.norm.cdf(-a - eps * b)

    return brentq(lambda e: delta_of(e) - delta, 0.0, 100.0)


@opacus
@pytest.mark.parametrize("sigma, exact, prv, rdp", [(1.0, 4.377, 4.387, 4.729), (5.0, 0.7255, 0.7356, 0.7945)])
def test_accountants_agree_with_the_exact_gaussian_mechanism(sigma, exact, prv, rdp):
    """One release, no subsampling (q = 1, one step): PRV is within its error of the exact ε, RDP looser."""
    e = analytic_gaussian_epsilon(sigma, DELTA)
    assert e == pytest.approx(exact, abs=1e-3)
    e_prv = dp.epsilon(sigma, 1.0, 1, DELTA, accountant="prv")
    with warnings.catch_warnings():  # RDP says its best order is the largest it tried: it is loose here
        warnings.simplefilter("ignore")
        e_rdp = dp.epsilon(sigma, 1.0, 1, DELTA, accountant="rdp")
    assert e - 1e-3 <= e_prv <= e + 0.02 and e_prv == pytest.approx(prv, abs=2e-3)
    assert e_rdp > e_prv and e_rdp == pytest.approx(rdp, abs=2e-3)


@opacus
@pytest.mark.parametrize("accountant", dp.ACCOUNTANTS)
def test_calibration_round_trips(accountant):
    sigma = dp.calibrate_noise(2.0, DELTA, 0.05, 200, accountant)
    eps = dp.epsilon(sigma, 0.05, 200, DELTA, accountant)
    assert 2.0 - 0.02 <= eps <= 2.0
    assert dp.epsilon(sigma * 0.9, 0.05, 200, DELTA, accountant) > eps  # less noise, more ε
    assert dp.calibrate_noise(math.inf, DELTA, 0.05, 200) == 0.0 and dp.epsilon(0.0, 0.05, 200, DELTA) == math.inf


@opacus
@pytest.mark.parametrize("kwargs, match", [
    (dict(accountant="gdp"), "accountant='gdp': allowed values are prv, rdp"),
    (dict(sample_rate=0.0), r"sample_rate=0.0: must lie in \(0, 1\]"),
    (dict(steps=2.5), "steps=2.5"),
    (dict(delta=1.0), "delta=1.0"),
    (dict(noise_multiplier=-1.0), "noise_multiplier=-1.0"),
])
def test_accounting_rejects_bad_arguments(kwargs, match):
    args = dict(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=DELTA) | kwargs
    with pytest.raises(ValueError, match=match):
        dp.epsilon(**args)


# --- DP distribution matching ----------------------------------------------------------------------

DM = dict(ipc=2, num_classes=3, class_size=20, sample_rate=0.5, iterations=4, width=4, lr_img=10.0, seed=3,
          accountant="rdp")


@opacus
def test_dp_dm_is_deterministic_by_seed_and_reports_the_accountants_epsilon():
    x, y = _toy()
    a = dp.dp_distribution_matching(x, y, noise_multiplier=1.3, **DM)
    b = dp.dp_distribution_matching(x, y, noise_multiplier=1.3, **DM)
    c = dp.dp_distribution_matching(x, y, noise_multiplier=1.3, **DM | dict(seed=4))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.shape == (6, 1, 28, 28) and a.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert a.epsilon == dp.epsilon(1.3, 0.5, 4, DELTA, "rdp") and a.delta == DELTA
    assert a.init_indices.numel() == 0 and a.method == "dp-dm"
    t = dp.dp_distribution_matching(x, y, target_epsilon=4.0, **DM | dict(iterations=20, sample_rate=0.1))
    assert t.epsilon <= 4.0 and t.config["noise_multiplier"] == dp.calibrate_noise(4.0, DELTA, 0.1, 20, "rdp")
    p = dp.dp_distribution_matching(x, y, noise_multiplier=2.0, **DM | dict(iterations=1, sample_rate=0.1,
                                                                          accountant="prv"))
    assert p.epsilon == dp.epsilon(2.0, 0.1, 1, DELTA, "prv")


@opacus
def test_dp_dm_starts_from_noise_not_from_real_images():
    x, y = _toy()
    x2, _ = _toy(seed=9)
    frozen = DM | dict(lr_img=0.0)
    a = dp.dp_distribution_matching(x, y, noise_multiplier=1.0, **frozen)
    b = dp.dp_distribution_matching(x2, y, noise_multiplier=1.0, **frozen)
    gen = torch.Generator().manual_seed(dp._subseed(DM["seed"], 0))
    assert torch.equal(a.images, dp.noise_init(3, 2, (1, 28, 28), generator=gen))
    assert torch.equal(a.images, b.images)
    moved = dp.dp_distribution_matching(x, y, noise_multiplier=1.0, **DM)
    assert not torch.equal(moved.images, a.images)


@opacus
def test_real_data_reaches_the_images_only_through_the_mechanism(monkeypatch):
    """Replace the mechanism by a data-blind stand-in: two pools of the same size, with different images
    and different class counts, then give the same images — nothing else (e.g. a denominator counted
    from the labels) looks at the data."""
    calls = []

    def blind(emb, labels, num_classes, *, clip, noise_multiplier, generator=None):
        calls.append(noise_multiplier)
        return torch.full((num_classes, emb.shape[1]), 0.1)

    monkeypatch.setattr(dp, "noisy_class_sums", blind)
    x, y = _toy()
    x2, _ = _toy(seed=9)
    y2 = torch.randint(0, 3, y.shape, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(torch.bincount(y2), torch.bincount(y))
    a = dp.dp_distribution_matching(x, y, noise_multiplier=0.8, **DM | dict(augment="crop_flip"))
    b = dp.dp_distribution_matching(x2, y2, noise_multiplier=0.8, **DM | dict(augment="crop_flip"))
    assert calls == [0.8] * (2 * DM["iterations"])
    assert torch.equal(a.images, b.images)


@opacus
@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of target_epsilon"),
    (dict(noise_multiplier=1.0, target_epsilon=2.0), "exactly one of target_epsilon"),
    (dict(noise_multiplier=1.0, class_size=[20, 20]), "class_size"),
    (dict(noise_multiplier=1.0, class_size=0), "class_size"),
    (dict(noise_multiplier=1.0, accountant="gdp"), "allowed values are prv, rdp"),
    (dict(noise_multiplier=1.0, augment="blur"), "allowed groups"),
    (dict(noise_multiplier=1.0, sample_rate=1.5), "sample_rate"),
    (dict(noise_multiplier=1.0, num_classes=2), "num_classes=2"),
])
def test_dp_dm_rejects_bad_arguments_before_any_work(kwargs, match):
    x, y = _toy()
    args = DM | dict(iterations=10 ** 9) | kwargs  # would run for ever if the check came late
    with pytest.raises(ValueError, match=match):
        dp.dp_distribution_matching(x, y, **args)


# --- DP-SGD ----------------------------------------------------------------------------------------

@opacus
def test_dpsgd_trains_within_budget_and_returns_plain_models():
    x, y = _toy(80)
    factory = nets.net_factory("convnet", width=4, num_classes=3)
    members = torch.zeros(2, 80, dtype=torch.bool)
    members[0, :40], members[1, 40:] = True, True
    res = dp.dpsgd_train_models(factory, x, y, seeds=[0, 1], members=members, dataset_size=40, target_epsilon=3.0,
                                epochs=2, sample_rate=1 / 8, lr=0.5, test=(x, y), accountant="rdp")
    assert 0 < res.epsilon <= 3.0 and res.steps == 16 and res.sample_rate == 1 / 8
    assert res.noise_multiplier == dp.calibrate_noise(3.0, DELTA, 1 / 8, 16, "rdp")
    assert res.epsilon == dp.epsilon(res.noise_multiplier, 1 / 8, 16, DELTA, "rdp")
    assert set(res.models.params) == set(dict(factory(0).named_parameters()))
    assert train.predict(res.models, x).shape == (2, 80, 3)
    assert res.accuracy.shape == (2,) and bool((res.accuracy >= 0).all())
    assert not torch.equal(res.models.params["classifier.weight"][0], factory(0).classifier.weight)  # it trained
    again = dp.dpsgd_train_models(factory, x, y, seeds=[0], members=members[:1], dataset_size=40, target_epsilon=3.0,
                                  epochs=2, sample_rate=1 / 8, lr=0.5, accountant="rdp")
    assert all(torch.equal(again.models.params[k][0], v[0]) for k, v in res.models.params.items())  # by seed
    other = dp.dpsgd_train_models(factory, x, y, seeds=[0], members=members[:1], dataset_size=40, target_epsilon=3.0,
                                  epochs=2, sample_rate=1 / 8, lr=0.5, accountant="rdp", secret_seeds=[12345])
    assert not torch.equal(other.models.params["classifier.weight"][0], res.models.params["classifier.weight"][0])
    assert res.config["dataset_size"] == 40  # the normalisation is declared, not counted
    with pytest.raises(ValueError, match="dataset_size"):
        dp.dpsgd_train_models(factory, x, y, seeds=[0], members=members[:1], target_epsilon=3.0)
