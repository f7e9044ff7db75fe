"""Chapter 8's experiments: the private pipelines (dcprivacy.pipelines.run_dp_pipeline), the attack design
that lets a DP bound apply (independent_masks, cross_attack), and the bound itself (dcprivacy.dp.tpr_bound,
analytic_gaussian_epsilon); the one-run audit is tested in tests/test_audit.py."""
import importlib.util
import math

import numpy as np
import pytest
import torch

from dcprivacy import dp, metrics
from dcprivacy import pipelines as P
from dcprivacy.config import DP, MIA
from dcprivacy.mia import lira, membership_masks

DELTA = 1e-5
opacus = pytest.mark.skipif(importlib.util.find_spec("opacus") is None, reason='needs Opacus: pip install -e ".[dp]"')
CFG = DP(ipc=1, width=4, iterations=3, sample_rate=0.2, eval_epochs=2, dpsgd_epochs=1, dpsgd_sample_rate=0.25,
         accountant="rdp", attack_epsilon=4.0, attack_runs=4, attack_pool=40)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and far faster on a shared machine (see tests/test_dp.py)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pool(fashion):
    from dcprivacy.data import class_balanced_subset
    idx = class_balanced_subset(fashion.train_y, 4, seed=0)
    return fashion.train_x[idx], fashion.train_y[idx], fashion.test_x[:50], fashion.test_y[:50]


# --- the private pipelines -------------------------------------------------------------------------

@opacus
@pytest.mark.parametrize("name", P.DP_PIPELINES)
def test_every_dp_pipeline_produces_scores_for_every_run(pool, name):
    x, y, tx, ty = pool
    masks = P.independent_masks(4, len(y), seed=0)
    r = P.run_dp_pipeline(name, x, y, masks, tx, ty, cfg=CFG)
    assert r.name == name and r.runs == [0, 1, 2, 3]
    assert r.scores.shape == (4, 40, 2) and r.scores.dtype == torch.float64 and torch.isfinite(r.scores).all()
    assert r.logits.shape == (4, 40, 10) and r.test_accuracy.shape == (4,)
    assert not r.init_mask.any()  # DP-DM starts from noise; DP-SGD has no synthetic set
    assert torch.equal(r.train_size, torch.full((4,), 10) if name == "dp-dm" else masks.sum(1))
    assert r.config["target_epsilon"] == 4.0 and 0 < r.config["epsilon"] <= 4.0
    assert r.config["noise_multiplier"] == dp.calibrate_noise(
        4.0, DELTA, *((CFG.sample_rate, CFG.iterations) if name == "dp-dm" else (0.25, 4)), "rdp")
    if name == "dp-dm":
        assert r.config["class_size"] == 2.0  # public: half of the balanced pool's 4 per class
    res = P.cross_attack(r, masks, y)
    assert res.scores.shape == (160,) and np.array_equal(res.labels, masks.numpy().ravel())
    assert P.attack(r, masks, y).scores.shape == (160,)  # the chapter-4 attacks take the same runs


@opacus
def test_dp_pipeline_shards_merge_to_the_full_run(pool):
    x, y, tx, ty = pool
    masks = P.independent_masks(4, len(y), seed=0)
    full = P.run_dp_pipeline("dp-dm", x, y, masks, tx, ty, cfg=CFG)
    parts = [P.run_dp_pipeline("dp-dm", x, y, masks, tx, ty, cfg=CFG, runs=r) for r in ([2, 3], [0, 1])]
    merged = P.PipelineRuns.merge(parts)
    assert merged.runs == [0, 1, 2, 3] and torch.allclose(merged.scores, full.scores)


@opacus
def test_infinite_epsilon_is_the_same_pipeline_without_noise(pool):
    x, y, tx, ty = pool
    masks = P.independent_masks(4, len(y), seed=0)
    r = P.run_dp_pipeline("dp-sgd", x, y, masks, tx, ty, cfg=CFG, epsilon=math.inf, runs=[0])
    assert r.config["epsilon"] == math.inf and r.config["noise_multiplier"] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="dm"), "allowed values are dp-dm, dp-sgd"),
    (dict(epsilon=0.0), "epsilon=0.0: must be > 0"),
    (dict(epsilon=-1.0), "epsilon=-1.0"),
])
def test_dp_pipeline_rejects_bad_arguments_before_any_work(pool, kwargs, match):
    x, y, tx, ty = pool
    args = dict(name="dp-dm", cfg=DP(iterations=10 ** 9)) | kwargs
    name = args.pop("name")
    with pytest.raises(ValueError, match=match):
        P.run_dp_pipeline(name, x, y, P.independent_masks(4, len(y)), tx, ty, **args)


# --- an attack the bound applies to ----------------------------------------------------------------

def test_independent_masks_hide_the_targets_membership():
    m = P.independent_masks(8, 50, seed=3)
    assert torch.equal(m, torch.cat([membership_masks(4, 50, seed=3), membership_masks(4, 50, seed=4)]))
    assert bool((m[:4].sum(0) == 2).all() and (m[4:].sum(0) == 2).all())  # each half balanced
    # Leave-one-out shadows of one balanced set count K/2 − 1 or K/2 members: membership, without a model.
    b = membership_masks(8, 50, seed=3)
    assert metrics.auc(-(b.sum(0, keepdim=True) - b.int()).numpy().ravel(), b.numpy().ravel()) == 1.0
    with pytest.raises(ValueError, match="multiple of 4"):
        P.independent_masks(6, 10)


def _fake_runs(masks, signal, seed=0):
    """Scores φ = per-example level + signal·member + noise, as a PipelineRuns of all runs."""
    g = torch.Generator().manual_seed(seed)
    K, n = masks.shape
    level = 3 * torch.randn(1, n, 1, generator=g, dtype=torch.float64)
    phi = level + signal * masks.unsqueeze(-1).double() + torch.randn(K, n, 2, generator=g, dtype=torch.float64)
    return P.PipelineRuns("fake", list(range(K)), phi, torch.randn(K, n, 10, generator=g), torch.zeros(K),
                          torch.zeros(K, n, dtype=torch.bool), torch.zeros(K))


def test_cross_attack_takes_its_shadows_from_the_other_half():
    masks = P.independent_masks(8, 400, seed=0)
    r = _fake_runs(masks, signal=2.0)
    res = P.cross_attack(r, masks, torch.zeros(400, dtype=torch.long))
    expect = lira(r.scores[:4], r.scores[4:], masks[4:], attack="online", fixed_variance=True)
    assert np.allclose(res.per_run()[0][:4], expect)
    assert metrics.auc(res.scores, res.labels) > 0.9  # it finds a real signal
    loss = P.cross_attack(r, masks, torch.zeros(400, dtype=torch.long), "loss")
    assert loss.scores.shape == (3200,)
    shuffled = P.PipelineRuns("x", [1, 0, 2, 3, 4, 5, 6, 7], r.scores, r.logits, r.test_accuracy, r.init_mask,
                              r.train_size)
    with pytest.raises(ValueError, match="all K = 8 runs"):
        P.cross_attack(shuffled, masks, torch.zeros(400, dtype=torch.long))


def test_without_signal_the_cross_attack_is_at_chance():
    """Models that leak nothing: the cross attack's AUC is 0.5 within noise — its shadows' masks carry no
    information about the targets' members (leave-one-out shadows of one balanced set would)."""
    masks = P.independent_masks(8, 4000, seed=1)
    r = _fake_runs(masks, signal=0.0, seed=1)
    res = P.cross_attack(r, masks, torch.zeros(4000, dtype=torch.long))
    se = 0.5 / math.sqrt(16000)  # ≈ the AUC's standard error under no signal, 16000 vs 16000 pairs
    assert abs(metrics.auc(res.scores, res.labels) - 0.5) < 4 * se


# --- the bound -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma, exact", [(1.0, 4.377), (5.0, 0.7255)])
def test_analytic_gaussian_epsilon_matches_the_published_values(sigma, exact):
    from scipy.stats import norm
    e = dp.analytic_gaussian_epsilon(sigma, DELTA)
    assert e == pytest.approx(exact, abs=1e-3)
    a, b = 1 / (2 * sigma), sigma
    assert norm.cdf(a - e * b) - math.exp(e) * norm.cdf(-a - e * b) == pytest.approx(DELTA, rel=1e-6)
    assert dp.analytic_gaussian_epsilon(2 * sigma, DELTA) < e  # more noise, less ε
    with pytest.raises(ValueError, match="noise_multiplier=0"):
        dp.analytic_gaussian_epsilon(0, DELTA)


def test_tpr_bound():
    f = np.logspace(-6, 0, 50)
    assert np.allclose(dp.tpr_bound(f, 0.0, 0.0), f)  # ε = δ = 0: no test beats chance
    b = dp.tpr_bound(f, 2.0, DELTA)
    assert np.all(b >= f) and np.all(np.diff(b) >= 0) and b[-1] == 1.0
    assert dp.tpr_bound(1e-4, 2.0, DELTA) == pytest.approx(math.exp(2) * 1e-4 + DELTA)
    assert dp.tpr_bound(0.5, 1.0, DELTA) == pytest.approx(1 - math.exp(-1) * (0.5 - DELTA))  # the second inequality
    assert np.all(dp.tpr_bound(f, math.inf, DELTA) == 1.0)


# --- reusing chapter 5's experiment --------------------------------------------------------------------

def test_experiment_path_is_where_run_experiment_caches(fashion, tmp_path, monkeypatch):
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path))
    cfg = MIA(pool=40, runs=4, epochs=1, epochs_small=1, width=4, ipc=1, pipelines=("subset",), bootstrap=0)
    path = P.experiment_path(fashion, cfg)
    assert not path.exists() and tmp_path in path.parents
    P.run_experiment(fashion, cfg, log=lambda s: None)
    assert path.exists()
    assert P.experiment_path(fashion, cfg, seed=1) != path and P.experiment_path(fashion, MIA()) != path
