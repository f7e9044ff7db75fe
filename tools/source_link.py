"""Sphinx extension: the role ``{source}`dcprivacy/train.py::_train_stacked``` links to a function's whole source.

A chapter shows the lines of a package function that carry the idea (a ``{literalinclude}`` of a small
function); the line under it links to the whole function on GitHub (``dcprivacy_repository``, written into
``_config.yml`` by ``tools/notebooks.py`` from ``[tool.dcprivacy]`` in ``pyproject.toml``). The link opens the
commit being built — ``$GITHUB_SHA`` in a workflow, else the checkout's ``HEAD`` (:func:`source_ref`) — because
its line numbers are computed from the files being built: at the release tag they would point at the wrong
lines as soon as the branch moves on. Only without git does it fall back to the release
(``dcprivacy_colab_ref``). ``{source}`text <path::name>``` sets the link's text; without a name the link goes
to the whole file. The function's lines are found by parsing the file (the site's build imports neither the
package nor PyTorch); ``tools/notebooks.py`` turns the role into a link at the release for the notebooks,
whose lines are those of the files it reads: the notebooks of a release are generated at its commit.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

from docutils import nodes


def pyobject_lines(path: Path, name: str) -> tuple[int, int]:
    """First and last line of a top-level function or class (or ``Class.method``), decorators included."""
    nodes_ = ast.parse(path.read_text()).body
    node = None
    for part in name.split("."):
        node = next((n for n in nodes_ if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            raise KeyError(f"{path.name} has no {name}")
        nodes_ = node.body
    return min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno


def parse(text: str) -> tuple[str | None, str, str]:
    """``"title <path::name>"`` or ``"path::name"`` → (title or None, path, name or "")."""
    m = re.fullmatch(r"(.*?)\s*<([^<>]+)>", text.strip(), re.S)
    title, target = (m.group(1), m.group(2)) if m else (None, text.strip())
    path, _, name = target.partition("::")
    return title, path.strip(), name.strip()


def url(repository: str, ref: str, path: str, lines: tuple[int, int] | None = None) -> str:
    return f"{repository.rstrip('/')}/blob/{ref}/{path}" + (f"#L{lines[0]}-L{lines[1]}" if lines else "")


def source_ref(srcdir: Path | str, fallback: str = "") -> str:
    """The commit being built: ``$GITHUB_SHA`` (a GitHub workflow), else ``git rev-parse HEAD`` in ``srcdir``,
    else ``fallback`` (the release)."""
    sha = os.environ.get("GITHUB_SHA", "").strip()
    if re.fullmatch(r"[0-9a-f]{40}", sha):
        return sha
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=srcdir, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return head if re.fullmatch(r"[0-9a-f]{40}", head) else fallback


def ref_of(config) -> str:
    """The ref the links open: the commit being built (:func:`source_ref`, found once per build), else the
    release the Colab buttons open (tools/colab_button.py)."""
    return getattr(config, "dcprivacy_source_ref", "") or getattr(config, "dcprivacy_colab_ref", "") or ""


def _set_source_ref(app, config):
    if not config.dcprivacy_source_ref:
        config.dcprivacy_source_ref = source_ref(app.srcdir, getattr(config, "dcprivacy_colab_ref", "") or "")


def source_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    env = inliner.document.settings.env
    config = env.app.config
    title, path, obj = parse(text)
    file = Path(env.app.srcdir) / path
    if not config.dcprivacy_repository or not ref_of(config):
        msg = inliner.reporter.error("dcprivacy_repository / dcprivacy_colab_ref are not set: run "
                                     "`python tools/notebooks.py`", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    try:
        lines = pyobject_lines(file, obj) if obj else None
    except (OSError, KeyError, SyntaxError) as e:
        msg = inliner.reporter.error(f"{{source}}`{text}`: {e}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    env.note_dependency(str(file))
    label = nodes.Text(title) if title else nodes.literal(text=obj or path)
    ref = nodes.reference(rawtext, "", label, refuri=url(config.dcprivacy_repository, ref_of(config), path, lines))
    return [ref], []


def setup(app):
    app.add_config_value("dcprivacy_repository", "", "html")
    app.add_config_value("dcprivacy_source_ref", "", "html")  # set at config-inited: the commit being built
    app.connect("config-inited", _set_source_ref)
    app.add_role("source", source_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
