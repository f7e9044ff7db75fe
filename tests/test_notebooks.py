"""Every chapter is a MyST source (book/NN-name.md) paired with an executed notebook (.ipynb)."""
from pathlib import Path

import jupytext
import nbformat
import pytest

from dcprivacy.runner import chapter_sources

BOOK = Path(__file__).resolve().parent.parent / "book"
SOURCES = chapter_sources(BOOK)  # the numbered chapters and the appendices
NOTEBOOKS = sorted(BOOK.glob("[0-9][0-9]-*.ipynb")) + sorted(BOOK.glob("appendix-*.ipynb"))


def test_there_are_chapters():
    assert SOURCES, "no chapters found under book/"


@pytest.mark.parametrize("path", SOURCES + NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_has_its_twin(path):
    twin = path.with_suffix(".ipynb" if path.suffix == ".md" else ".md")
    assert twin.exists(), f"{path.name} has no paired {twin.name}: run `jupytext --sync {path}`"


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: p.name)
def test_pairs_have_identical_cells(md):
    ipynb = md.with_suffix(".ipynb")
    source = jupytext.read(md)
    executed = nbformat.read(ipynb, as_version=4)
    a, b = _cells(source), _cells(executed)
    assert len(a) == len(b), f"{md.name}: {len(a)} cells, {ipynb.name}: {len(b)} — run `jupytext --sync {md}`"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"cell {i} differs between {md.name} and {ipynb.name}: run `jupytext --sync {md}`"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_executed(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), f"{ipynb.name} has unexecuted cells"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{ipynb.name} was committed with errors"
