"""Run one chapter's code outside Jupyter, under a given profile, timed, beside the cost model's prediction.

``python -m dcprivacy chapter 02-condensation --profile standard [--device-name t4] [--out FILE]``
turns ``book/02-condensation.md`` (MyST) into a plain Python script — its code cells in order,
nothing else — and runs it in a fresh interpreter with ``DCPRIVACY_PROFILE`` set, then writes
the measured seconds next to :func:`dcprivacy.cost.chapter_minutes` for that device, as JSON with
provenance. It needs neither Jupyter nor jupytext (the GPU machine has neither): the MyST code cells
are read directly (``tests/test_runner.py`` checks that they are the cells jupytext sees), and a
small stand-in replaces ``IPython.display`` when IPython is absent.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"
# The book's chapters, in its order: the numbered ones (book/NN-name.md), then the appendices
# (book/appendix-name.md). tools/notebooks.py keeps the same patterns (it runs without the package).
CHAPTER_PATTERNS = ("[0-9][0-9]-*.md", "appendix-*.md")

_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)

# Run before a chapter's cells: figures go to no screen, and IPython.display works without IPython.
PREAMBLE = '''\
import os, sys, types
os.environ.setdefault("MPLBACKEND", "Agg")
try:
    import IPython.display  # noqa: F401
except ImportError:  # outside Jupyter, without IPython: show what a notebook would display as text
    _display = types.ModuleType("IPython.display")
    class Markdown(str):
        def __new__(cls, data=""):
            return str.__new__(cls, data)
    def display(*objs, **kw):
        for o in objs:
            print(o)
    _display.Markdown, _display.display = Markdown, display
    _ipython = types.ModuleType("IPython")
    _ipython.display = _display
    sys.modules["IPython"], sys.modules["IPython.display"] = _ipython, _display
'''


def chapter_sources(book: Path = BOOK) -> list[Path]:
    """Every chapter's MyST source, in the book's order: the numbered chapters, then the appendices."""
    return [p for pattern in CHAPTER_PATTERNS for p in sorted(book.glob(pattern))]


def chapter_path(stem: str) -> Path:
    path = BOOK / f"{stem}.md"
    if not path.exists() or path not in chapter_sources():
        known = ", ".join(p.stem for p in chapter_sources())
        raise ValueError(f"chapter {stem!r}: no {path.name} in book/; allowed values are {known}")
    return path


def code_cells(stem: str) -> list[str]:
    """The code of every ``{code-cell}`` of chapter ``stem``, in order, without the MyST cell options
    (``:tags: ...`` lines or a ``---`` front block)."""
    text = chapter_path(stem).read_text()
    cells = []
    for body in _CELL.findall(text):
        lines = body.splitlines()
        if lines and lines[0].strip() == "---":  # YAML options block
            end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
            lines = lines[end + 1:]
        while lines and re.match(r"^:\w[\w-]*:", lines[0]):  # short-form options
            lines = lines[1:]
        cells.append("\n".join(lines).strip("\n"))
    return cells


def chapter_script(stem: str) -> str:
    """Chapter ``stem`` as one Python script: the preamble, then each cell (a notebook's displayed values,
    such as a cell's last bare expression, are not printed)."""
    parts = [PREAMBLE]
    for i, code in enumerate(code_cells(stem)):
        parts.append(f"# --- cell {i} ---\n{code}\n")
    return "\n".join(parts)


def run_chapter(stem: str, *, profile: str, device_name: str | None = None, timeout: float | None = None,
                env: dict | None = None, workdir: str | Path | None = None) -> dict:
    """Run chapter ``stem`` in a fresh interpreter under ``profile``: its measured seconds, exit status, the
    tail of its output, and the cost model's predicted minutes on every device (and, with ``device_name``
    = ``cpu``, ``t4`` or ``h200``, the ratio measured / predicted for that one)."""
    from . import cost
    from .config import get_profile
    get_profile(profile)  # fail now on a bad name
    script = chapter_script(stem)
    workdir = Path(workdir) if workdir else Path(os.environ.get("TMPDIR", "/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"dcprivacy-chapter-{stem}.py"
    path.write_text(script)
    run_env = {**os.environ, "DCPRIVACY_PROFILE": profile, "DCPRIVACY_PROGRESS": os.environ.get("DCPRIVACY_PROGRESS", "0"),
               "MPLBACKEND": "Agg", **(env or {})}
    package_root = str(Path(__file__).resolve().parent.parent)  # this checkout's package, wherever it runs
    run_env["PYTHONPATH"] = package_root + (os.pathsep + run_env["PYTHONPATH"] if run_env.get("PYTHONPATH") else "")
    started = time.time()
    try:
        proc = subprocess.run([sys.executable, str(path)], cwd=BOOK, env=run_env, capture_output=True, text=True,
                              timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = 124, ((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")) \
            + f"\ntimed out after {timeout} s"
    seconds = time.time() - started
    predicted = {d: cost.chapter_minutes(stem, profile, d) for d in cost.DEVICES}
    result = {"kind": "chapter-timing", "chapter": stem, "profile": profile, "returncode": rc,
              "seconds": round(seconds, 2), "predicted_minutes": predicted,
              "output_tail": out[-4000:]}
    if device_name:
        result["device_name"] = device_name
        result["predicted_minutes_on_device"] = predicted[device_name]
        result["measured_over_predicted"] = seconds / 60 / predicted[device_name]
    return result


__all__ = ["code_cells", "chapter_script", "run_chapter", "chapter_path", "chapter_sources", "CHAPTER_PATTERNS"]
