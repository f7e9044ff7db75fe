"""Files: crafted pickles are refused by every command that reads a file; writes are atomic and a
result's JSON record never goes stale; shards describe themselves and attack-merge refuses mixtures;
killed runs resume to the same result; a Slurm job array run locally merges to the unsharded result."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcprivacy import cli, condense as C, config, data, files
from tinycli import save_small_data, tiny_profile

ROOT = Path(__file__).resolve().parent.parent
TINYCLI = [sys.executable, str(ROOT / "tests" / "tinycli.py")]


@pytest.fixture
def tiny(monkeypatch, fashion, tmp_path):
    """The CLI in this process at test sizes, on 12 images per class of FashionMNIST."""
    path = save_small_data(fashion, tmp_path / "small-data.pt")
    from tinycli import small_dataset
    small = small_dataset(path)
    real_get = config.get_profile
    monkeypatch.setattr(config, "get_profile", lambda name=None: tiny_profile(real_get(name)))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: small)
    for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(k, raising=False)
    return path


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.err


class Payload:
    """A pickle that, when unpickled without weights_only, creates a marker file."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path, marker, **fields):
    torch.save({**fields, "payload": Payload(marker)}, path)
    return path


# --- 1. crafted pickles -------------------------------------------------------------------------

def test_crafted_pickle_is_refused_by_every_command_that_reads_a_file(tiny, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = crafted(tmp_path / "evil.pt", marker, images=torch.zeros(1))
    shards = tmp_path / "shards"
    shards.mkdir()
    crafted(shards / "subset-shard-0-of-1.pt", marker)
    runs_dir = tmp_path / "att" / "runs"
    runs_dir.mkdir(parents=True)
    crafted(runs_dir / "subset-run-0.pt", marker)
    ckpt_dir = tmp_path / "attdm" / "runs"
    ckpt_dir.mkdir(parents=True)
    crafted(ckpt_dir / "dm-run-0-condense.pt", marker)
    commands = {
        "evaluate": ["evaluate", evil],
        "attack-merge": ["attack-merge", shards, "--pipeline", "subset"],
        "condense --checkpoint": ["condense", "--method", "dm", "--ipc", "1", "--checkpoint", evil,
                                  "--out", tmp_path / "s.pt"],
        "attack (a finished run)": ["attack", "--pipeline", "subset", "--out", tmp_path / "att"],
        "attack (a run's condensation checkpoint)": ["attack", "--pipeline", "dm", "--out", tmp_path / "attdm"],
    }
    for name, argv in commands.items():
        rc, err = run(capsys, *argv)
        assert not marker.exists(), f"{name}: the payload ran"
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "refusing to load it" in err, (name, err)
    assert not (tmp_path / "s.pt").exists() and not (tmp_path / "s.json").exists()


def test_crafted_pickle_in_the_experiment_cache_is_not_trusted(tmp_path):
    from dcprivacy.pipelines import Experiment
    marker = tmp_path / "PWNED"
    with pytest.raises(files.UnsafeFileError, match="refusing"):
        Experiment.load(crafted(tmp_path / "mia-x.pt", marker))
    with pytest.raises(files.UnsafeFileError):
        C.SyntheticSet.load(crafted(tmp_path / "s.pt", marker))
    assert not marker.exists()


# --- 2. whole files ----------------------------------------------------------------------------

def test_a_write_killed_half_way_leaves_the_previous_file(tmp_path, monkeypatch):
    path = files.save({"v": torch.ones(3)}, tmp_path / "c.pt")
    real_save = torch.save

    def dies_half_way(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        Path(f).write_bytes(Path(f).read_bytes()[:50])  # truncated, then the process "dies"
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        files.save({"v": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(files.load(path)["v"], torch.ones(3)), "the previous file is intact"
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "no temporary file is left behind"
    with pytest.raises(files.FileError, match="truncated"):
        (tmp_path / "t.pt").write_bytes(path.read_bytes()[:100])
        files.load(tmp_path / "t.pt")


@pytest.mark.parametrize("fail_at", [0, 1, 2, 3])
def test_a_result_and_its_record_never_disagree(tmp_path, monkeypatch, fail_at):
    """Killed at any step of writing a new pair over an old one: a record present beside the result
    is the result's own (its sha256 matches)."""
    pt, js = files.save_with_record({"v": torch.ones(2)}, tmp_path / "r.pt", {"run": "old"})
    steps = {"n": 0}
    real_replace, real_unlink = os.replace, Path.unlink

    def step():
        if steps["n"] == fail_at:
            raise KeyboardInterrupt
        steps["n"] += 1
    monkeypatch.setattr(Path, "unlink", lambda self, *a, **k: (step() if self == js else None,
                                                               real_unlink(self, *a, **k))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (step(), real_replace(a, b))[1])
    try:
        files.save_with_record({"v": torch.zeros(2)}, pt, {"run": "new"})
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert pt.exists()
    if js.exists():
        assert json.loads(js.read_text())["sha256"] == files.sha256(pt)
    new = torch.equal(files.load(pt)["v"], torch.zeros(2))
    assert not js.exists() or json.loads(js.read_text())["run"] == ("new" if new else "old")


def test_condense_writes_the_set_and_its_record_as_a_pair(tiny, tmp_path, capsys):
    out = tmp_path / "deep" / "set.pt"
    rc, err = run(capsys, "condense", "--method", "dm", "--ipc", "1", "--iterations", "2", "--out", out)
    assert rc == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == files.sha256(out) and record["config"]["iterations"] == 2
    assert C.SyntheticSet.load(out).config["width"] == 4
    rc, err = run(capsys, "condense", "--method", "dm", "--ipc", "1", "--iterations", "3", "--out", out)
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == files.sha256(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["set.json", "set.pt"]


def test_old_synthetic_sets_still_load(tmp_path, fashion):
    """Sets saved before the format tag (a plain dict of the dataclass's fields) load safely."""
    from dataclasses import asdict
    idx = data.class_balanced_subset(fashion.train_y, 1, seed=0)
    s = C.random_real_subset(fashion.train_x[idx], fashion.train_y[idx], 1)
    torch.save(asdict(s), tmp_path / "old.pt")
    assert torch.equal(C.SyntheticSet.load(tmp_path / "old.pt").images, s.images)


# --- 3. shards describe themselves -------------------------------------------------------------

ATTACK = ["attack", "--pipeline", "subset"]


def test_attack_merge_refuses_mixed_missing_and_stale_shards(tiny, tmp_path, capsys):
    def shard(folder, spec, *extra):
        rc, err = run(capsys, *ATTACK, "--shard", spec, "--out", tmp_path / folder, *extra)
        assert rc == 0, err

    def merge(folder):
        return run(capsys, "attack-merge", tmp_path / folder, "--pipeline", "subset")

    shard("seeds", "0/2", "--seed", "0")
    shard("seeds", "1/2", "--seed", "1")
    rc, err = merge("seeds")
    assert rc == 2 and "different experiments" in err and "seed (1 ≠ 0)" in err and len(err.splitlines()) == 1
    shard("pools", "0/2", "--pool", "40")
    shard("pools", "1/2", "--pool", "60")
    rc, err = merge("pools")
    assert rc == 2 and "pool_size (40 ≠ 60)" in err or "pool_size (60 ≠ 40)" in err, err
    shard("ok", "0/2")
    rc, err = merge("ok")
    assert rc == 2 and "miss run(s) [2, 3] of 4: run --shard 1/2 first" in err, err
    shard("ok", "1/2")
    rc, err = merge("ok")
    assert rc == 0, err
    shutil.copy(tmp_path / "ok" / "subset-shard-0-of-2.pt", tmp_path / "ok" / "subset-shard-0-of-4.pt")
    rc, err = merge("ok")
    assert rc == 2 and "name does not match its contents" in err, err
    (tmp_path / "ok" / "subset-shard-0-of-4.pt").unlink()
    shard("ok", "3/4")  # a stale split of another N beside the good ones
    rc, err = merge("ok")
    assert rc == 2 and "splits the runs into" in err and "remove the stale split" in err, err
    (tmp_path / "ok" / "subset-shard-3-of-4.pt").unlink()
    d = files.load(tmp_path / "ok" / "subset-shard-1-of-2.pt")
    d["config"]["epochs"] = 99  # another configuration
    files.save(d, tmp_path / "ok" / "subset-shard-1-of-2.pt")
    rc, err = merge("ok")
    assert rc == 2 and "config.epochs" in err, err
    old = {k: v for k, v in d.items() if k in ("runs", "masks", "pool_idx", "pool_y")}
    files.save(old, tmp_path / "ok" / "subset-shard-1-of-2.pt")  # written before shards described themselves
    rc, err = merge("ok")
    assert rc == 2 and "older dcprivacy" in err, err


# --- 5. resume ---------------------------------------------------------------------------------

def _env(**kw):
    """The environment of a test process: this checkout, and this process's thread count (the same
    threads give the same floating-point sums, so results compare bit for bit)."""
    return dict(os.environ, DCPRIVACY_PROFILE="quick", DCPRIVACY_PROGRESS="0", PYTHONPATH=str(ROOT),
                OMP_NUM_THREADS=str(torch.get_num_threads()), **kw)


def _tiny_process(args, data_file, kill_at=None, cwd=None):
    env = _env(TINYCLI_DATA=str(data_file))
    env.pop("TINYCLI_KILL_AT", None)
    if kill_at:
        env["TINYCLI_KILL_AT"] = str(kill_at)
    return subprocess.run(TINYCLI + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=cwd)


@pytest.mark.slow
def test_a_killed_condensation_resumes_to_the_uninterrupted_result(tiny, tmp_path, capsys):
    args = ["condense", "--method", "dm", "--ipc", "1", "--iterations", "12", "--checkpoint-every", "4"]
    killed = _tiny_process(args + ["--checkpoint", tmp_path / "a.ckpt.pt", "--out", tmp_path / "a.pt"], tiny,
                           kill_at=7)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "a.json").exists()
    assert files.load(tmp_path / "a.ckpt.pt")["iteration"] == 4
    resumed = _tiny_process(args + ["--checkpoint", tmp_path / "a.ckpt.pt", "--out", tmp_path / "a.pt"], tiny)
    assert resumed.returncode == 0, resumed.stderr
    rc, err = run(capsys, *args, "--checkpoint", tmp_path / "b.ckpt.pt", "--out", tmp_path / "b.pt")  # uninterrupted
    assert rc == 0, err
    a, b = C.SyntheticSet.load(tmp_path / "a.pt"), C.SyntheticSet.load(tmp_path / "b.pt")
    assert torch.equal(a.images, b.images) and torch.equal(a.history["loss"], b.history["loss"])


@pytest.mark.slow
def test_a_killed_attack_skips_finished_runs_and_resumes_to_the_same_scores(tiny, tmp_path, capsys):
    args = ["attack", "--pipeline", "dm", "--runs", "4", "--shard", "0/1"]
    killed = _tiny_process(args + ["--out", tmp_path / "a"], tiny, kill_at=15)  # 6 iterations per run: in run 2
    assert killed.returncode == -9, killed.stderr
    done = sorted(p.name for p in (tmp_path / "a" / "runs").iterdir())
    assert done == ["dm-run-0.pt", "dm-run-1.pt", "dm-run-2-condense.pt"], done
    resumed = _tiny_process(args + ["--out", tmp_path / "a"], tiny)
    assert resumed.returncode == 0, resumed.stderr
    assert "run(s) [0]: already finished" in resumed.stderr and "run(s) [1]: already finished" in resumed.stderr
    rc, err = run(capsys, *args, "--out", tmp_path / "b")  # uninterrupted, in this process
    assert rc == 0, err
    a, b = (files.load(tmp_path / f / "dm-shard-0-of-1.pt")["runs"] for f in "ab")
    assert torch.equal(a["scores"], b["scores"]) and torch.equal(a["init_mask"], b["init_mask"])
    ra, rb = (json.loads((tmp_path / f / "dm.json").read_text()) for f in "ab")
    assert ra["attacks"]["lira-online-fixed"]["all"]["auc"] == rb["attacks"]["lira-online-fixed"]["all"]["auc"]


# --- 6. Slurm ----------------------------------------------------------------------------------

def test_slurm_array_run_locally_merges_to_the_unsharded_attack(tiny, tmp_path, capsys, monkeypatch):
    rc, err = run(capsys, *ATTACK, "--out", tmp_path / "whole")
    assert rc == 0, err
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    for task in range(3):
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        rc, err = run(capsys, *ATTACK, "--shard", "auto", "--out", tmp_path / "array")
        assert rc == 0, err
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    rc, err = run(capsys, *ATTACK, "--shard", "auto", "--out", tmp_path / "array")
    assert rc == 2 and "0 ≤ i < N" in err
    rc, err = run(capsys, "attack-merge", tmp_path / "array", "--pipeline", "subset")
    assert rc == 0, err
    a, b = (json.loads((tmp_path / f / "subset.json").read_text()) for f in ("array", "whole"))
    assert a["merged_from"] == [f"subset-shard-{i}-of-3.pt" for i in range(3)]
    for name in b["attacks"]:
        assert a["attacks"][name]["all"]["auc"] == pytest.approx(b["attacks"][name]["all"]["auc"], abs=1e-12)


@pytest.mark.slow
def test_slurm_script_submits_an_array_and_a_dependent_merge(tiny, tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sbatch").write_text('#!/bin/sh\necho "$@" >> "$SBATCH_LOG"\n'  # a stand-in: log, print a job id
                                 'n=$(wc -l < "$SBATCH_LOG"); echo "100$n;cluster"\n')
    (bin_ / "sbatch").chmod(0o755)
    out = tmp_path / "res"
    env = _env(PATH=f"{bin_}:{os.environ['PATH']}", SBATCH_LOG=str(tmp_path / "log"), PIPELINE="subset",
               RUNS="4", TASKS="2", OUT=str(out), DCPRIVACY=" ".join(TINYCLI), TINYCLI_DATA=str(tiny))
    for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "TINYCLI_KILL_AT"):
        env.pop(k, None)
    script = ROOT / "tools" / "slurm" / "attack.sbatch"
    sub = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert sub.returncode == 0, sub.stderr
    array, merge = (tmp_path / "log").read_text().splitlines()
    assert "--array=0-1" in array and "RUNS=4" in array and array.endswith(str(script))
    assert "--dependency=afterok:1001" in merge and "attack-merge" in merge
    for task in range(2):  # what Slurm would run: the script, once per task of the array (2 runs each)
        t = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=300,
                           env=dict(env, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_COUNT="2", SLURM_JOB_ID="7"))
        assert t.returncode == 0, t.stderr
    wrap = merge.split("--wrap ", 1)[1]
    m = subprocess.run(["bash", "-c", wrap], capture_output=True, text=True, env=env, timeout=300)
    assert m.returncode == 0, m.stderr
    assert json.loads((out / "subset.json").read_text())["merged_from"] == \
        [f"subset-shard-{i}-of-2.pt" for i in range(2)]
