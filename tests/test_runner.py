"""Running a chapter outside Jupyter: the cells jupytext sees, run as one script, timed."""
import pytest

from dcprivacy.runner import BOOK, chapter_script, chapter_sources, code_cells, run_chapter

STEMS = [p.stem for p in chapter_sources()]


@pytest.mark.parametrize("stem", STEMS)
def test_code_cells_are_the_cells_jupytext_reads(stem):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(BOOK / f"{stem}.md")
    theirs = [c.source.strip("\n") for c in nb.cells if c.cell_type == "code"]
    assert code_cells(stem) == theirs
    compile(chapter_script(stem), stem, "exec")  # the script is valid Python


def test_unknown_chapter_names_the_known_ones():
    with pytest.raises(ValueError, match="01-tour"):
        code_cells("99-nothing")


@pytest.mark.slow
def test_a_chapter_runs_outside_jupyter_timed_beside_its_prediction(tmp_path):
    r = run_chapter("03-linear-bound", profile="quick", device_name="cpu", workdir=tmp_path, timeout=600)
    assert r["returncode"] == 0, r["output_tail"]
    assert r["seconds"] > 0 and set(r["predicted_minutes"]) == {"cpu", "t4", "h200"}
    assert r["measured_over_predicted"] == pytest.approx(r["seconds"] / 60 / r["predicted_minutes"]["cpu"], rel=1e-3)
