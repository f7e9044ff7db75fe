"""The notebooks made for Jupyter and Colab (notebooks/), and the one place that says where the project lives."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as N  # noqa: E402

CHAPTERS = N.chapters()
FASTEST = "03-linear-bound"  # the chapter with the shortest run in the quick profile (seconds)


def test_every_copy_of_the_repository_and_release_agrees_with_pyproject():
    bad = [str(f.relative_to(ROOT)) for f in N.stale()]
    assert not bad, f"out of date with [tool.dcprivacy] or the chapters: {bad}; run `python tools/notebooks.py`"


def test_the_chapters_are_the_packages_chapters():
    """This script (which runs without the package) and the package list the same chapters, appendices last."""
    from dcprivacy import runner
    assert N.CHAPTER_PATTERNS == runner.CHAPTER_PATTERNS and N.chapters() == runner.chapter_sources()
    assert CHAPTERS[-1].stem.startswith("appendix-"), "the appendix is a chapter too, after the numbered ones"


def test_the_install_pins_a_release_and_installs_nothing_colab_has():
    p = N.project()
    assert p.release not in {"main", "master", p.branch}
    cell = N.install_cell(p)
    assert f"@{p.release}\"" in cell and "--no-deps" in cell
    config = (ROOT / "_config.yml").read_text()
    assert f"url: {p.repository}\n" in config and f'dcprivacy_colab_ref: "{p.release}"' in config
    for md in CHAPTERS:
        first = next(c for c in jupytext.read(md).cells if c.cell_type == "code")
        assert first.source == cell, f"{md.name}: install cell differs; run `python tools/notebooks.py`"
    readme = (ROOT / "README.md").read_text()
    assert all(p.colab(md.stem) in readme for md in CHAPTERS)


def test_a_bad_release_or_url_is_refused(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    for old, new in [('release = "', 'release = "main" #'), ('repository = "', 'repository = "gitlab.com/x" #')]:
        (tmp_path / "pyproject.toml").write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=r"\[tool.dcprivacy\]"):
            N.project(tmp_path)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_generated_notebook_has_no_raw_myst_and_the_chapters_code(md):
    nb = nbformat.read(ROOT / N.NOTEBOOKS / f"{md.stem}.ipynb", as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert not N.raw_myst(cell.source), f"raw MyST in {md.stem}: {N.raw_myst(cell.source)}"
    ours = [c.source for c in nb.cells if c.cell_type == "code"]
    chapter = [c.source for c in jupytext.read(md).cells if c.cell_type == "code"]
    assert ours == chapter, f"{md.stem}: the notebook's code cells are not the chapter's, in order"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["accelerator"] == "GPU"


def test_converter_handles_each_myst_form(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "references.bib").write_text("@article{a2020,title={T},author={Ab, C and De, F and Gh, I},year={2020}}")
    (tmp_path / "m.py").write_text("X = 1\n\n\n@staticmethod\ndef f(x):\n    return x\n")
    md = book / "01-x.md"
    md.write_text(textwrap.dedent("""\
        ---
        jupytext: {formats: 'md:myst', text_representation: {format_name: myst}}
        kernelspec: {display_name: Python 3, language: python, name: python3}
        ---
        # 1. X

        ```{code-cell} ipython3
        glue("v", 3)
        ```

        (sec-a)=
        See {cite:t}`a2020` and {cite}`a2020`; value {glue:text}`v:.1f`; by {prf:ref}`thm-a`.

        ````{prf:theorem} Big
        :label: thm-a
        - one
        ```python
        x = 1
        ```
        ````

        ```{exercise}
        :label: ex-a
        Do it.
        ```

        ```{solution} ex-a
        :class: dropdown
        Done.
        ```

        ```{admonition} Note well
        :class: tip
        Body.
        ```

        ```{literalinclude} ../m.py
        :pyobject: f
        ```

        ```{literalinclude} ../m.py
        :pyobject: f
        :start-at: return
        :dedent: 4
        ```

        The whole of {source}`m.py::f`, and {source}`all of it <m.py>`.
        """))
    monkey_root, N.ROOT = N.ROOT, tmp_path
    p = N.project(ROOT)
    try:
        nb = N.colab_notebook(md, p, N.Labels.of([md]), tmp_path)
    finally:
        N.ROOT = monkey_root
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not N.raw_myst(text), N.raw_myst(text)
    for expected in ["Ab et al. (2020)", "(Ab et al., 2020)", "`v`", "printed as `name = value` by the code above",
                     "Theorem (Big)", "> **Theorem (Big).**\n>\n> - one", "> ```python", "**Exercise 1.** Do it.",
                     "<details>\n<summary>Solution to exercise 1</summary>\n\nDone.", "> **Note well**\n>\n> Body.",
                     "@staticmethod\ndef f(x):\n    return x", "#L4-L6", "## References",
                     "from `f` in [`m.py`]", "#L6-L6) (release", "```python\nreturn x\n```",
                     f"The whole of [`f`]({p.source('m.py', (4, 6))}), and [all of it]({p.source('m.py')})."]:
        assert expected in text, expected
    assert "(sec-a)=" not in text


EXCERPT_CASES = [
    {"pyobject": "g"},
    {"pyobject": "g", "start-at": "the core", "dedent": "4"},
    {"pyobject": "g", "start-after": "the core", "end-before": "the end", "dedent": ""},
    {"pyobject": "g", "start-at": "the core", "end-at": "return", "dedent": "4"},
    {"pyobject": "g", "lines": "1,3-4"},
    {"pyobject": "g", "start-after": "the core", "lines": "2-"},
    {"start-at": "def g", "end-before": "the end"},
    {"lines": "5-7"},
]


@pytest.mark.parametrize("options", EXCERPT_CASES, ids=lambda o: ",".join(o))
def test_excerpts_show_what_sphinx_shows(tmp_path, options):
    """Chapters show the lines that carry an idea (``:start-at:`` … ``:dedent:`` within a ``:pyobject:``); the
    generated notebooks must show those very lines, and link to them."""
    code = pytest.importorskip("sphinx.directives.code")
    src = tmp_path / "m.py"
    src.write_text("X = 1\n\n\ndef g(a):\n    \"\"\"Doc.\"\"\"\n    b = a + 1\n    # the core: one line\n"
                   "    c = b * 2\n    if c:\n        c -= 1\n    # the end\n    return c\n\n\nY = 2\n")
    sphinx_options = {k: (int(v) if v else None) if k == "dedent" else v for k, v in options.items()}
    shown, _ = code.LiteralIncludeReader(str(src), sphinx_options, SimpleNamespace(source_encoding="utf-8")).read()
    numbered = N.excerpt(src, options)
    assert "\n".join(line for _, line in numbered) + "\n" == shown
    lines = src.read_text().splitlines()
    assert all(lines[i - 1].endswith(line) for i, line in numbered)  # the numbers are the file's


def test_excerpt_errors_name_the_option(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def g():\n    return 1\n")
    with pytest.raises(ValueError, match="start-at"):
        N.excerpt(src, {"pyobject": "g", "start-at": "nowhere"})
    with pytest.raises(ValueError, match="dedent"):
        N.excerpt(src, {"pyobject": "g", "dedent": "4"})


def test_links_to_the_source_follow_the_release():
    p = N.project()
    old = f"see [`f` in `m.py`]({p.repository}/blob/v0.0.1/dcprivacy/m.py) and <{p.repository}/blob/abc/README.md>"
    new = N.source_links(old, p)
    assert new == old.replace("/v0.0.1/", f"/{p.release}/").replace("/abc/", f"/{p.release}/")
    assert N.source_links("https://github.com/other/repo/blob/v0.0.1/x.py", p).endswith("/v0.0.1/x.py")
    for md in CHAPTERS:  # every chapter's links into the repository point at the release
        text = md.read_text()
        assert N.source_links(text, p) == text, f"{md.name}: run `python tools/notebooks.py`"


@pytest.mark.slow
def test_a_generated_notebook_runs_top_to_bottom_installed_as_its_first_cell_installs(tmp_path):
    """Colab stand-in: a fresh environment that has what Colab has (this interpreter's libraries, without
    dcprivacy) runs the generated notebook; its install cell installs a wheel of this checkout in place of
    the pinned release."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dcprivacy", src / "dcprivacy", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True, timeout=300)
    wheel = next(wheels.glob("dcprivacy-*.whl"))

    venv = tmp_path / "colab"
    # (no pip of its own: this interpreter's pip, found through colab_has.pth, installs into the venv)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # This interpreter's libraries as a plain path entry: its .pth files (the editable dcprivacy) stay unread.
    (Path(site) / "colab_has.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(DCPRIVACY_PROFILE="quick", DCPRIVACY_PROGRESS="0", PIP_NO_INDEX="1")
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('dcprivacy'), "
                            "u.find_spec('torch') is not None)"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.stdout.split() == ["None", "True"], probe.stdout + probe.stderr

    p = N.project()
    nb = nbformat.read(ROOT / N.NOTEBOOKS / f"{FASTEST}.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert p.requirement in first.source
    first.source = first.source.replace(p.requirement, f"dcprivacy @ {wheel.as_uri()}")  # the stand-in
    nb.cells.append(nbformat.v4.new_code_cell("import dcprivacy; print(dcprivacy.__file__)"))
    path = tmp_path / f"{FASTEST}.ipynb"
    nbformat.write(nb, path)
    run = subprocess.run([str(py), "-c", textwrap.dedent(f"""\
        import nbformat
        from nbclient import NotebookClient
        nb = nbformat.read({str(path)!r}, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={{"metadata": {{"path": {str(tmp_path)!r}}}}}).execute()
        print(nb.cells[-1].outputs[0]["text"])
        """)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert str(venv) in run.stdout, f"the notebook did not use the dcprivacy its first cell installed: {run.stdout}"
