"""Files: crafted pickles are refused by every command that reads a file; writes are atomic and a
result's JSON record never goes stale (and a result its record does not describe is refused); --out never
replaces what the command did not write, and one output has one writer at a time; shards describe
themselves and attack-merge refuses mixtures, gaps and altered fields; a checkpoint is checked field by
field; killed runs resume to the same result; a Slurm job array run locally merges to the unsharded result."""
import json
import math
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
    rc, err = run(capsys, "condense", "--method", "dm", "--ipc", "1", "--iterations", "2", "--out", out)
    assert rc == 0, "the same command, the same arguments: it replaces its own result"
    rc, err = run(capsys, "condense", "--method", "dm", "--ipc", "1", "--iterations", "3", "--out", out)
    assert rc == 2 and "iterations: 2 there, 3 now" in err and "--force" in err, err
    rc, err = run(capsys, "condense", "--method", "dm", "--ipc", "1", "--iterations", "3", "--out", out, "--force")
    assert rc == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == files.sha256(out) and record["config"]["iterations"] == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["set.json", "set.pt"]


def test_old_synthetic_sets_still_load(tmp_path, fashion):
    """Sets saved before the format tag (a plain dict of the dataclass's fields) load safely."""
    from dataclasses import asdict
    idx = data.class_balanced_subset(fashion.train_y, 1, seed=0)
    s = C.random_real_subset(fashion.train_x[idx], fashion.train_y[idx], 1)
    torch.save(asdict(s), tmp_path / "old.pt")
    assert torch.equal(C.SyntheticSet.load(tmp_path / "old.pt").images, s.images)


def _refused(rc, err, *expected):
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else "folder"
            for p in sorted(folder.rglob("*"))}


def test_a_result_its_record_does_not_describe_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "x.pt"
    rc, err = run(capsys, "condense", "--method", "dm", "--ipc", "1", "--iterations", "2", "--out", out)
    assert rc == 0, err
    s = C.SyntheticSet.load(out)
    s.images += 1
    s.save(out)  # the set replaced (not through the command): its record now describes another file
    with pytest.raises(files.FileError, match="SHA-256 differs"):
        C.SyntheticSet.load(out)
    rc, err = run(capsys, "evaluate", out)
    _refused(rc, err, "is not the file its record", "x.json", "SHA-256 differs")
    out.with_suffix(".json").write_text('{"note": "my own notes, not a record"}')  # no digest: not a record
    assert torch.equal(C.SyntheticSet.load(out).images, s.images)


# --- 3. --out never replaces what this command did not write; one writer at a time ------------------

CONDENSE2 = ["condense", "--method", "dm", "--ipc", "1", "--iterations", "2"]


@pytest.mark.parametrize("case", ["an unrelated pair", "a result alone", "an unrelated record alone",
                                  "another seed's pair", "another command's record", "a result replaced",
                                  "another profile's pair"])
def test_condense_out_refuses_what_it_did_not_write(case, tiny, tmp_path, capsys, monkeypatch):
    out, record = tmp_path / "x.pt", tmp_path / "x.json"
    expected = {"an unrelated pair": "is not a record written by dcprivacy",
                "a result alone": "exists without its record", "an unrelated record alone": "not a JSON record",
                "another seed's pair": "seed: 1 there, 0 now", "another command's record": "command: 'cost' there",
                "a result replaced": "SHA-256 differs", "another profile's pair": "profile 'standard'"}[case]
    if case == "an unrelated pair":
        out.write_bytes(b"someone's results")
        record.write_text('{"mine": 1}\n')
    elif case == "a result alone":
        out.write_bytes(b"someone's results")
    elif case == "an unrelated record alone":
        record.write_text("notes\n")
    elif case == "another seed's pair":
        assert run(capsys, *CONDENSE2, "--seed", "1", "--out", out)[0] == 0
    elif case == "another command's record":
        assert run(capsys, "cost", "--out", record)[0] == 0
    elif case == "a result replaced":
        assert run(capsys, *CONDENSE2, "--out", out)[0] == 0
        files.save({"other": torch.ones(1)}, out)
    else:
        monkeypatch.setenv("DCPRIVACY_PROFILE", "standard")
        assert run(capsys, *CONDENSE2, "--out", out)[0] == 0
        monkeypatch.setenv("DCPRIVACY_PROFILE", "quick")
    before = _snapshot(tmp_path)
    rc, err = run(capsys, *CONDENSE2, "--out", out)
    _refused(rc, err, expected, "pass --force to replace it")
    assert _snapshot(tmp_path) == before, "nothing was replaced, nothing left behind"
    rc, err = run(capsys, *CONDENSE2, "--out", out, "--force")
    assert rc == 0, err
    assert json.loads(record.read_text())["sha256"] == files.sha256(out)


def test_json_outputs_refuse_what_they_did_not_write(tiny, tmp_path, capsys):
    rc, err = run(capsys, *CONDENSE2, "--out", tmp_path / "s.pt")
    assert rc == 0, err
    evaluate = ["evaluate", tmp_path / "s.pt", "--models", "1", "--epochs", "1", "--width", "4"]
    for target, text in (("notes.json", '{"important": true}\n'), ("s.json", None)):  # unrelated; condense's record
        path = tmp_path / target
        if text is not None:
            path.write_text(text)
        before = path.read_bytes()
        rc, err = run(capsys, *evaluate, "--out", path)
        _refused(rc, err, "pass --force")
        assert path.read_bytes() == before
    rc, err = run(capsys, *evaluate, "--out", tmp_path / "notes.json", "--force")
    assert rc == 0 and json.loads((tmp_path / "notes.json").read_text())["kind"] == "evaluate", err
    rc, err = run(capsys, *evaluate, "--out", tmp_path / "notes.json")
    assert rc == 0, "evaluate's own record for the same arguments: replaced"
    rc, err = run(capsys, "cost", "--out", tmp_path / "notes.json")
    _refused(rc, err, "command: 'evaluate' there, 'cost' now")


def test_attack_out_refuses_a_shard_it_did_not_write_before_loading_data(tiny, tmp_path, capsys, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "subset-shard-0-of-2.pt").write_bytes(b"someone's shard")
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("the work started"))
    rc, err = run(capsys, *ATTACK, "--shard", "0/2", "--out", tmp_path / "a")
    _refused(rc, err, "subset-shard-0-of-2.pt exists without its record")
    assert (tmp_path / "a" / "subset-shard-0-of-2.pt").read_bytes() == b"someone's shard"


HOLD = ("import sys; from dcprivacy import files; "
        "c = files.claim_output(sys.argv[1], sys.argv[2], inputs={}); print('claimed', flush=True); "
        "sys.stdin.read(); c.release()")


def test_one_writer_per_out_and_the_last_does_not_win(tiny, tmp_path, capsys):
    """A run holds --out from its checks to its write: a second run started meanwhile is refused at once;
    a run killed with SIGKILL holds nothing; once the first is done, a second with another seed is refused
    (its result would replace the first's)."""
    out = tmp_path / "x.pt"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(out.with_suffix(".json"))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "claimed"
        rc, err = run(capsys, *CONDENSE2, "--seed", "1", "--out", out)
        _refused(rc, err, "another run is writing it now", f"process {holder.pid}")
        assert not out.exists() and not out.with_suffix(".json").exists()
    finally:
        holder.kill()  # as kill -9: the operating system drops its lock
        holder.wait(timeout=60)
    rc, err = run(capsys, *CONDENSE2, "--seed", "1", "--out", out)
    assert rc == 0, err
    digest = files.sha256(out)
    rc, err = run(capsys, *CONDENSE2, "--seed", "2", "--out", out)
    _refused(rc, err, "seed: 1 there, 2 now")
    assert files.sha256(out) == digest and json.loads(out.with_suffix(".json").read_text())["sha256"] == digest
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no lock file left"


@pytest.mark.parametrize("case", ["record is a folder", "trailing separator", "trailing /.", "result is a folder"])
def test_out_paths_are_checked_before_any_work(case, tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("the work started"))
    out, expected = str(tmp_path / "x.pt"), "is a directory"
    if case == "record is a folder":
        (tmp_path / "x.json").mkdir()
    elif case == "result is a folder":
        (tmp_path / "x.pt").mkdir()
    else:
        out, expected = out + ("/" if case == "trailing separator" else "/."), "ends in a path separator"
    before = _snapshot(tmp_path)
    for force in ([], ["--force"]):
        rc, err = run(capsys, *CONDENSE2, "--out", out, *force)
        _refused(rc, err, expected)
        assert _snapshot(tmp_path) == before


# --- 4. checkpoints are checked field by field ---------------------------------------------------

CKPT_X, CKPT_Y = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(10).repeat(2)
CKPT_KW = dict(ipc=1, iterations=4, width=4, batch_real=2, augment=None, checkpoint_every=2)


def _momentum(shape):
    return {"state": {0: {"momentum_buffer": torch.zeros(shape)}}}


CHECKPOINT_CASES = {  # id: (change to the saved state, text of the error)
    "iteration -1": (lambda d: d.update(iteration=-1), "iteration -1 is not a whole number from 0 to 4"),
    "iteration a string": (lambda d: d.update(iteration="2"), "iteration '2' is not a whole number"),
    "iteration True": (lambda d: d.update(iteration=True), "iteration True"),
    "iteration 10**6": (lambda d: d.update(iteration=10 ** 6), "iteration 1000000 is not a whole number from 0 to 4"),
    "losses short": (lambda d: d.update(losses=d["losses"][:2]), "losses (2,) are not 4 finite values"),
    "losses 2-d": (lambda d: d.update(losses=d["losses"].view(4, 1)), "losses (4, 1) are not 4"),
    "losses NaN": (lambda d: d["losses"].__setitem__(1, math.nan), "are not 4 finite values"),
    "losses a list": (lambda d: d.update(losses=[0.0] * 4), "losses list"),
    "optimizer None": (lambda d: d.update(optimizer=None), "optimizer state is not that of this run"),
    "optimizer lr altered": (lambda d: d["optimizer"]["param_groups"][0].update(lr=100.0),
                             "optimizer state is not that of this run"),
    "optimizer momentum misshapen": (lambda d: d["optimizer"].update(_momentum((3,))), "momentum is not a finite"),
    "optimizer momentum NaN": (lambda d: d["optimizer"]["state"][0]["momentum_buffer"].fill_(math.nan),
                               "momentum is not a finite"),
    "optimizer a stranger's parameter": (lambda d: d["optimizer"]["state"].update({5: {"momentum_buffer": None}}),
                                         "names parameters this run does not have"),
    "generator None": (lambda d: d.update(generator=None), "generator state is not a byte tensor"),
    "generator short": (lambda d: d.update(generator=d["generator"][:16]), "generator state is not a byte tensor"),
    "generator floats": (lambda d: d.update(generator=d["generator"].float()), "generator state is not a byte"),
    "images misshapen": (lambda d: d.update(images=d["images"][..., :4]), "images of shape"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_a_checkpoint_with_a_bad_field_is_refused(case, tmp_path):
    path = tmp_path / "c.pt"
    good = C.distribution_matching(CKPT_X, CKPT_Y, checkpoint=path, **CKPT_KW)
    state = files.load(path)
    assert state["iteration"] == 4 and tuple(state["optimizer"]["state"][0]["momentum_buffer"].shape) == \
        (1, 10, 1, 1, 8, 8)
    assert torch.equal(C.distribution_matching(CKPT_X, CKPT_Y, checkpoint=path, **CKPT_KW).images, good.images)
    change, expected = CHECKPOINT_CASES[case]
    change(state)
    files.save(state, path)
    with pytest.raises(files.FileError) as e:
        C.distribution_matching(CKPT_X, CKPT_Y, checkpoint=path, **CKPT_KW)
    assert expected in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


# --- 5. shards describe themselves -------------------------------------------------------------

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
    assert rc == 2 and "SHA-256 differs" in err and len(err.splitlines()) == 1, err  # its record tells
    (tmp_path / "ok" / "subset-shard-1-of-2.json").unlink()  # without its record: the description tells
    rc, err = merge("ok")
    assert rc == 2 and "config.epochs" in err, err
    old = {k: v for k, v in d.items() if k in ("runs", "masks", "pool_idx", "pool_y")}
    files.save(old, tmp_path / "ok" / "subset-shard-1-of-2.pt")  # written before shards described themselves
    rc, err = merge("ok")
    assert rc == 2 and "older dcprivacy" in err, err


def _tamper(path: Path, change, record: Path | None = None) -> None:
    """Change a saved file and rewrite its record's digest to match (a careful forger: only the file's own
    fields can give it away)."""
    d = files.load(path, record=record)
    change(d)
    files.save(d, path)
    record = record or path.with_suffix(".json")
    r = json.loads(record.read_text())
    record.write_text(json.dumps({**r, "sha256": files.sha256(path)}))


def _flip(y):
    return (y + 1) % 10


MERGE_GAPS = {  # id: (shard to alter, change, text of the error)
    "a run id outside 0…K−1": (0, lambda d: d["runs"].update(runs=[0, 7]), "holds runs [0, 7], but shard 0/2"),
    "run ids as floats": (1, lambda d: d["runs"].update(runs=[2.0, 3.0]), "holds runs [2.0, 3.0]"),
    "test accuracies of the wrong shape": (1, lambda d: d["runs"].update(test_accuracy=torch.zeros(2, 3)),
                                           "test_accuracy must be a finite float tensor of shape [2]"),
    "scores of another pool": (0, lambda d: d["runs"].update(scores=d["runs"]["scores"][:, :-1]),
                               "scores must be a finite float tensor of shape [2, 60, ≥1]"),
    "logits of other classes": (1, lambda d: d["runs"].update(logits=d["runs"]["logits"][..., :5]),
                                "logits must be a finite float tensor of shape [2, 60, 10]"),
    "init mask as floats": (0, lambda d: d["runs"].update(init_mask=d["runs"]["init_mask"].float()),
                            "init_mask must be a bool tensor"),
    "masks of another pool": (1, lambda d: d.update(masks=d["masks"][:, :-1]), "masks must be a bool tensor of shape [4, 60]"),
    "pool_y altered in one shard": (1, lambda d: d.update(pool_y=_flip(d["pool_y"])),
                                    "come from different experiments: pool_y (different labels of the pool)"),
    "pool_y altered in every shard": ("both", lambda d: d.update(pool_y=_flip(d["pool_y"])),
                                      "pool_y differs from fashionmnist's labels"),
    "pool_idx out of range": ("both", lambda d: d["pool_idx"].__setitem__(0, 10 ** 6), "pool_idx points outside"),
    "shard beyond K": ("rename", None, "is not i/N with 0 ≤ i < N ≤ K"),
}


def test_attack_merge_checks_every_field_of_every_shard(tiny, tmp_path, capsys):
    for spec in ("0/2", "1/2"):
        rc, err = run(capsys, *ATTACK, "--shard", spec, "--out", tmp_path / "good")
        assert rc == 0, err
    rc, err = run(capsys, "attack-merge", tmp_path / "good", "--pipeline", "subset")
    assert rc == 0, err
    (tmp_path / "good" / "subset.json").unlink()
    for case, (which, change, expected) in MERGE_GAPS.items():
        folder = tmp_path / case.replace(" ", "-")
        shutil.copytree(tmp_path / "good", folder)
        if which == "rename":  # a shard 0 of 9 runs' split where K = 4 (name and contents agree)
            for f in folder.glob("*"):
                if f.is_file():
                    f.unlink()
            shutil.copy(tmp_path / "good" / "subset-shard-0-of-2.pt", folder / "subset-shard-0-of-9.pt")
            d = files.load(folder / "subset-shard-0-of-9.pt")
            d["shard"] = [0, 9]
            files.save(d, folder / "subset-shard-0-of-9.pt")
        for i in ((0, 1) if which == "both" else (which,) if isinstance(which, int) else ()):
            _tamper(folder / f"subset-shard-{i}-of-2.pt", change)
        rc, err = run(capsys, "attack-merge", folder, "--pipeline", "subset")
        _refused(rc, err, expected)
        assert not (folder / "subset.json").exists(), case


def test_attack_merge_of_one_unsharded_run_checks_its_record_and_labels(tiny, tmp_path, capsys):
    rc, err = run(capsys, *ATTACK, "--out", tmp_path / "a")
    assert rc == 0, err
    record = tmp_path / "a" / "subset.json"
    auc = json.loads(record.read_text())["attacks"]["loss"]["all"]["auc"]
    shard = tmp_path / "a" / "subset-shard-0-of-1.pt"
    d = files.load(shard, record=record)
    d["pool_y"] = _flip(d["pool_y"])
    files.save(d, shard)
    rc, err = run(capsys, "attack-merge", tmp_path / "a", "--pipeline", "subset")
    _refused(rc, err, "subset-shard-0-of-1.pt is not the file its record", "SHA-256 differs")
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": files.sha256(shard)}))  # forged
    rc, err = run(capsys, "attack-merge", tmp_path / "a", "--pipeline", "subset")
    _refused(rc, err, "pool_y differs from fashionmnist's labels of the pool examples")
    assert json.loads(record.read_text())["attacks"]["loss"]["all"]["auc"] == auc, "the attack's report stays"


# --- 7. resume ---------------------------------------------------------------------------------

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


# --- 8. Slurm ----------------------------------------------------------------------------------

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
    from dcprivacy.pipelines import ATTACKS
    assert set(a["attacks"]) == set(b["attacks"]) == set(ATTACKS), "the report has every attack the package has"
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
