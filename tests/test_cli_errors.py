"""Bad input, one case per row: each fails before any work with one line on stderr and exit status 2
(or a ValueError naming the argument, at the API), and nothing is written."""
import math

import numpy as np
import pytest
import torch

from dcprivacy import cli, condense as C, config, data
from tinycli import tiny_profile


@pytest.fixture
def tiny(monkeypatch, fashion):
    """The CLI in this process at test sizes, on a small slice of FashionMNIST."""
    small = data.Dataset(fashion.name, fashion.train_x[:600], fashion.train_y[:600], fashion.test_x[:100],
                         fashion.test_y[:100], fashion.mean, fashion.std, fashion.classes, fashion.source)
    real_get = config.get_profile
    monkeypatch.setattr(config, "get_profile", lambda name=None: tiny_profile(real_get(name)))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: small)
    return small


def run(capsys, *argv):
    """``python -m dcprivacy ARGV`` in this process: (exit status, stderr)."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def good_set(tmp_path_factory, fashion):
    idx = data.class_balanced_subset(fashion.train_y, 1, seed=0)
    s = C.random_real_subset(fashion.train_x[idx], fashion.train_y[idx], 1, seed=0)
    return s.save(tmp_path_factory.mktemp("set") / "set.pt")


CONDENSE = ["condense", "--method", "dm", "--ipc", "1"]

CASES = {  # id: (argv with {tmp} for a fresh folder, text the error line must contain)
    "condense --out res.json": (CONDENSE + ["--out", "{tmp}/res.json"], "must end in .pt"),
    "condense --out a folder": (CONDENSE + ["--out", "{tmp}/folder.pt"], "is a directory"),
    "condense --out unwritable": (CONDENSE + ["--out", "/proc/dcprivacy/x.pt"], "cannot create the folder"),
    "condense --iterations 0": (CONDENSE + ["--iterations", "0", "--out", "{tmp}/s.pt"], "--iterations: must be ≥ 1"),
    "condense --iterations abc": (CONDENSE + ["--iterations", "abc", "--out", "{tmp}/s.pt"], "expected a whole number"),
    "condense --width 0": (CONDENSE + ["--width", "0", "--out", "{tmp}/s.pt"], "--width: must be ≥ 1"),
    "condense --ipc 0": (["condense", "--method", "dm", "--ipc", "0", "--out", "{tmp}/s.pt"], "--ipc: must be ≥ 1"),
    "condense --per-class-pool -5990": (CONDENSE + ["--per-class-pool", "-5990", "--out", "{tmp}/s.pt"],
                                        "--per-class-pool: must be ≥ 0"),
    "condense pool < ipc": (["condense", "--method", "dm", "--ipc", "5", "--per-class-pool", "3", "--out",
                             "{tmp}/s.pt"], "must be ≥ --ipc 5"),
    "condense --seed -1": (CONDENSE + ["--seed", "-1", "--out", "{tmp}/s.pt"], "--seed: must be ≥ 0"),
    "condense --evaluate -1": (CONDENSE + ["--evaluate", "-1", "--out", "{tmp}/s.pt"], "--evaluate: must be ≥ 0"),
    "condense --checkpoint-every 0": (CONDENSE + ["--checkpoint", "{tmp}/c.pt", "--checkpoint-every", "0", "--out",
                                      "{tmp}/s.pt"], "must be ≥ 1"),
    "condense --checkpoint-every without --checkpoint": (CONDENSE + ["--checkpoint-every", "5", "--out", "{tmp}/s.pt"],
                                                         "needs --checkpoint"),
    "condense --checkpoint = --out": (CONDENSE + ["--checkpoint", "{tmp}/s.pt", "--out", "{tmp}/s.pt"],
                                      "must differ from --out"),
    "condense --checkpoint c.json": (CONDENSE + ["--checkpoint", "{tmp}/c.json", "--out", "{tmp}/s.pt"],
                                     "must end in .pt"),
    "condense --device banana": (CONDENSE + ["--device", "banana", "--out", "{tmp}/s.pt"], "--device"),
    "condense --method gan": (["condense", "--method", "gan", "--out", "{tmp}/s.pt"], "invalid choice"),
    "evaluate --models 0": (["evaluate", "{set}", "--models", "0"], "--models: must be ≥ 1"),
    "evaluate --epochs 0": (["evaluate", "{set}", "--epochs", "0"], "--epochs: must be ≥ 1"),
    "evaluate --width 0": (["evaluate", "{set}", "--width", "0"], "--width: must be ≥ 1"),
    "evaluate --out r.pt": (["evaluate", "{set}", "--out", "{tmp}/r.pt"], "must end in .json"),
    "evaluate a missing file": (["evaluate", "{tmp}/nothing.pt"], "no such file"),
    "evaluate a folder": (["evaluate", "{tmp}"], "is a directory"),
    "evaluate a truncated file": (["evaluate", "{truncated}"], "truncated"),
    "evaluate a NaN pixel": (["evaluate", "{nan}"], "NaN"),
    "evaluate a text file": (["evaluate", "{text}"], "not a dcprivacy file"),
    "attack --runs 5": (["attack", "--pipeline", "subset", "--runs", "5", "--out", "{tmp}/a"], "must be even"),
    "attack --runs 3": (["attack", "--pipeline", "subset", "--runs", "3", "--out", "{tmp}/a"], "must be ≥ 4"),
    "attack --runs 2": (["attack", "--pipeline", "subset", "--runs", "2", "--out", "{tmp}/a"], "must be ≥ 4"),
    "attack --pool 0": (["attack", "--pipeline", "subset", "--pool", "0", "--out", "{tmp}/a"], "--pool: must be ≥ 2"),
    "attack --pool 5": (["attack", "--pipeline", "subset", "--pool", "5", "--out", "{tmp}/a"],
                        "at least 2 examples per class"),
    "attack --shard 5/2": (["attack", "--pipeline", "subset", "--shard", "5/2", "--out", "{tmp}/a"], "0 ≤ i < N"),
    "attack --shard 1/2/3": (["attack", "--pipeline", "subset", "--shard", "1/2/3", "--out", "{tmp}/a"],
                             "expected i/N"),
    "attack --shard auto outside Slurm": (["attack", "--pipeline", "subset", "--shard", "auto", "--out", "{tmp}/a"],
                                          "SLURM_ARRAY_TASK_ID"),
    "attack --out a file": (["attack", "--pipeline", "subset", "--out", "{text}"], "is not a folder"),
    "attack-merge no folder": (["attack-merge", "{tmp}/none", "--pipeline", "dm"], "no such folder"),
    "attack-merge no shards": (["attack-merge", "{tmp}", "--pipeline", "dm"], "no shards of dm"),
    "bench --models 0": (["bench", "train", "--models", "0"], "--models: must be ≥ 1"),
    "bench --out b.pt": (["bench", "train", "--out", "{tmp}/b.pt"], "must end in .json"),
    # bounds: checked by the parser, before the dataset is loaded (issue 24 §4)
    "condense --seed 2**63": (CONDENSE + ["--seed", str(2 ** 63), "--out", "{tmp}/s.pt"],
                              "--seed: must be ≤ 9223372036854775807"),
    "condense --seed 10**23": (CONDENSE + ["--seed", str(10 ** 23), "--out", "{tmp}/s.pt"], "must be ≤ 9223372036854775807"),
    "condense --seed 1e23": (CONDENSE + ["--seed", "1e23", "--out", "{tmp}/s.pt"], "expected a whole number"),
    "condense --iterations 10**12": (CONDENSE + ["--iterations", str(10 ** 12), "--out", "{tmp}/s.pt"],
                                     "--iterations: must be ≤ 1000000"),
    "condense --iterations 1e12": (CONDENSE + ["--iterations", "1e12", "--out", "{tmp}/s.pt"], "expected a whole number"),
    "condense --width 1e6": (CONDENSE + ["--width", "1e6", "--out", "{tmp}/s.pt"], "expected a whole number"),
    "condense --width 10**6": (CONDENSE + ["--width", str(10 ** 6), "--out", "{tmp}/s.pt"], "--width: must be ≤ 4096"),
    "condense --ipc 10**5": (["condense", "--method", "dm", "--ipc", str(10 ** 5), "--out", "{tmp}/s.pt"],
                             "--ipc: must be ≤ 10000"),
    "condense --evaluate 10**6": (CONDENSE + ["--evaluate", str(10 ** 6), "--out", "{tmp}/s.pt"], "must be ≤ 4096"),
    "condense --checkpoint-every 10**9": (CONDENSE + ["--checkpoint", "{tmp}/c.pt", "--checkpoint-every", str(10 ** 9),
                                          "--out", "{tmp}/s.pt"], "must be ≤ 1000000"),
    "condense --device cuda:7": (CONDENSE + ["--device", "cuda:7", "--out", "{tmp}/s.pt"], "--device cuda:7"),
    "condense --out x.pt/": (CONDENSE + ["--out", "{tmp}/x.pt/"], "ends in a path separator"),
    "condense --out x.pt/.": (CONDENSE + ["--out", "{tmp}/x.pt/."], "ends in a path separator"),
    "condense --out with x.json a folder": (CONDENSE + ["--out", "{tmp}/rec.pt"], "rec.json is a directory"),
    "condense --out with x.json a folder, --force": (CONDENSE + ["--out", "{tmp}/rec.pt", "--force"],
                                                     "rec.json is a directory"),
    "evaluate --epochs 10**9": (["evaluate", "{set}", "--epochs", str(10 ** 9)], "--epochs: must be ≤ 100000"),
    "evaluate --out r.json/": (["evaluate", "{set}", "--out", "{tmp}/r.json/"], "ends in a path separator"),
    "attack --runs 10**6": (["attack", "--pipeline", "subset", "--runs", str(10 ** 6), "--out", "{tmp}/a"],
                            "--runs: must be ≤ 65536"),
    "attack --seed -1": (["attack", "--pipeline", "subset", "--seed", "-1", "--out", "{tmp}/a"], "--seed: must be ≥ 0"),
    "attack shard record a folder": (["attack", "--pipeline", "subset", "--out", "{tmp}/att"],
                                     "subset.json is a directory"),
    "attack-merge --seed 2**64": (["attack-merge", "{tmp}", "--pipeline", "dm", "--seed", str(2 ** 64)], "must be ≤"),
    "bench --width 10**6": (["bench", "train", "--width", str(10 ** 6)], "--width: must be ≤ 4096"),
    "bench --iterations 10**12": (["bench", "condense", "--iterations", str(10 ** 12)], "must be ≤ 1000000"),
    "bench --device cuda:7": (["bench", "train", "--device", "cuda:7"], "--device cuda:7"),
    "cost --out c.json/": (["cost", "--out", "{tmp}/c.json/"], "ends in a path separator"),
    "cost --fit --timings missing": (["cost", "--fit", "--timings", "{tmp}/none.json"], "none.json: no such file"),
    "cost --timings a text file": (["cost", "--timings", "{text}"], "is not valid JSON"),
    "chapter --timeout -1": (["chapter", "01-tour", "--timeout", "-1"], "--timeout: must be > 0"),
    "chapter --timeout nan": (["chapter", "01-tour", "--timeout", "nan"], "--timeout: must be > 0"),
    "chapter unknown": (["chapter", "99-none", "--out", "{tmp}/t.json"], "allowed values are"),
    "reproduce --budget-minutes nan": (["reproduce", "--budget-minutes", "nan", "--device", "cpu"],
                                       "--budget-minutes: must be > 0"),
    "reproduce --budget-minutes inf": (["reproduce", "--budget-minutes", "inf", "--device", "cpu"], "must be > 0"),
    "reproduce --device cuda:7": (["reproduce", "--budget-minutes", "1", "--device", "cuda:7"], "--device cuda:7"),
}
if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
    CASES["condense --device mps (absent)"] = (CONDENSE + ["--device", "mps", "--out", "{tmp}/s.pt"],
                                               "no Apple MPS device is available here")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_with_one_line(case, tiny, tmp_path, capsys, monkeypatch, good_set):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    monkeypatch.setenv("DCPRIVACY_RESULTS", str(tmp_path / "results"))  # (cost: no calibration written here)
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "rec.json").mkdir()
    (tmp_path / "att" / "subset.json").mkdir(parents=True)
    (tmp_path / "text.txt").write_text("not a tensor file\n")
    (tmp_path / "truncated.pt").write_bytes(good_set.read_bytes()[:300])
    s = C.SyntheticSet.load(good_set)
    s.images[0, 0, 0, 0] = math.nan
    torch.save(s.to_dict(), tmp_path / "nan.pt")
    argv, expected = CASES[case]
    subs = {"tmp": tmp_path, "set": good_set, "truncated": tmp_path / "truncated.pt", "nan": tmp_path / "nan.pt",
            "text": tmp_path / "text.txt"}
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, err = run(capsys, *(a.format(**subs) for a in argv))
    assert rc == 2, (rc, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing is written"


X = torch.randn(20, 1, 8, 8)
Y = torch.arange(10).repeat(2)


def _nan(x, v=math.nan):
    x = x.clone()
    x[3, 0, 2, 2] = v
    return x


API = {  # id: (call, text of the ValueError)
    "dm NaN image": (lambda: C.distribution_matching(_nan(X), Y), "real_x: 1 value(s) are NaN or infinite"),
    "dm inf image": (lambda: C.distribution_matching(_nan(X, math.inf), Y), "NaN or infinite"),
    "dm lr_img=nan": (lambda: C.distribution_matching(X, Y, lr_img=math.nan), "lr_img=nan: must be finite"),
    "dm lr_img=0": (lambda: C.distribution_matching(X, Y, lr_img=0.0), "lr_img=0.0: must be > 0"),
    "dm momentum=-1": (lambda: C.distribution_matching(X, Y, momentum=-1.0), "momentum=-1.0: must be ≥ 0"),
    "dm width=0": (lambda: C.distribution_matching(X, Y, width=0), "width=0: must be ≥ 1"),
    "dm 2-d labels": (lambda: C.distribution_matching(X, Y.view(2, 10)), "real_y has shape (2, 10)"),
    "dm float labels": (lambda: C.distribution_matching(X, Y.float()), "expected integer class indices"),
    "dm negative label": (lambda: C.distribution_matching(X, Y - 1), "must be ≥ 0"),
    "dm 3-d images": (lambda: C.distribution_matching(X[:, 0], Y), "expected images [N, C, H, W]"),
    "dm integer images": (lambda: C.distribution_matching(X.long(), Y), "expected floating-point images"),
    "dm rows differ": (lambda: C.distribution_matching(X, Y[:5]), "give one label per image"),
    "dm iterations=2.5": (lambda: C.distribution_matching(X, Y, iterations=2.5), "expected a whole number"),
    "dm checkpoint_every=0": (lambda: C.distribution_matching(X, Y, checkpoint_every=0), "checkpoint_every=0"),
    "dc NaN image": (lambda: C.gradient_matching(_nan(X), Y, ipc=1), "NaN or infinite"),
    "dc lr_net=inf": (lambda: C.gradient_matching(X, Y, ipc=1, lr_net=math.inf), "lr_net=inf: must be finite"),
    "train NaN image": (lambda: __import__("dcprivacy.train").train.train_models(
        lambda s: torch.nn.Linear(64, 10), _nan(X), Y, seeds=[0]), "x: 1 value(s) are NaN"),
    "train 2-d labels": (lambda: __import__("dcprivacy.train").train.train_models(
        lambda s: torch.nn.Linear(64, 10), X, Y.view(2, 10), seeds=[0]), "y has shape (2, 10)"),
    "subset 2-d labels": (lambda: data.class_balanced_subset(Y.view(2, 10), 1), "labels has shape (2, 10)"),
    "lira zero shadows": (lambda: __import__("dcprivacy.mia").mia.lira(
        np.zeros(3), np.zeros((0, 3)), np.zeros((0, 3), bool)), "no shadow models given"),
    "metrics NaN score": (lambda: __import__("dcprivacy.metrics").metrics.auc(
        [0.1, math.nan], [True, False]), "NaN or infinity"),
    "dp NaN image": (lambda: __import__("dcprivacy.dp").dp.dp_distribution_matching(
        _nan(X), Y, ipc=1, num_classes=10, class_size=2, noise_multiplier=1.0), "NaN or infinite"),
    "synthetic set NaN": (lambda: C.SyntheticSet.from_dict(
        {"images": _nan(X), "labels": Y, "init_indices": torch.empty(0), "method": "dm"}), "hold NaN"),
    "synthetic set method=123": (lambda: C.SyntheticSet.from_dict(
        {"images": X, "labels": Y, "init_indices": torch.empty(0, dtype=torch.long), "method": 123}),
        "method 123 is not one of dm, dc, dsa"),
    "synthetic set method='gan'": (lambda: C.SyntheticSet.from_dict(
        {"images": X, "labels": Y, "init_indices": torch.empty(0, dtype=torch.long), "method": "gan"}),
        "method 'gan' is not one of"),
    "synthetic set config a list": (lambda: C.SyntheticSet.from_dict(
        {"images": X, "labels": Y, "init_indices": torch.empty(0, dtype=torch.long), "method": "dm", "config": []}),
        "config must be a dict"),
    "synthetic set init_indices 2-d": (lambda: C.SyntheticSet.from_dict(
        {"images": X, "labels": Y, "init_indices": torch.zeros(20, 2, dtype=torch.long), "method": "dm"}),
        "init_indices must be empty or 20"),
}


@pytest.mark.parametrize("case", list(API))
def test_public_api_names_the_bad_argument(case):
    call, expected = API[case]
    with pytest.raises(ValueError) as e:
        call()
    assert expected in str(e.value)


def test_data_folder_that_is_a_file_fails_before_any_work(tiny, tmp_path, capsys, monkeypatch):
    (tmp_path / "data").write_text("not a folder\n")
    monkeypatch.setenv("DCPRIVACY_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("the work started"))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, err = run(capsys, *CONDENSE, "--out", tmp_path / "s.pt")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "DCPRIVACY_DATA=" in err and "not a folder" in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(more lines)"),
                                   OSError(28, "No space left on device")], ids=["RuntimeError", "OSError"])
def test_a_failure_during_the_work_is_one_line(error, tiny, tmp_path, capsys, monkeypatch):
    """What no check can foresee (memory, disk, a device error) ends with one line and status 1 (the run
    failed; the input was fine); DCPRIVACY_TRACEBACK=1 keeps the traceback."""
    def fails(*a, **k):
        raise error
    monkeypatch.setattr(C, "distribution_matching", fails)
    rc, err = run(capsys, *CONDENSE, "--out", tmp_path / "s.pt")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "condense: failed" in err and type(error).__name__ in err and "DCPRIVACY_TRACEBACK=1" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no result, no record, no lock left"
    monkeypatch.setenv("DCPRIVACY_TRACEBACK", "1")
    with pytest.raises(type(error)):
        cli.main([*CONDENSE, "--out", str(tmp_path / "s.pt")])


def test_the_largest_seed_runs(tiny, tmp_path, capsys, good_set):
    """A seed just below 2**63 is accepted and runs (the models' own seeds, seed + k, stay in the generators'
    range); one more is refused by the parser."""
    top = str(2 ** 63 - 1)
    rc, err = run(capsys, "evaluate", good_set, "--models", "2", "--epochs", "1", "--width", "4", "--seed", top)
    assert rc == 0, err
    rc, err = run(capsys, "attack", "--pipeline", "subset", "--seed", top, "--out", tmp_path / "a")
    assert rc == 0, err
    rc, err = run(capsys, "attack", "--pipeline", "subset", "--seed", str(2 ** 63), "--out", tmp_path / "b")
    assert rc == 2 and "--seed: must be ≤ 9223372036854775807" in err, err
