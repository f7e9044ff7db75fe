"""CIFAR-10 end to end, without the real data: every chapter's code on a small archive in CIFAR-10's own
format (tests/cifar_archive.py), the cost model and profiles on both datasets, the error without data.

What the chapter test covers: each chapter's code cells, in the book's order, in one interpreter, with
``DCPRIVACY_DATASET=cifar10`` and the archive under ``DCPRIVACY_DATA``, at tiny sizes (``TINY`` replaces the
quick profile inside that interpreter only): every line of every cell runs on 3-channel 32×32 images
through the package's real functions (DM, DC, DSA, the attacks, DP-DM, DP-SGD, the figures). What it does
not check: the chapters' claims. They are FashionMNIST's, at the quick profile's sizes; on 1300 synthetic
images and a few iterations many cannot hold, so each ``assert`` of a chapter is evaluated (an error in
its expression still fails the test) but a false one is only recorded and printed.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dcprivacy import config, cost
from dcprivacy.config import DP, MIA, Condense, Nonlinear, Theory, Tour, Visual
from dcprivacy.data import INFO
from dcprivacy.runner import BOOK, PREAMBLE, chapter_sources, code_cells

from cifar_archive import write_archive

STEMS = [p.stem for p in chapter_sources()]
PER_CLASS, TEST_PER_CLASS = 130, 30  # the appendix compares two batches of 64 real images per class

# Every size as small as the chapters' code allows (the claims aside).
TINY = replace(
    config.PROFILES["quick"], description="tiny (tests/test_cifar.py only)",
    tour=Tour(per_class=(1, 5), models=2, epochs=2, width=4),
    theory=Theory(n_grid=(16, 32, 64, 128), m_grid=(1, 2, 4), removals=2, ipc=2, k=8, iterations=20, validate=2,
                  langevin_steps=20, chains=4),
    condense=Condense(per_class_pool=20, ipc=(1, 2), width=4, batch_real=8, dm_iterations=3, dc_iterations=2,
                      dc_loops=(2, 2), eval_models=1, eval_epochs_dm=2, eval_epochs_dc=2, eval_epochs_whole=1,
                      snapshots=(0, 3)),
    mia=MIA(pool=100, runs=4, epochs=2, epochs_small=2, batch_size=16, width=4, ipc=2, dm_iterations=3,
            batch_real=8, dc_iterations=2, dc_loops=(2, 2), bootstrap=10, test_size=100, subset_sizes=(1, 2, 3)),
    nonlinear=Nonlinear(n_grid=(8, 16), m_grid=(1, 2), iterations=(1, 2), removals=2, repeats=2, lr_sweep=(1.0, 3.0),
                        mlp=(4, 2), convnet=(4, 3), widths=(4, 8), depths=(1, 2), sweep_m=2, linear_k=2048, pool=10,
                        model_ipc=2, targets=1, model=("mlp", 8, 2), train_seeds=2, train_epochs=2, bootstrap=10),
    visual=Visual(classes=2, per_class_pool=10, ipc=2, width=4, batch_real=8, dm_iterations=3, dm_snapshots=(0, 3),
                  dc_iterations=2, dc_loops=(2, 2), dc_snapshots=(0, 2), candidates=3, others=3, exact_check=2,
                  shown=2),
    dp=DP(epsilons=(2.0, 8.0),  # the attacked ε (2) is one of the sweep's
          per_class_pool=20, ipc=2, width=4, iterations=3, sample_rate=0.2, dpsgd_epochs=1,
          dpsgd_sample_rate=0.2, eval_epochs=2, eval_models=1, attack_runs=4, attack_pool=100, attack_test=100),
)


class _SoftAsserts(ast.NodeTransformer):
    """``assert test, msg`` → ``if not test: _claim(stem, cell, line, msg)``: the test runs, a false one is noted."""

    def __init__(self, stem: str, cell: int):
        self.where = (stem, cell)

    def visit_Assert(self, node):
        note = ast.Expr(ast.Call(ast.Name("_claim", ast.Load()),
                                 [ast.Constant(self.where[0]), ast.Constant(self.where[1]), ast.Constant(node.lineno),
                                  node.msg or ast.Constant(None)], []))
        return ast.copy_location(ast.If(ast.UnaryOp(ast.Not(), node.test), [note], []), node)


def _soft(code: str, stem: str, cell: int) -> str:
    tree = _SoftAsserts(stem, cell).visit(ast.parse(code))
    return ast.unparse(ast.fix_missing_locations(tree))


def book_script(stems) -> str:
    """One script running ``stems`` in order, each in a namespace of its own, with the tiny profile; it
    prints one JSON line: per chapter ``ok`` or the error, and the claims that did not hold."""
    chapters = {stem: [_soft(c, stem, i) for i, c in enumerate(code_cells(stem))] for stem in stems}
    return PREAMBLE + f"""
import json, time, traceback
_t0 = time.time()
import torch
torch.set_num_threads(1)  # tiny tensors: one thread is as fast, and far faster on a busy machine
import matplotlib.pyplot as plt
import dcprivacy.config as _C
from dcprivacy.config import *
_C.PROFILES["quick"] = {TINY!r}
_C.DATASET_SIZES.clear()
_claims, _status = [], {{}}
def _claim(stem, cell, line, msg):
    _claims.append([stem, cell, line, None if msg is None else str(msg)[:200]])
for _stem, _cells in {chapters!r}.items():
    _ns = {{"__name__": "__main__", "_claim": _claim}}
    try:
        for _i, _code in enumerate(_cells):
            print(f"CIFAR-CELL {{_stem}} {{_i}} {{time.time() - _t0:.1f}}", file=sys.stderr, flush=True)
            exec(compile(_code, f"{{_stem}} cell {{_i}}", "exec"), _ns)
        _status[_stem] = "ok"
    except BaseException:
        _status[_stem] = traceback.format_exc()[-3000:]
    plt.close("all")
print("CIFAR-RESULT " + json.dumps({{"status": _status, "claims": _claims}}))
"""


def _env(tmp: Path, data: Path) -> dict:
    return {**os.environ, "DCPRIVACY_DATASET": "cifar10", "DCPRIVACY_DATA": str(data), "DCPRIVACY_PROFILE": "quick",
            "DCPRIVACY_DOWNLOAD": "0", "DCPRIVACY_PROGRESS": "0", "XDG_CACHE_HOME": str(tmp / "cache"),
            "MPLBACKEND": "Agg", "DCPRIVACY_RESULTS": str(tmp / "results"), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(BOOK.parent), os.environ.get("PYTHONPATH", "")])}


def _stand_in_result(results: Path) -> Path:
    """A CIFAR-10 result where chapter 2 looks for a committed one (random images, a made-up accuracy of 12.3%):
    it takes the branch that draws the figure and fills a row of the table."""
    import torch

    from dcprivacy.condense import SyntheticSet
    from dcprivacy.provenance import record
    from dcprivacy.reproduce import result_name
    path = results / "condensation" / result_name("dm", "cifar10", 10)
    path.parent.mkdir(parents=True)
    SyntheticSet(torch.randn(100, 3, 32, 32), torch.arange(10).repeat_interleave(10), torch.arange(100), "dm",
                 {"iterations": 7}).save(path)
    path.with_suffix(".json").write_text(json.dumps(record(
        {"kind": "condense", "dataset": "cifar10", "method": "dm", "ipc": 10, "config": {"iterations": 7},
         "evaluation": {"accuracy_mean": 0.123, "accuracy_std": 0.004},
         "normalisation": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})))
    return path


@pytest.fixture(scope="module")
def book_on_cifar(tmp_path_factory):
    """Every chapter, in order, on the synthetic archive (one interpreter: chapter 4's experiment is cached for
    chapters 5 and 8 as in a whole-book run)."""
    tmp = tmp_path_factory.mktemp("cifar-book")
    write_archive(tmp / "data", per_class=PER_CLASS, test_per_class=TEST_PER_CLASS)
    _stand_in_result(tmp / "results")  # chapter 2's CIFAR-10 figure and a measured row; no bench for the appendix
    script = tmp / "book.py"
    script.write_text(book_script(STEMS))
    proc = subprocess.run([sys.executable, str(script)], cwd=BOOK, env=_env(tmp, tmp / "data"), capture_output=True,
                          text=True, timeout=900)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CIFAR-RESULT ")), None)
    assert line is not None, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    result = json.loads(line.removeprefix("CIFAR-RESULT "))
    result["stdout"] = proc.stdout
    if result["claims"]:  # shown with -rA or on failure: the chapters' claims that the tiny archive cannot bear
        print("claims not holding at tiny sizes on synthetic CIFAR-10:", *result["claims"], sep="\n  ")
    return result


@pytest.mark.slow
@pytest.mark.parametrize("stem", STEMS)
def test_every_chapter_runs_on_cifar10(book_on_cifar, stem):
    assert book_on_cifar["status"][stem] == "ok", book_on_cifar["status"][stem]


@pytest.mark.slow
def test_the_chapters_saw_cifar10(book_on_cifar):
    out = book_on_cifar["stdout"]
    assert "$DCPRIVACY_DATA:" in out  # chapter 1 prints where the data came from: the archive
    assert "(1300, 3, 32, 32)" in out and "(300, 3, 32, 32)" in out  # chapter 1's shapes: 3 channels, 32×32
    assert "7 iterations; test accuracy 12.3 ± 0.4%" in out  # chapter 2 drew the committed CIFAR-10 result
    assert "17 of 18 rows have no measurement" in out  # and found it for its table


def test_soft_asserts_keep_the_expression_and_note_a_false_claim():
    ns = {"_claim": lambda *a: notes.append(a)}
    notes = []
    exec(_soft("x = 1\nassert x == 2, 'one is not two'\nassert x == 1", "s", 3), ns)
    assert notes == [("s", 3, 2, "one is not two")]
    with pytest.raises(ZeroDivisionError):  # an error inside the claim is not hidden
        exec(_soft("assert 1 / 0", "s", 0), ns)


def test_a_chapter_without_the_data_stops_at_once_with_one_line(tmp_path):
    """DCPRIVACY_DATASET=cifar10 with no data anywhere (downloads off): the chapter stops at its data cell with
    a one-line error that says how to get CIFAR-10."""
    (tmp_path / "empty").mkdir()
    script = tmp_path / "ch1.py"
    cells = code_cells("01-tour")
    data_cell = next(i for i, c in enumerate(cells) if "load_dataset(" in c and "import" not in c.split("\n")[0])
    script.write_text(PREAMBLE + "\n".join(f"print('cell {i}', flush=True)\n{c}" for i, c in enumerate(cells)))
    proc = subprocess.run([sys.executable, str(script)], cwd=BOOK, env=_env(tmp_path, tmp_path / "empty"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"cell {data_cell}" in proc.stdout and f"cell {data_cell + 1}" not in proc.stdout  # stopped there
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dcprivacy.data.DataNotFoundError: cifar10 was not found"), last
    assert "python -m dcprivacy data --download" in last and "$DCPRIVACY_DATA" in last and "Colab" in last


# Every chapter within its budget on each dataset, at the pessimistic end of the T4's constants:
# tests/test_standard_budget.py (cost.over_budget, parametrised over dcprivacy.data.DATASETS).


def test_the_cost_model_follows_the_dataset():
    for stem in cost.CHAPTERS:
        f = cost.chapter_work(stem, "quick", "cpu", dataset="fashionmnist")
        c = cost.chapter_work(stem, "quick", "cpu", dataset="cifar10")
        assert c.flops >= f.flops, stem  # 3 channels, and d = 3072 where pixels are the work
    with cost.pricing("cifar10"):
        assert cost.data_info().dim == 3072
        from dcprivacy.nets import ConvNet, conv_flops
        assert cost.forward_flops("convnet", 32, 3) == conv_flops(ConvNet(channels=3, im_size=32, width=32),
                                                                   im_size=32, channels=3) + 2 * 512 * 10
    r = cost.predict("standard", "t4", dataset="cifar10")
    assert r["dataset"] == "cifar10"
    assert r["chapters"]["02-condensation"]["minutes"] == pytest.approx(
        cost.chapter_minutes("02-condensation", "standard", "t4", dataset="cifar10"))


def test_the_active_dataset_sets_the_profile_and_the_cost(monkeypatch):
    monkeypatch.setenv("DCPRIVACY_DATASET", "cifar10")
    p = config.get_profile("standard")
    assert p.dataset == "cifar10" and max(p.theory.n_grid) == 5000
    assert cost.predict("standard", "t4")["dataset"] == "cifar10"
    assert cost.chapter_minutes("07-visual-privacy", "standard", "t4") == pytest.approx(
        cost.chapter_minutes("07-visual-privacy", "standard", "t4", dataset="cifar10"))
    monkeypatch.setenv("DCPRIVACY_DATASET", "mnist")
    with pytest.raises(ValueError, match=r"^DCPRIVACY_DATASET='mnist': allowed values are fashionmnist, cifar10$"):
        config.get_profile()


@pytest.mark.parametrize("profile", config.PROFILE_NAMES)
@pytest.mark.parametrize("dataset", sorted(INFO))
def test_every_profile_fits_every_dataset(profile, dataset):
    """Sizes a dataset cannot give (more images per class than it has) or loops shorter than their snapshots."""
    p, n = config.get_profile(profile, dataset=dataset), INFO[dataset].train_per_class
    assert p.dataset == dataset
    assert max(p.tour.per_class) <= n and max(p.theory.n_grid) <= n and max(p.nonlinear.n_grid) <= n
    assert max(p.condense.per_class_pool, p.visual.per_class_pool, p.dp.per_class_pool) <= n
    assert p.mia.pool <= INFO[dataset].train_size and p.dp.attack_pool <= INFO[dataset].train_size
    assert max(p.condense.snapshots) <= p.condense.dm_iterations
    assert max(p.visual.dm_snapshots) <= p.visual.dm_iterations
    assert max(p.visual.dc_snapshots) <= p.visual.dc_iterations
    assert max(p.nonlinear.iterations) >= 1 and p.nonlinear.iterations[0] == 1
