"""The notebooks made for Jupyter and Colab (notebooks/), and the one place that says where the project lives."""
import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as N  # noqa: E402

CHAPTERS = N.chapters()


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
    src = jupytext.read(md)
    chapter = [c.source for c in src.cells if c.cell_type == "code"]
    assert ours == chapter, f"{md.stem}: the notebook's code cells are not the chapter's, in order"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["accelerator"] == "GPU"
    # every figure's caption and alt text, right after its code cell
    captions = [c for c in src.cells if c.cell_type == "code" and c.metadata.get("mystnb", {}).get("figure")]
    for c in captions:
        k = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.source == c.source)
        after = nb.cells[k + 1].source
        assert after.startswith("**Figure.**") and "Image description (alt text)" in after, (md.stem, after[:80])
        words = " ".join(c.metadata["mystnb"]["figure"]["caption"].split())
        assert words.split("{")[0][:30] in after, (md.stem, words[:60])
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert markdown.count("**Figure.**") == len(captions)
    # display math never inside a quote; no glued value left as its key; references decoded
    assert not [line for line in markdown.splitlines() if line.startswith(">") and ("$$" in line or "\\begin{" in line)]
    values = N.glued_values(md.with_suffix(".ipynb"))
    for key, _, spec in (r.partition(":") for r in re.findall(r"\{glue:text\}`([^`]*)`", md.read_text())):
        shown = N._escape(N.format_glue(values[key], spec))
        assert shown in markdown, f"{md.stem}: {{glue:text}}`{key}` does not read as its value {shown!r}"
    refs = next((c.source for c in nb.cells if c.source.startswith("## References")), "")
    assert not re.search(r"\\[`'\"^~&]|\{|\}", refs), f"{md.stem}: undecoded LaTeX in the references"
    # the setup cell starts with the profile switch the runtime note describes
    assert ours[2].split("\n")[:2] == list(N.PROFILE_LINES) and "get_profile()" in ours[2]


def test_the_opening_line_reads_the_profile_not_its_key():
    nb = nbformat.read(ROOT / N.NOTEBOOKS / "02-condensation.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "executed with the **quick** profile" in text and "**`profile`**" not in text
    ch4 = nbformat.read(ROOT / N.NOTEBOOKS / "04-membership-inference.ipynb", as_version=4)
    refs = next(c.source for c in ch4.cells if c.source.startswith("## References"))
    assert "Florian Tramèr" in refs  # LiRA's authors: Tram{\`e}r in references.bib


def _executed_pair(md, values: dict):
    """``md``'s executed pair holding ``values`` as myst_nb glue outputs (what `jupyter execute` leaves)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("glue(...)", outputs=[
        nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": repr(v)},
                               metadata={"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}})
        for k, v in values.items()])])
    nbformat.write(nb, md.with_suffix(".ipynb"))


def test_converter_handles_each_myst_form(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "references.bib").write_text(
        "@article{a2020,title={T},author={Ab, C and De, F and Gh, I},year={2020}}\n"
        "@inproceedings{b2021,title={R{\\'e}nyi Privacy for $\\varepsilon$ -- fast},"
        "author={Tram{\\`e}r, Florian},booktitle={S\\&P},year={2021}}")
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
        glue("profile", "quick")
        glue("who", "a_b *c*")
        ```

        (sec-a)=
        Run with the **{glue:text}`profile`** profile. See {cite:t}`a2020` and {cite}`a2020,b2021`; value
        {glue:text}`v:.1f`, {glue:text}`who`; by {prf:ref}`thm-a`.

        ````{prf:theorem} Big
        :label: thm-a
        - one
        ```python
        x = 1
        ```
        ````

        ```{prf:proof}
        Since

        $$
        a = b,
        $$

        done.
        ```

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

        ```{admonition} Math
        :class: note
        $$
        x^2
        $$
        ```

        ```{code-cell} ipython3
        ---
        mystnb:
          figure:
            caption: 'The curve of
              {cite:t}`a2020`.'
            name: fig-x
          image:
            alt: A rising line.
        ---
        plot()
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
    _executed_pair(md, {"v": 3, "profile": "quick", "who": "a_b *c*"})
    monkey_root, N.ROOT = N.ROOT, tmp_path
    p = N.project(ROOT)
    try:
        nb = N.colab_notebook(md, p, N.Labels.of([md]), tmp_path)
    finally:
        N.ROOT = monkey_root
    cells = [c.source for c in nb.cells]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not N.raw_myst(text), N.raw_myst(text)
    for expected in ["Ab et al. (2020)", "(Ab et al., 2020; Tramèr, 2021)", "Run with the **quick** profile",
                     "value\n3.0, a\\_b \\*c\\*;", "Values as on the page: the site's `quick` run",
                     "prints its own: `profile = …`, `v = …`, `who = …` in the code above",
                     "Theorem (Big)", "---\n\n**Theorem (Big).**\n\n- one\n```python", "*Proof.* Since\n\n$$\na = b,\n$$",
                     "**Exercise 1.** Do it.", "<details>\n<summary>Solution to exercise 1</summary>\n\nDone.",
                     "> **Note well**\n>\n> Body.", "---\n\n**Math**\n\n$$\nx^2\n$$\n\n---",
                     "@staticmethod\ndef f(x):\n    return x", "#L4-L6", "## References",
                     "- Florian Tramèr (2021). *Rényi Privacy for $\\varepsilon$ – fast*. S&P.",
                     "from `f` in [`m.py`]", "#L6-L6) (release", "```python\nreturn x\n```",
                     f"The whole of [`f`]({p.source('m.py', (4, 6))}), and [all of it]({p.source('m.py')})."]:
        assert expected in text, expected
    assert "(sec-a)=" not in text and "`profile`" not in text.replace("`profile = …`", "")
    assert not any(line.startswith(">") and "$$" in line for line in text.splitlines()), "display math in a quote"
    # the figure's caption and alt text: a markdown cell right after its code cell
    k = cells.index("plot()")
    assert nb.cells[k + 1].cell_type == "markdown"
    assert nb.cells[k + 1].source == ("**Figure.** The curve of Ab et al. (2020).\n\n"
                                      "<small>*Image description (alt text):* A rising line.</small>")


def test_a_glued_value_missing_from_the_executed_pair_names_the_fix(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "references.bib").write_text("")
    md = book / "01-x.md"
    md.write_text('# 1. X\n\n```{code-cell} ipython3\nglue("v", 3)\n```\n\nValue {glue:text}`v`.\n')
    _executed_pair(md, {"w": 1})
    with pytest.raises(KeyError, match="execute the chapter"):
        N.colab_notebook(md, N.project(ROOT), N.Labels.of([md]), tmp_path)


def test_glue_names_are_found_in_plain_and_f_strings_with_inner_quotes():
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('glue("plain", 1)'),
        nbformat.v4.new_code_cell("for k in ('dp-dm',):\n    glue(f\"acc_{k.replace('-', '_')}_seeds\", 2)"),
        nbformat.v4.new_code_cell("glue('single', 3)")])
    found = N.glue_cells(nb)
    assert found[("", "plain")] == 0 and found[("", "single")] == 2
    (f, pattern), = [k for k in found if k[0]]
    assert found[(f, pattern)] == 1 and re.fullmatch(pattern, "acc_dp_dm_seeds") and not re.fullmatch(pattern, "acc")


def test_sources_mode_writes_all_but_the_notebooks():
    """Before the chapters run (tools/book.sh) only the chapters and the copies of [tool.dcprivacy] are
    written: a notebook cannot be rendered until its chapter has glued its values."""
    files = N.outputs(ROOT, notebooks=False)
    assert files and not any(f.parent.name == N.NOTEBOOKS for f in files)
    assert ROOT / "README.md" in files and all(md in files for md in N.chapters(ROOT))
    assert set(files) < set(N.outputs(ROOT))


@pytest.mark.parametrize("text,spec", [("3", ".1f"), ("0.123456", ".2%"), ("'quick'", ""), ("'quick'", "s"),
                                       ("12", "d"), ("1e-05", "g"), ("0.5", ".0%"), ("[1, 2]", ""), ("plain", "")])
def test_glued_values_read_as_myst_nb_shows_them(text, spec):
    variables = pytest.importorskip("myst_nb.core.variables")
    assert N.format_glue(text, spec) == variables.format_plain_text(text, spec)


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


def test_a_newer_jupytext_does_not_make_the_copies_stale(monkeypatch, tmp_path):
    """pages.yml and a contributor may run a newer jupytext than the one whose version the chapters' headers
    record: the header's version is not content (the toolchain is pinned in pyproject.toml's `site` extra)."""
    import jupytext.formats
    import jupytext.header
    for module in (jupytext.formats, jupytext.header):
        monkeypatch.setattr(module, "__version__", "1.20.0")
    p = N.project()
    md = CHAPTERS[0]
    assert "jupytext_version: 1.20.0" in jupytext.writes(jupytext.read(md), "md:myst")  # the fake took hold
    assert not N.stale(), "a newer jupytext made the generated copies stale"
    # and a chapter whose header a newer jupytext wrote is not rewritten for it
    newer = tmp_path / md.name
    newer.write_text(re.sub(r"jupytext_version: \S+", "jupytext_version: 1.21.3", md.read_text()))
    shutil.copy(md.with_suffix(".ipynb"), newer.with_suffix(".ipynb"))
    assert "jupytext_version: 1.21.3" in N.chapter_text(newer, p)
    assert N.same_text(N.chapter_text(newer, p), md.read_text())


def test_the_setup_cell_switches_the_profile_when_edited_and_rerun(monkeypatch):
    """What the runtime note tells a reader to do, done in a real kernel: run the setup cell as it is (the
    default profile), then uncomment its %env line, name a profile and re-run it: the profile changes."""
    from nbclient import NotebookClient
    monkeypatch.delenv("DCPRIVACY_PROFILE", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    setup = next(c for c in nbformat.read(ROOT / N.NOTEBOOKS / "01-tour.ipynb", as_version=4).cells
                 if c.cell_type == "code" and c.source.startswith(N.PROFILE_LINES[0]))
    switched = lambda name: setup.source.replace(N.PROFILE_LINES[0], f"%env DCPRIVACY_PROFILE={name}", 1)
    check = "import torch; print('PROFILE', profile.name, 'standard' if torch.cuda.is_available() else 'quick')"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (
        setup.source, check, switched("paper"), check, switched("standard"), check)])
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    seen = [next(o["text"] for o in c.outputs if "PROFILE" in o.get("text", "")).split()
            for c in nb.cells[1::2]]
    assert seen[0][1] == seen[0][2], "the setup cell as shipped: the default profile"
    assert [s[1] for s in seen[1:]] == ["paper", "standard"]
    from dcprivacy.runtime import runtime_note
    assert "re-run the setup cell" in runtime_note("01-tour")
    readme = (ROOT / "README.md").read_text()
    assert "re-run the setup cell" in readme and "%env DCPRIVACY_PROFILE" in readme


def test_source_links_on_the_site_open_the_commit_being_built(monkeypatch, tmp_path):
    import source_link
    sha = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("GITHUB_SHA", sha)
    assert source_link.source_ref(ROOT, "v0.1.0") == sha
    monkeypatch.delenv("GITHUB_SHA")
    assert source_link.source_ref(tmp_path, "v0.1.0") == "v0.1.0"  # not a git checkout: the release
    if (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        assert source_link.source_ref(ROOT, "v0.1.0") == head
    config = SimpleNamespace(dcprivacy_source_ref=sha, dcprivacy_colab_ref="v0.1.0")
    assert source_link.ref_of(config) == sha


# ---------------------------------------------------------------------------------------------------------
# Installed, not checked out: the wheel ships what the pages read, and the notebooks install it as Colab does

def _source_tree(dest: Path) -> Path:
    """The files a release's `pip install` builds from: pyproject.toml, README.md, the package, results/."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "dcprivacy", dest / "dcprivacy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "results", dest / "results", ignore=shutil.ignore_patterns("cache", "*.pt"))
    return dest


def wheel_of_installed(name: str, dest: Path) -> Path:
    """A wheel of the installed (pure-Python) distribution ``name``, made from its files: how the tests get
    wheels offline of what this machine has (pip cannot download here, and need not in CI)."""
    dist = importlib.metadata.distribution(name)
    base, info = Path(dist.locate_file("")), None
    tag = next(line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag:"))
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files:
            arc = str(f).replace(os.sep, "/")
            if arc.startswith("..") or "__pycache__" in arc or not (base / f).is_file():
                continue
            top, _, rest = arc.partition("/")
            if top.endswith(".dist-info"):  # the distribution's own (not a vendored package's)
                info = top
                if rest in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
                    continue
            data = (base / f).read_bytes()
            z.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        z.writestr(f"{info}/RECORD", "\n".join(record + [f"{info}/RECORD,,"]) + "\n")
    return path


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DCPRIVACY_RESULTS") and not k.startswith("PIP_")}
    env.update(DCPRIVACY_PROFILE="quick", DCPRIVACY_PROGRESS="0", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def test_an_installed_wheel_reads_the_records_and_constants_a_checkout_reads(tmp_path):
    """The wheel carries results/ (the benchmark records, chapter timings, the cost calibration) as package data:
    the appendix's records and every runtime note's minutes are the same installed as in the checkout."""
    src = _source_tree(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "wheels"), str(src)], check=True, timeout=300, env=_clean_env())
    wheel = next((tmp_path / "wheels").glob("dcprivacy-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=300, env=_clean_env())
    probe = textwrap.dedent("""\
        import json, dcprivacy
        from dcprivacy import cost, runtime
        from dcprivacy.provenance import records_dir
        print(json.dumps({"file": dcprivacy.__file__, "bench": str(records_dir("bench")),
                          "records": sorted(p.name for p in records_dir("bench").glob("*.json")),
                          "cpu": {k: v for k, v in vars(cost.device_constants("cpu")).items()},
                          "notes": {s: runtime.runtime_note(s) for s in cost.CHAPTERS}}))
        """)
    installed = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                          cwd=tmp_path, env=_clean_env(PYTHONPATH=str(site))).stdout)
    here = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                     cwd=tmp_path, env=_clean_env(PYTHONPATH=str(ROOT))).stdout)
    assert installed["file"].startswith(str(site)) and installed["bench"].startswith(str(site / "dcprivacy" / "_data"))
    assert installed["records"] == here["records"] == sorted(p.name for p in (ROOT / "results" / "bench").glob("*.json"))
    assert installed["cpu"] == here["cpu"], "the CPU constants differ installed and checked out"
    calibration = json.loads((ROOT / "results" / "timings" / "calibration-cpu.json").read_text())["constants"]
    assert all(installed["cpu"][k] == v for k, v in calibration.items()), "the calibration is the constants' source"
    assert installed["notes"] == here["notes"], "a runtime note reads differently on Colab than on the site"


COLAB_LACKS = ("dcprivacy", "__editable__", "opacus", "myst_nb")  # installed here, not on Colab
STAND_IN = ("02-condensation", "appendix-fast")  # figures, glued values, records read from the package


def _colab_like_venv(tmp_path: Path) -> Path:
    """A virtual environment with what Colab has: this interpreter's libraries (PyTorch, NumPy, Jupyter, …),
    seen through a folder of links that leaves out dcprivacy, Opacus and myst_nb; pip is this interpreter's."""
    site = Path(sysconfig.get_paths()["purelib"])
    has = tmp_path / "colab-has"
    has.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(COLAB_LACKS) and entry.suffix != ".pth":
            (has / entry.name).symlink_to(entry)
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "colab_has.pth").write_text(f"{has}\n")
    return py


def _tagged_repository(tmp_path: Path, release: str) -> Path:
    """A git repository of this checkout's package with the release tag: what `pip install git+…@TAG` fetches."""
    repo = _source_tree(tmp_path / "repo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
           "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "release"], ["tag", release]):
        subprocess.run(git + args, cwd=repo, check=True, capture_output=True, timeout=120)
    return repo


@pytest.mark.slow
def test_generated_notebooks_run_on_a_colab_stand_in_installed_by_their_first_cell(tmp_path):
    """Colab stand-in, offline: a fresh environment with what Colab has (no dcprivacy, no Opacus, no myst_nb)
    runs chapter 2 and the appendix as generated. The first cell takes its real branches: `pip install
    --no-deps "dcprivacy @ git+…@<release>"` from a local git repository holding the release tag (an isolated
    build, its setuptools from a local wheel folder), then Opacus from that folder. Chapter 2 shows its figures
    and prints its glued values; the appendix shows the benchmark records and their figure from the wheel."""
    p = N.project()
    repo = _tagged_repository(tmp_path, p.release)
    wheels = tmp_path / "wheels"  # what pip would download on Colab, made from this machine's installs
    for name in ("setuptools", "opacus"):
        wheel_of_installed(name, wheels)
    py = _colab_like_venv(tmp_path)
    env = _clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print([u.find_spec(m) is not None for m in "
                            "('dcprivacy', 'opacus', 'myst_nb', 'torch', 'nbclient')])"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.stdout.strip() == "[False, False, False, True, True]", probe.stdout + probe.stderr

    paths = []
    for stem in STAND_IN:
        nb = nbformat.read(ROOT / N.NOTEBOOKS / f"{stem}.ipynb", as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert p.requirement in first.source
        # the same tag, from the local repository (file://localhost/…: older pips want a host in a git+ URL)
        first.source = first.source.replace(f"git+{p.repository}@", f"git+file://localhost{repo.as_posix()}@")
        nb.cells.append(nbformat.v4.new_code_cell("import dcprivacy, opacus; print(dcprivacy.__file__, opacus.__file__)"))
        paths.append(tmp_path / f"{stem}.ipynb")
        nbformat.write(nb, paths[-1])
    run = subprocess.run([str(py), "-c", textwrap.dedent(f"""\
        import nbformat
        from nbclient import NotebookClient
        for path in {[str(x) for x in paths]!r}:
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=900, kernel_name="python3", resources={{"metadata": {{"path": {str(tmp_path)!r}}}}}).execute()
            nbformat.write(nb, path)
        """)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    venv = str(py.parent.parent)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        last = nb.cells[-1].outputs[0]["text"].split()
        assert all(f.startswith(venv) for f in last), f"not the dcprivacy and Opacus the first cell installed: {last}"
        assert images >= 1 and "profile = quick" in text, f"{path.name}: no figure, or the glued values unprinted"
        if path.stem == "appendix-fast":
            assert "no benchmark recorded" not in text and "bench train (cpu" in text and "recorded in" in text
    installed = subprocess.run([str(py), "-m", "pip", "show", "-f", "dcprivacy"], capture_output=True, text=True, env=env)
    assert "dcprivacy/_data/bench/condense-cpu.json" in installed.stdout and "Location: " + venv in installed.stdout
