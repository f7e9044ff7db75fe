"""Where the project lives, written once, and the notebooks made from the chapters for Jupyter and Colab.

``[tool.dcprivacy]`` in ``pyproject.toml`` holds the repository URL and the release (a tag or commit) that
notebooks install and Colab opens. Everything else that names them is written from there by this script:

- ``_config.yml``: the repository URL and branch, and the ref the Colab buttons and ``{source}`` links open;
- ``.github/workflows/pages.yml``: the branch the site is published from;
- ``README.md``: the block between ``<!-- colab:start -->`` and ``<!-- colab:end -->``;
- every chapter's first code cell (the install cell), second (the runtime note, dcprivacy.runtime) and the
  first line of its third (the setup cell: a commented ``%env DCPRIVACY_PROFILE=…`` that picks the profile
  when uncommented and the cell re-run), and its links to the source at the release;
- ``notebooks/NN-name.ipynb``: each chapter as a plain notebook, MyST turned into what Jupyter and Colab
  render: included code as listings, glued values as the values the site shows (from the executed pair
  ``book/NN-name.ipynb``, with their formatting), figure captions and alt text as a markdown cell after the
  figure's code, theorems, exercises and admonitions as markdown (display math never inside a quote),
  solutions collapsed, citations as author–year text and a reference list with LaTeX accents decoded.

The comparison ignores the ``jupytext_version`` a chapter's header records (a newer jupytext does not make
the copies stale), and writing keeps the recorded one.

    python tools/notebooks.py            # write all of the above
    python tools/notebooks.py --check    # exit 1, naming each stale file, if anything is out of date
    python tools/notebooks.py --sources  # all but notebooks/ (before the chapters run: tools/book.sh)
"""
from __future__ import annotations

import argparse
import codecs
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import source_link  # noqa: E402  (the {source} role: one parser for the site and the notebooks)

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOKS = "notebooks"  # the folder of the generated notebooks, relative to the repository root
INSTALL_MARK = "# Install the book's package"
NOTE_IMPORT = "from dcprivacy.runtime import chapter_note"
# The setup cell (every chapter's third code cell) starts with these lines: uncommented and the cell re-run,
# the profile changes (the cell reads it with get_profile(); dcprivacy.runtime's note says so).
PROFILE_LINES = ("# %env DCPRIVACY_PROFILE=quick",
                 "# ↑ to run another profile (quick, standard or paper): uncomment it, edit, re-run this cell and the ones below")
# Colab ships these (and the package's other dependencies) in compatible versions; the install cell adds
# the package without its dependencies, and of its extras only what is missing.
EXTRAS = {"opacus": "opacus>=1.5"}
PROOF_KINDS = {"theorem": "Theorem", "proposition": "Proposition", "lemma": "Lemma", "corollary": "Corollary",
               "definition": "Definition", "remark": "Remark", "assumption": "Assumption", "example": "Example",
               "conjecture": "Conjecture", "axiom": "Axiom", "criterion": "Criterion", "observation": "Observation",
               "property": "Property", "algorithm": "Algorithm"}
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error", "seealso"}


# ----------------------------------------------------------------------------------------------------------
# One place: [tool.dcprivacy]

@dataclass(frozen=True)
class Project:
    repository: str  # https://github.com/OWNER/NAME
    release: str  # the tag or commit that notebooks install and Colab opens
    branch: str  # the branch the site is built from

    @property
    def owner_name(self) -> tuple[str, str]:
        m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+?)(?:\.git)?/?", self.repository)
        if not m:
            raise ValueError(f"[tool.dcprivacy] repository must be https://github.com/OWNER/NAME, "
                             f"not {self.repository!r}")
        return m.group(1), m.group(2)

    @property
    def site(self) -> str:
        owner, name = self.owner_name
        return f"https://{owner.lower()}.github.io/{name}"

    @property
    def requirement(self) -> str:
        return f"dcprivacy @ git+{self.repository}@{self.release}"

    def colab(self, stem: str) -> str:
        owner, name = self.owner_name
        return f"https://colab.research.google.com/github/{owner}/{name}/blob/{self.release}/{NOTEBOOKS}/{stem}.ipynb"

    def source(self, path: str, lines: tuple[int, int] | None = None) -> str:
        url = f"{self.repository}/blob/{self.release}/{path}"
        return url + (f"#L{lines[0]}-L{lines[1]}" if lines else "")


def project(root: Path = ROOT) -> Project:
    conf = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["dcprivacy"]
    p = Project(conf["repository"].rstrip("/"), conf["release"], conf.get("branch", "main"))
    p.owner_name  # validates
    if p.release in {"main", "master", p.branch, "HEAD"}:
        raise ValueError(f"[tool.dcprivacy] release must be a tag or commit, not the branch {p.release!r}")
    return p


# The numbered chapters, then the appendices; dcprivacy.runner.CHAPTER_PATTERNS is the same (this script runs
# without the package, in the site's workflow).
CHAPTER_PATTERNS = ("[0-9][0-9]-*.md", "appendix-*.md")


def chapters(root: Path = ROOT) -> list[Path]:
    """Every chapter's MyST source, in the book's order."""
    return [p for pattern in CHAPTER_PATTERNS for p in sorted((root / "book").glob(pattern))]


def chapter_name(stem: str, title: str) -> str:
    """How another chapter names chapter ``stem``: ``chapter 3``, or an appendix by its title."""
    return f"chapter {int(stem[:2])}" if stem[:2].isdigit() else f"the appendix “{title}”"


def install_cell(p: Project) -> str:
    """The source of every chapter's first code cell."""
    extras = "\n".join(f'    if importlib.util.find_spec("{mod}") is None:\n'
                        f'        subprocess.run(pip + ["{req}"], check=True)' for mod, req in EXTRAS.items())
    return f'''{INSTALL_MARK} (release {p.release}) where it is missing, as on Colab.
# Colab has PyTorch, NumPy, SciPy, scikit-learn, scikit-image, Matplotlib and tqdm: only
# dcprivacy (without dependencies) is added, and Opacus if missing. Elsewhere: see the README.
import importlib.util, subprocess, sys
if importlib.util.find_spec("dcprivacy") is None:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "{p.requirement}"], check=True)
{extras}'''


def config_text(text: str, p: Project) -> str:
    """``_config.yml`` with the repository URL, branch and Colab ref of ``p`` (and the URL {source} links use)."""
    def sub(pattern, repl, text):
        new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"_config.yml: no line matching {pattern!r}")
        return new
    text = sub(r"^(repository:\n(?:  .*\n)*?  url: ).*$", rf"\g<1>{p.repository}", text)
    text = sub(r"^(repository:\n(?:  .*\n)*?  branch: ).*$", rf"\g<1>{p.branch}", text)
    text = sub(r"^(    dcprivacy_colab_ref: ).*$", rf'\g<1>"{p.release}"', text)
    text = sub(r"^(    dcprivacy_repository: ).*$", rf'\g<1>"{p.repository}"', text)
    return text


def pages_text(text: str, p: Project) -> str:
    """``.github/workflows/pages.yml`` publishing from ``p.branch``."""
    new, n = re.subn(r"^(  push:\n    branches: \[).*(\])$", rf"\g<1>{p.branch}\g<2>", text, count=1, flags=re.M)
    if n != 1:
        raise ValueError("pages.yml: no `push: branches: [...]` to write the branch into")
    return new


def readme_block(p: Project, root: Path = ROOT) -> str:
    lines = ["<!-- colab:start (written by `python tools/notebooks.py` from [tool.dcprivacy] in pyproject.toml) -->",
             "", f"Release `{p.release}` of <{p.repository}>; the rendered book: <{p.site}>.", "",
             "| chapter | open on Colab |", "|---|---|"]
    for md in chapters(root):
        lines.append(f"| {_title(jupytext.read(md))} | [{md.stem}.ipynb]({p.colab(md.stem)}) |")
    owner, name = p.owner_name
    lines += ["", "In plain Jupyter, without building the book (Python ≥ 3.10):", "", "```bash",
              f"git clone {p.repository}.git && cd {name} && git checkout {p.release}",
              'pip install -e ".[dp,jupyter]"     # add PyTorch first if you want a CUDA build',
              f"jupyter lab {NOTEBOOKS}/             # the chapters as plain notebooks; run them top to bottom",
              "```", "", "<!-- colab:end -->"]
    return "\n".join(lines)


def readme_text(text: str, p: Project, root: Path = ROOT) -> str:
    new, n = re.subn(r"<!-- colab:start.*?<!-- colab:end -->", lambda m: readme_block(p, root), text, flags=re.S)
    if n != 1:
        raise ValueError("README.md: needs one block <!-- colab:start --> … <!-- colab:end -->")
    return new


def note_cell(stem: str) -> str:
    """The source of every chapter's second code cell: the runtime note (dcprivacy.runtime)."""
    return f'{NOTE_IMPORT}\nchapter_note("{stem}")'


def source_links(text: str, p: Project) -> str:
    """``text`` with every link into the repository's files (``REPOSITORY/blob/REF/PATH``) at ``p.release``."""
    return re.sub(rf"{re.escape(p.repository)}/blob/[^/\s)>]+/", f"{p.repository}/blob/{p.release}/", text)


def chapter_text(md: Path, p: Project) -> str:
    """The chapter's MyST source with its install cell written from ``p``, its runtime note after it, and its
    links to the package's source (``REPOSITORY/blob/REF/…``, under excerpts) pointing at ``p.release``."""
    nb = jupytext.read(md)
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = source_links(c.source, p)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or not code[0].source.startswith(INSTALL_MARK):
        raise ValueError(f"{md.name}: the first code cell must be the install cell starting {INSTALL_MARK!r}")
    code[0].source = install_cell(p)
    if len(code) > 1 and code[1].source.startswith(NOTE_IMPORT):
        code[1].source = note_cell(md.stem)
    else:
        note = nbformat.v4.new_code_cell(note_cell(md.stem), metadata={"tags": ["remove-input"]})
        nb.cells.insert(nb.cells.index(code[0]) + 1, note)
        code.insert(1, note)
    if len(code) < 3 or "get_profile()" not in code[2].source:
        raise ValueError(f"{md.name}: the third code cell must be the setup cell, which reads the profile "
                         f"with get_profile()")
    code[2].source = setup_cell(code[2].source)
    return keep_jupytext_version(jupytext.writes(nb, "md:myst"), md.read_text())


def setup_cell(source: str) -> str:
    """The setup cell ``source`` starting with :data:`PROFILE_LINES` (whatever profile its first line names)."""
    lines = source.split("\n")
    head = 0
    while head < len(lines) and (re.fullmatch(r"#? ?%env DCPRIVACY_PROFILE=\S*", lines[head].strip())
                                 or lines[head].startswith("# ↑ ")):
        head += 1
    return "\n".join([*PROFILE_LINES, *lines[head:]])


VERSION_LINE = re.compile(r"^(\s*jupytext_version:).*$", re.M)


def keep_jupytext_version(text: str, old: str) -> str:
    """``text`` with the ``jupytext_version`` its header records replaced by the one ``old`` records: the
    installed jupytext's version is not content."""
    m = VERSION_LINE.search(old)
    return VERSION_LINE.sub(lambda _: m.group(0), text, count=1) if m else text


def same_text(a: str, b: str) -> bool:
    """Whether two files' texts agree, ignoring the ``jupytext_version`` of a header."""
    return VERSION_LINE.sub(r"\1", a) == VERSION_LINE.sub(r"\1", b)


# ----------------------------------------------------------------------------------------------------------
# MyST → plain notebook markdown

ROLE = re.compile(r"\{([A-Za-z][\w:.-]*)\}`([^`]*)`")
FENCE = re.compile(r"^(\s*)(`{3,}|:{3,})\{([\w:.-]+)\}\s*(.*?)\s*$")
RAW_MYST = [ROLE, re.compile(r"^\s*(`{3,}|:{3,})\s*\{", re.M), re.compile(r"^\(\S+\)=\s*$", re.M)]


def raw_myst(text: str) -> list[str]:
    """MyST roles, directives and targets left in ``text`` (the test for generated markdown)."""
    return [m.group(0) for rx in RAW_MYST for m in rx.finditer(text)]


def _title(nb) -> str:
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^# (.+)$", c.source, re.M)
            if m:
                return m.group(1).strip()
    return ""


def _split_label(text: str) -> tuple[str | None, str]:
    m = re.fullmatch(r"(.*?)\s*<([^<>]+)>", text.strip(), re.S)
    return (m.group(1), m.group(2)) if m else (None, text.strip())


@dataclass
class Labels:
    """What a label names, over the whole book: ``label → (text, stem)``."""
    names: dict

    @classmethod
    def of(cls, mds: list[Path]) -> "Labels":
        names = {}
        for md in mds:
            text = md.read_text()
            names[md.stem] = (_title(jupytext.read(md)), md.stem)
            n = 0
            for m in re.finditer(r"^`{3,}\{(prf:(\w+)|exercise)\}\s*(.*?)\n((?::[\w-]+:.*\n)*)", text, re.M):
                label = re.search(r"^:label:\s*(\S+)", m.group(4), re.M)
                if m.group(1) == "exercise":
                    n += 1
                    what = f"exercise {n}"
                else:
                    what = PROOF_KINDS.get(m.group(2), m.group(2).title())
                    what += f" ({m.group(3)})" if m.group(3) else ""
                if label:
                    names[label.group(1)] = (what, md.stem)
        return cls(names)

    def text(self, label: str, here: str) -> str:
        if label not in self.names:
            raise KeyError(f"{here}: unknown label {label!r}")
        what, stem = self.names[label]
        return what if stem == here else f"{what} in {chapter_name(stem, self.names[stem][0])}"


class Bibliography:
    def __init__(self, path: Path):
        from pybtex.database import parse_file
        self.db = parse_file(str(path))
        self.cited: list[str] = []

    def _names(self, key: str) -> tuple[str, str]:
        if key not in self.db.entries:
            raise KeyError(f"unknown citation {key!r} (not in book/references.bib)")
        if key not in self.cited:
            self.cited.append(key)
        e = self.db.entries[key]
        last = [" ".join(p.last_names) for p in e.persons.get("author", [])]
        who = last[0] if len(last) == 1 else " and ".join(last) if len(last) == 2 else f"{last[0]} et al."
        return _plain(who), e.fields.get("year", "n.d.")

    def cite(self, keys: str, textual: bool) -> str:
        parts = [self._names(k.strip()) for k in keys.split(",") if k.strip()]
        if textual:
            return "; ".join(f"{who} ({year})" for who, year in parts)
        return "(" + "; ".join(f"{who}, {year}" for who, year in parts) + ")"

    def references(self) -> str:
        out = ["## References", ""]
        for key in self.cited:
            e = self.db.entries[key]
            authors = ", ".join(" ".join(p.first_names + p.middle_names + p.last_names)
                                for p in e.persons.get("author", []))
            venue = e.fields.get("journal") or e.fields.get("booktitle") or e.fields.get("publisher") or ""
            link = e.fields.get("url") or (f"https://doi.org/{e.fields['doi']}" if "doi" in e.fields else "")
            line = f"- {_plain(authors)} ({e.fields.get('year', 'n.d.')}). *{_plain(e.fields.get('title', ''))}*."
            out.append(line + (f" {_plain(venue)}." if venue else "") + (f" <{link}>" if link else ""))
        return "\n".join(out)


def _plain(tex: str) -> str:
    """BibTeX text as plain text: LaTeX accents and symbols decoded (``Tram{\\`e}r`` → Tramèr, ``--`` → –,
    ``\\&`` → &; latexcodec, which pybtex depends on), braces dropped, ``$…$`` math kept for Jupyter."""
    import latexcodec  # noqa: F401  (registers the "ulatex" codec)
    math = re.findall(r"\$[^$]+\$", tex)
    text = re.sub(r"\$[^$]+\$", "MATH0MATH", tex)  # kept as written: Jupyter typesets it
    text = re.sub(r"[{}]", "", codecs.decode(text, "ulatex"))
    for m in math:
        text = text.replace("MATH0MATH", m, 1)
    return text


def _page_title(stem: str) -> str:
    """The first heading of ``book/<stem>.md`` (a page that is not a chapter: primer, notation, glossary)."""
    for line in (ROOT / "book" / f"{stem}.md").read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return stem


class Converter:
    """Turns one chapter's MyST markdown cells into markdown that Jupyter and Colab render."""

    def __init__(self, md: Path, p: Project, labels: Labels, bib: Bibliography, glued: dict[str, int],
                 values: dict[str, str] | None = None):
        self.md, self.p, self.labels, self.bib, self.glued = md, p, labels, bib, glued
        self.values = values or {}  # name → text/plain of each glued value, from the executed pair
        self.exercises: dict[str, int] = {}
        self.cell = 0  # index of the cell being converted (for "above"/"below")
        self.glue_seen: dict[str, list[str]] = {}  # glued names met in this cell, by where they are computed

    def cell_markdown(self, i: int, source: str) -> str:
        """One markdown cell, with a closing line saying where this run prints the values the text shows."""
        self.cell, self.glue_seen = i, {}
        text = re.sub(r"(?m)^---\n\n---$", "---", self.convert(source))  # two ruled blocks share a rule
        if not self.glue_seen:
            return text
        run = self.values.get("profile")
        where = "; ".join(f"{', '.join(f'`{k} = …`' for k in keys)} in the code {w}" for w, keys in self.glue_seen.items())
        site = f"the site's `{format_glue(run, '')}` run" if run is not None else "the site's run"
        return text + f"\n\n<small>(Values as on the page: {site}. This notebook prints its own: {where}.)</small>"

    # roles
    def role(self, m: re.Match) -> str:
        name, text = m.group(1), m.group(2)
        if name.startswith("glue"):
            if name not in ("glue", "glue:text", "glue:md"):
                raise ValueError(f"{self.md.name}: no plain-markdown form for {{{name}}} (glue, glue:text, glue:md)")
            key, _, spec = text.partition(":")
            key = key.strip()
            cells = [i for (f, name), i in self.glued.items() if (re.fullmatch(name, key) if f else name == key)]
            if not cells:
                raise KeyError(f"{self.md.name}: {{{name}}}`{text}` names no glue(...) call of a code cell")
            if key not in self.values:
                raise KeyError(f"{self.md.name}: book/{self.md.stem}.ipynb holds no value glued as {key!r}: execute "
                               f"the chapter first (`jupytext --sync` it, then `jupyter execute --inplace "
                               f"book/{self.md.stem}.ipynb`), then run this script")
            where = "above" if cells[0] < self.cell else "below"
            self.glue_seen.setdefault(where, []).append(key) if key not in self.glue_seen.get(where, []) else None
            value = format_glue(self.values[key], spec)
            return value if name == "glue:md" else _escape(value)
        if name in ("cite", "cite:p", "cite:ps", "cite:t", "cite:ts"):
            return self.bib.cite(text, textual=name.startswith("cite:t"))
        if name in ("prf:ref", "ref", "numref", "doc"):
            title, label = _split_label(text)
            label = label.removesuffix(".md").removeprefix("./")
            if name == "doc":
                stem = Path(label).name
                if stem in self.labels.names:  # a chapter: its generated notebook sits beside this one
                    return f"[{title or self.labels.names[stem][0]}]({stem}.ipynb)"
                return f"[{title or _page_title(stem)}]({self.p.site}/book/{stem}.html)"  # a page of the site
            return title.replace("{number}", "").strip() if title else self.labels.text(label, self.md.stem)
        if name in ("math",):
            return f"${text}$"
        if name == "source":  # a link to a package function's whole source at the release (tools/source_link.py)
            title, path, obj = source_link.parse(text)
            lines = source_link.pyobject_lines(ROOT / path, obj) if obj else None
            return f"[{title or f'`{obj or path}`'}]({self.p.source(path, lines)})"
        if name == "term":  # a glossary term: its text (the glossary itself is a page of the site)
            return _split_label(text)[0] or text
        if name in ("sub", "sup", "abbr", "kbd", "code", "samp", "file", "command"):
            return f"`{text}`" if name in ("kbd", "code", "samp", "file", "command") else text
        raise ValueError(f"{self.md.name}: no plain-markdown form for the role {{{name}}}")

    def roles(self, text: str) -> str:
        return ROLE.sub(self.role, text)

    # directives
    def directive(self, name: str, arg: str, options: dict, body: str) -> str:
        body = self.convert(body)
        if name == "literalinclude":
            return self.listing(arg, options)
        if name.startswith("prf:"):  # not quoted: their bodies hold display math, which a quote would break
            kind = name[4:]
            if kind == "proof":
                return f"*Proof.*{_sep(body)}{body} $\\blacksquare$"
            title = PROOF_KINDS.get(kind, kind.title()) + (f" ({self.roles(arg)})" if arg else "")
            return _ruled(f"**{title}.**{_sep(body)}{body}")
        if name == "exercise":
            n = len(self.exercises) + 1
            if "label" in options:
                self.exercises[options["label"]] = n
            title = f"Exercise {n}" + (f" ({self.roles(arg)})" if arg else "")
            return f"**{title}.**{_sep(body)}{body}"
        if name == "solution":
            n = self.exercises.get(arg.strip())
            what = f"exercise {n}" if n else self.labels.text(arg.strip(), self.md.stem)
            return f"<details>\n<summary>Solution to {what}</summary>\n\n{body}\n\n</details>"
        if name == "admonition" or name in ADMONITIONS:
            title = self.roles(arg) if name == "admonition" else name.title()
            return (_ruled if DISPLAY_MATH.search(body) else _quote)(f"**{title}**\n\n{body}")
        if name in ("math",):
            return f"$$\n{body}\n$$"
        if name in ("code-block", "code", "sourcecode"):
            return f"```{arg}\n{body}\n```"
        if name in ("figure", "image"):
            alt = options.get("alt", "")
            return f"![{alt}]({arg})" + (f"\n\n*{body}*" if body else "")
        raise ValueError(f"{self.md.name}: no plain-markdown form for the directive {{{name}}}")

    def listing(self, path: str, options: dict) -> str:
        src = (self.md.parent / path).resolve()
        rel = src.relative_to(ROOT).as_posix()
        unknown = set(options) - {"pyobject", "language", *EXCERPT_OPTIONS}
        if unknown:
            raise ValueError(f"{self.md.name}: literalinclude options {sorted(unknown)} not supported here")
        try:
            numbered = excerpt(src, options)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{self.md.name}: literalinclude {path}: {e}") from None
        first, last = numbered[0][0], numbered[-1][0]
        what = ""
        if "pyobject" in options:
            part = set(options) & set(EXCERPT_OPTIONS)
            what = f"{'from ' if part else ''}`{options['pyobject']}` in "
        code = "\n".join(line for _, line in numbered)
        lang = options.get("language", "python" if rel.endswith(".py") else "")
        return (f"{what}[`{rel}`]({self.p.source(rel, (first, last))}) (release `{self.p.release}`):\n\n"
                f"```{lang}\n{code}\n```")

    def convert(self, text: str) -> str:
        lines, out, i = text.split("\n"), [], 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                if not re.match(r"^\(\S+\)=\s*$", lines[i]) and not lines[i].startswith("% "):
                    out.append(self.roles(lines[i]))
                i += 1
                continue
            indent, fence, name, arg = m.groups()
            close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
            j, options = i + 1, {}
            if j < len(lines) and lines[j].strip() == "---":  # YAML options block
                k = lines.index("---", j + 1) if "---" in lines[j + 1:] else j
                import yaml
                options = yaml.safe_load("\n".join(lines[j + 1:k])) or {}
                j = k + 1
            while j < len(lines) and re.match(r"^\s*:[\w-]+:", lines[j]):
                key, _, value = lines[j].strip()[1:].partition(":")
                options[key] = value.strip()
                j += 1
            body, depth = [], 0  # depth: fences opened inside the body (with an info string) and not closed
            while j < len(lines) and not (close.match(lines[j]) and depth == 0):
                if re.match(r"^\s*(`{3,}|:{3,})\s*\S", lines[j]):
                    depth += 1
                elif close.match(lines[j]) or re.match(r"^\s*(`{3,}|:{3,})\s*$", lines[j]):
                    depth -= 1
                body.append(lines[j][len(indent):])
                j += 1
            if j >= len(lines):
                raise ValueError(f"{self.md.name}: unclosed directive {{{name}}}")
            converted = self.directive(name, arg, options, "\n".join(body).strip("\n"))
            out += [indent + line if line else line for line in converted.split("\n")]
            i = j + 1
        return "\n".join(out)


DISPLAY_MATH = re.compile(r"\$\$|\\begin\{")


def _ruled(text: str) -> str:
    """A block between two horizontal rules (how a theorem, or an admonition holding display math, stands
    apart without a quote: JupyterLab shows a quote's ">" inside display math)."""
    return f"---\n\n{text}\n\n---"


def format_glue(text: str, spec: str) -> str:
    """A glued value's ``text/plain`` as ``{glue:text}`key:spec``` shows it (myst_nb's format_plain_text):
    the literal evaluated when it is one (quotes dropped), then formatted by ``spec``'s type."""
    import ast
    try:
        value = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if spec == "":
        return str(value)
    kind = spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def _escape(text: str) -> str:
    """Plain text that Jupyter's markdown shows as it is (no emphasis, math, code or HTML)."""
    return re.sub(r"([\\`*_$<>\[\]|])", r"\\\1", text)


def glued_values(ipynb: Path) -> dict[str, str]:
    """``name → text/plain`` of every value glued in an executed notebook (myst_nb's glue outputs)."""
    if not ipynb.exists():
        return {}
    values = {}
    for cell in nbformat.read(ipynb, as_version=4).cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            sb = out.get("metadata", {}).get("scrapbook")
            if sb and "name" in sb:
                data = out.get("data", {})
                prefix = sb.get("mime_prefix", "")
                plain = next((data[prefix + m] for m in ("text/markdown", "text/plain") if prefix + m in data), None)
                if plain is not None:
                    values[sb["name"]] = "".join(plain) if isinstance(plain, list) else plain
    return values


def figure_text(conv: "Converter", metadata: dict) -> str | None:
    """The caption and alt text of a code cell's figure (``mystnb: {figure: {caption}, image: {alt}}``) as
    markdown, or None when the cell has neither."""
    mystnb = metadata.get("mystnb", {}) or {}
    caption = ((mystnb.get("figure") or {}).get("caption") or "").strip()
    alt = ((mystnb.get("image") or {}).get("alt") or "").strip()
    if not caption and not alt:
        return None
    parts = [f"**Figure.** {conv.convert(' '.join(caption.split()))}"] if caption else []
    if alt:
        parts.append(f"<small>*Image description (alt text):* {conv.convert(' '.join(alt.split()))}</small>")
    return "\n\n".join(parts)


def _sep(body: str) -> str:
    """What goes between a bold title and its body: a paragraph break before a list, display or block."""
    return "\n\n" if re.match(r"\s*([-*+] |\d+\. |\$\$|```|>|\|)", body) else " "


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.split("\n"))


EXCERPT_OPTIONS = ("start-at", "start-after", "end-at", "end-before", "lines", "dedent")


def excerpt(path: Path, options: dict) -> list[tuple[int, str]]:
    """The lines ``{literalinclude}`` shows of ``path``, with their line numbers in the file, by Sphinx's
    rules: ``:pyobject:``, then ``:start-at:``/``:start-after:`` and ``:end-at:``/``:end-before:`` (the
    first line containing the text, within what is left), then ``:lines:`` (counted in what is left, as
    ``1-3,5,8-``), then ``:dedent:`` (that many columns, or the common indent when given no number)."""
    numbered = list(enumerate(path.read_text().splitlines(), 1))
    if "pyobject" in options:
        first, last = source_link.pyobject_lines(path, options["pyobject"])
        numbered = numbered[first - 1:last]
    for at, after, start in (("start-at", "start-after", True), ("end-at", "end-before", False)):
        key = at if at in options else after if after in options else None
        if key is None:
            continue
        k = next((i for i, (_, line) in enumerate(numbered) if options[key] in line), None)
        if k is None:
            raise ValueError(f":{key}: {options[key]!r} not found")
        numbered = numbered[k + (key == after):] if start else numbered[:k + (key == at)]
    if "lines" in options:
        keep = []
        for part in str(options["lines"]).split(","):
            a, dash, b = part.strip().partition("-")
            lo, hi = int(a or 1), (int(b) if b else len(numbered)) if dash else int(a)
            keep += range(lo - 1, min(hi, len(numbered)))
        numbered = [numbered[i] for i in keep]
    if "dedent" in options:
        text = [line for _, line in numbered]
        n = str(options["dedent"]).strip()
        width = int(n) if n else min((len(t) - len(t.lstrip()) for t in text if t.strip()), default=0)
        if any(t[:width].strip() for t in text):
            raise ValueError(f":dedent: {width} would cut code, not only indentation")
        numbered = [(i, t[width:]) for i, t in numbered]
    if not numbered:
        raise ValueError(f"the options {options} leave no lines")
    return numbered


def glue_cells(nb) -> dict[str, int]:
    """``name → index`` of the (first) code cell that glues ``name``; an f-string name becomes a pattern."""
    found = {}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            # the name ends at its own closing quote (an f-string may hold the other kind inside braces)
            for f, _, name in re.findall(r"""\bglue\(\s*(f?)(["'])((?:(?!\2).)+)\2""", c.source):
                key = re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(name)) if f else name
                found.setdefault((f, key), i)
    return found


def colab_notebook(md: Path, p: Project, labels: Labels | None = None, root: Path = ROOT):
    """The chapter ``md`` as a notebook for Jupyter and Colab (no outputs; deterministic)."""
    labels = labels or Labels.of(chapters(root))
    bib = Bibliography(md.parent / "references.bib")
    src = jupytext.read(md)
    conv = Converter(md, p, labels, bib, glue_cells(src), glued_values(md.with_suffix(".ipynb")))
    cells = []
    for i, c in enumerate(src.cells):
        if c.cell_type == "code":
            cell = nbformat.v4.new_code_cell(c.source)
            if c.metadata.get("tags"):
                cell.metadata["tags"] = list(c.metadata["tags"])
        else:
            cell = nbformat.v4.new_markdown_cell(conv.cell_markdown(i, c.source))
        cells.append(cell)
        if c.cell_type == "code":  # a figure's caption and alt text, right after its code
            conv.cell = i
            figure = figure_text(conv, c.metadata)
            if figure:
                cells.append(nbformat.v4.new_markdown_cell(figure))
        if i == 0:
            cells.append(nbformat.v4.new_markdown_cell(
                f"*This notebook is generated from `book/{md.name}` of [dcprivacy]({p.repository}) at release "
                f"`{p.release}`; the rendered chapter, with the outputs of a run, is at "
                f"<{p.site}/book/{md.stem}.html>. On Colab choose *Runtime → Change runtime type → T4 GPU* "
                f"before you run it; the first code cell installs the package.*"))
    if bib.cited:
        cells.append(nbformat.v4.new_markdown_cell(bib.references()))
    for k, cell in enumerate(cells):
        cell.id = f"{md.stem[:2]}-{k:03d}"
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": [], "gpuType": "T4", "name": f"{md.stem}.ipynb"},
    })
    return nb


def notebook_text(nb) -> str:
    return nbformat.writes(nb) + "\n"


# ----------------------------------------------------------------------------------------------------------

def outputs(root: Path = ROOT, notebooks: bool = True) -> dict[Path, str]:
    """Every file this script writes, with the content it should have (without ``notebooks``: all but the
    Colab notebooks, which read glued values from the executed chapters)."""
    p = project(root)
    files = {root / "_config.yml": config_text((root / "_config.yml").read_text(), p),
             root / "README.md": readme_text((root / "README.md").read_text(), p, root)}
    pages = root / ".github" / "workflows" / "pages.yml"
    if pages.exists():
        files[pages] = pages_text(pages.read_text(), p)
    mds = chapters(root)
    for md in mds:
        files[md] = chapter_text(md, p)
    if not notebooks:
        return files
    labels = Labels.of(mds)
    for md in mds:
        files[root / NOTEBOOKS / f"{md.stem}.ipynb"] = notebook_text(colab_notebook(md, p, labels, root))
    return files


def stale(root: Path = ROOT) -> list[Path]:
    files = outputs(root)
    ours = set(files)
    extra = [f for f in (root / NOTEBOOKS).glob("*.ipynb") if f not in ours]
    return [f for f, text in files.items() if not f.exists() or not same_text(f.read_text(), text)] + extra


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    ap.add_argument("--sources", action="store_true",
                    help="only the chapters and the copies of [tool.dcprivacy], not notebooks/: what must be right "
                         "before the chapters are executed (a chapter that glues a new value cannot be made into "
                         "its Colab notebook until it has run)")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for f in bad:
            print(f"out of date: {f.relative_to(ROOT)}", file=sys.stderr)
        if bad:
            print("run `python tools/notebooks.py` and commit the result", file=sys.stderr)
        return 1 if bad else 0
    # the chapters first: the notebooks are made from them
    p = project()
    for md in chapters():
        text = chapter_text(md, p)
        if not same_text(md.read_text(), text):
            md.write_text(text)
            print(f"wrote {md.relative_to(ROOT)}")
    files = outputs(notebooks=not args.sources)
    (ROOT / NOTEBOOKS).mkdir(exist_ok=True)
    for f in [] if args.sources else (ROOT / NOTEBOOKS).glob("*.ipynb"):
        if f not in files:
            f.unlink()
            print(f"removed {f.relative_to(ROOT)}")
    for f, text in files.items():
        if not f.exists() or not same_text(f.read_text(), text):
            f.write_text(text)
            print(f"wrote {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
