import subprocess
import sys

import numpy as np
import pytest
import torch

from dcprivacy import pipelines as P
from dcprivacy.config import MIA
from dcprivacy.mia import membership_masks

CFG = MIA(pool=120, runs=4, epochs=1, epochs_small=2, width=4, ipc=2, dm_iterations=2, batch_real=4,
          dc_iterations=1, dc_loops=(1, 1), bootstrap=0)


@pytest.fixture(scope="module")
def pool(fashion):
    from dcprivacy.data import class_balanced_subset
    idx = class_balanced_subset(fashion.train_y, 12, seed=0)
    return fashion.train_x[idx], fashion.train_y[idx], fashion.test_x[:50], fashion.test_y[:50]


@pytest.mark.parametrize("name", P.PIPELINES)
def test_every_pipeline_produces_scores_for_every_run(pool, name):
    x, y, tx, ty = pool
    masks = membership_masks(4, len(y), seed=0)
    r = P.run_pipeline(name, x, y, masks, tx, ty, cfg=CFG)
    assert r.scores.shape == (4, 120, 2) and r.scores.dtype == torch.float64 and torch.isfinite(r.scores).all()
    assert r.logits.shape == (4, 120, 10) and r.test_accuracy.shape == (4,)
    assert (r.init_mask <= masks).all(), "only members can initialise a synthetic image"
    if name in ("dm", "dsa", "subset"):  # real initialisation (or the subset itself): ipc per class, per run
        assert (r.init_mask.sum(1) == 2 * 10).all()
        assert (r.train_size == 20).all()
    else:
        assert not r.init_mask.any()
    if name == "real":
        assert torch.equal(r.train_size, masks.sum(1))
    res = P.attack(r, masks, y, "lira-online-fixed")
    assert res.scores.shape == (4 * 120,)
    # the test images: accuracy from the plain query, and RMIA's population scores (both queries)
    assert r.population.shape == (4, 50, 2) and r.population.dtype == torch.float64
    assert P.attack(r, masks, y, "rmia-online").scores.shape == (4 * 120,)


@pytest.mark.parametrize("name", ["dm", "dm-noise"])
def test_shared_draws_condense_every_run_from_its_own_members_and_shard_cleanly(pool, name):
    from dataclasses import replace
    x, y, tx, ty = pool
    masks = membership_masks(4, len(y), seed=0)
    cfg = replace(CFG, shared_draws=True)
    full = P.run_pipeline(name, x, y, masks, tx, ty, cfg=cfg)
    assert (full.init_mask <= masks).all() and torch.isfinite(full.scores).all()
    if name == "dm":
        assert (full.init_mask.sum(1) == 2 * 10).all()
    part = P.run_pipeline(name, x, y, masks, tx, ty, cfg=cfg, runs=[2, 3])  # a run ignores its batch-mates
    assert torch.allclose(part.scores, full.scores[2:], atol=1e-6) and torch.equal(part.init_mask, full.init_mask[2:])
    alone = P.run_pipeline(name, x, y, masks, tx, ty, cfg=CFG)
    assert not torch.allclose(alone.scores, full.scores)  # independent draws: another experiment


def test_subset_is_class_balanced_and_inside_the_members():
    y = torch.arange(10).repeat(20)
    members = membership_masks(4, 200, seed=1)
    sub = P._subset_mask(members, y, 3, seed=0)
    assert (sub <= members).all()
    for k in range(4):
        assert torch.equal(torch.bincount(y[sub[k]], minlength=10), torch.full((10,), 3))


def test_shards_merge_to_the_full_run(pool):
    x, y, tx, ty = pool
    masks = membership_masks(4, len(y), seed=0)
    full = P.run_pipeline("dm", x, y, masks, tx, ty, cfg=CFG)
    parts = [P.run_pipeline("dm", x, y, masks, tx, ty, cfg=CFG, runs=r) for r in ([2, 3], [0, 1])]
    merged = P.PipelineRuns.merge(parts)
    assert merged.runs == [0, 1, 2, 3]
    assert torch.allclose(merged.scores, full.scores) and torch.equal(merged.init_mask, full.init_mask)
    assert torch.allclose(merged.population, full.population)
    with pytest.raises(ValueError, match="overlap"):
        P.PipelineRuns.merge([parts[0], parts[0]])


def test_group_summary_splits_members(pool):
    x, y, tx, ty = pool
    masks = membership_masks(4, len(y), seed=0)
    r = P.run_pipeline("dm", x, y, masks, tx, ty, cfg=CFG)
    res = P.attack(r, masks, y, "loss")
    init = P.group_summary(res, r.init_mask, bootstrap=0)
    other = P.group_summary(res, masks & ~r.init_mask, bootstrap=0)
    everyone = P.group_summary(res, bootstrap=0)
    assert init["members"] == int(r.init_mask.sum()) and other["members"] + init["members"] == everyone["members"]
    assert init["nonmembers"] == other["nonmembers"] == everyone["nonmembers"]


def test_bad_pipeline_name(pool):
    x, y, tx, ty = pool
    with pytest.raises(ValueError, match="allowed values are real, subset"):
        P.run_pipeline("gan", x, y, membership_masks(4, len(y)), tx, ty, cfg=CFG)


def test_cli_attack_in_shards_then_merge(tmp_path):
    env_args = ["--runs", "4", "--pool", "60"]
    base = [sys.executable, "-m", "dcprivacy", "attack", "--pipeline", "subset", "--out", str(tmp_path), *env_args]
    import os
    env = dict(os.environ, DCPRIVACY_PROFILE="quick")
    for shard in ("0/2", "1/2"):
        out = subprocess.run(base + ["--shard", shard], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "dcprivacy", "attack-merge", str(tmp_path), "--pipeline", "subset"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    import json
    result = json.loads((tmp_path / "subset.json").read_text())
    assert result["runs"] == 4 and set(result["attacks"]) == set(P.ATTACKS) and "provenance" in result
    # RMIA beside LiRA, against the population the shards carried: the quick profile's test images
    from dcprivacy.config import MIA
    assert result["population"] == {"source": "test images", "samples": MIA().test_size}
    for name in ("rmia-online", "rmia-offline"):
        assert 0 <= result["attacks"][name]["all"]["auc"] <= 1 and "auc_ci" in result["attacks"][name]["all"]
    shard = torch.load(tmp_path / "subset-shard-0-of-2.pt", weights_only=True)
    assert shard["runs"]["population"].shape[:2] == (2, MIA().test_size)
    bad = subprocess.run(base + ["--shard", "5/2"], capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0 and "--shard" in bad.stderr


def test_subset_sweep_nests_the_subsets(fashion):
    from dataclasses import replace
    cfg = replace(CFG, pool=120, runs=4, subset_sizes=(1, 2), epochs_small=1, test_size=50)
    sweep = P.run_subset_sweep(fashion, cfg, cache=False, log=lambda _: None)
    assert sorted(sweep) == [1, 2]
    for ipc, r in sweep.items():
        assert (r.train_size == 10 * ipc).all() and torch.equal(r.init_mask.sum(1), r.train_size)
    assert (sweep[1].init_mask <= sweep[2].init_mask).all()  # nested: the 1 per class are among the 2


def test_subset_sweep_refuses_an_experiment_of_other_masks(fashion):
    from dataclasses import replace
    cfg = replace(CFG, pool=120, runs=4, subset_sizes=(1, 2), test_size=50)
    _, y, masks, _, _, pool_idx = P._attack_data(fashion, cfg, 0, "cpu", with_pool=True)
    other = P.Experiment(pool_idx, y.cpu(), masks.flip(0), {}, {})  # the same pool, the runs' masks swapped
    with pytest.raises(ValueError, match="other masks"):
        P.run_subset_sweep(fashion, cfg, cache=False, exp=other, log=lambda _: None)


def test_strongest_attack_is_judged_on_the_chosen_examples_only():
    """Members' φ rise with their membership on the first half of the pool (LiRA and RMIA find them);
    on the second half only their loss does (logits of members favour their label). Judged on the first
    half, a LiRA or RMIA variant wins; on the second, the loss attack."""
    g = torch.Generator().manual_seed(0)
    K, n = 8, 400
    masks = membership_masks(K, n, seed=0)
    first = torch.arange(n) < n // 2
    y = torch.randint(0, 10, (n,), generator=g)
    scores = torch.randn(K, n, 2, generator=g, dtype=torch.float64) + 3.0 * (masks & first)[..., None]
    logits = torch.randn(K, n, 10, generator=g)
    logits[masks & ~first] += 6.0 * torch.nn.functional.one_hot(y, 10)[None].expand(K, n, 10)[masks & ~first]
    population = torch.randn(K, 300, 2, generator=g, dtype=torch.float64)  # RMIA's: no model trained on them
    runs = P.PipelineRuns("fake", list(range(K)), scores, logits, torch.full((K,), 0.5),
                          torch.zeros(K, n, dtype=torch.bool), torch.full((K,), n // 2), population=population)
    best, results = P.strongest_attack(runs, masks, y, first)
    assert best.startswith(("lira", "rmia")) and set(results) == set(P.ATTACKS)  # φ-based attacks see it
    assert P.strongest_attack(runs, masks, y, (~first).nonzero().flatten())[0] == "loss"


def _fake_runs(masks, signal, population=True, seed=0):
    """Scores φ = per-example level + signal·member + noise on the pool, and on 300 population samples."""
    g = torch.Generator().manual_seed(seed)
    K, n = masks.shape
    phi = 3 * torch.randn(1, n, 2, generator=g, dtype=torch.float64) + signal * masks.unsqueeze(-1).double() \
        + torch.randn(K, n, 2, generator=g, dtype=torch.float64)
    pop = 3 * torch.randn(1, 300, 2, generator=g, dtype=torch.float64) + torch.randn(K, 300, 2, generator=g,
                                                                                     dtype=torch.float64)
    return P.PipelineRuns("fake", list(range(K)), phi, torch.randn(K, n, 10, generator=g), torch.zeros(K),
                          torch.zeros(K, n, dtype=torch.bool), torch.zeros(K), population=pop if population else None)


def test_population_travels_with_the_runs_and_rmia_needs_it():
    from dcprivacy import metrics
    masks = membership_masks(8, 200, seed=0)
    y = torch.zeros(200, dtype=torch.long)
    r = _fake_runs(masks, signal=2.0)
    back = P.PipelineRuns.from_dict(r.to_dict())
    assert torch.equal(back.population, r.population)
    parts = [P.PipelineRuns("fake", [k], *(getattr(r, f)[k:k + 1] for f in
                                          ("scores", "logits", "test_accuracy", "init_mask", "train_size")),
                            population=r.population[k:k + 1]) for k in (3, 0, 1, 2, 4, 5, 6, 7)]
    assert torch.equal(P.PipelineRuns.merge(parts).population, r.population)
    stale = P.PipelineRuns("fake", [8], *(getattr(r, f)[:1] for f in
                                          ("scores", "logits", "test_accuracy", "init_mask", "train_size")))
    with pytest.raises(ValueError, match="some shards hold population scores"):
        P.PipelineRuns.merge(parts + [stale])
    for name in ("rmia-online", "rmia-offline"):
        assert name in P.ATTACKS
        assert metrics.auc(*P.attack(r, masks, y, name).per_run()) > 0.8  # a strong planted signal
    older = r.to_dict()
    del older["population"]  # runs written before RMIA: every other attack still works
    old = P.PipelineRuns.from_dict(older)
    assert old.population is None and P.attack(old, masks, y, "lira-online").scores.shape == (1600,)
    with pytest.raises(ValueError, match="no population scores.*run them again"):
        P.attack(old, masks, y, "rmia-online")
    bad = r.to_dict()
    bad["population"] = r.population[:3]
    with pytest.raises(Exception, match="one row per run"):
        P.PipelineRuns.from_dict(bad)


def test_cross_attack_runs_rmia_with_the_other_half_as_references():
    from dcprivacy import metrics
    from dcprivacy.mia import rmia
    masks = P.independent_masks(8, 400, seed=0)
    r = _fake_runs(masks, signal=2.0)
    for variant in ("online", "offline"):
        res = P.cross_attack(r, masks, torch.zeros(400, dtype=torch.long), f"rmia-{variant}")
        expect = rmia(r.scores[:4], r.scores[4:], masks[4:], r.population[:4], r.population[4:], attack=variant)
        assert np.allclose(res.per_run()[0][:4], expect) and metrics.auc(res.scores, res.labels) > 0.8
