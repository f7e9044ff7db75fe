"""Sphinx extension: the role ``{source}`dcprivacy/train.py::_train_stacked``` links to a function's whole source.

A chapter shows the lines of a package function that carry the idea (a ``{literalinclude}`` of a small
function); the line under it links to the whole function on GitHub, at the release the notebooks install
(``dcprivacy_repository`` and ``dcprivacy_colab_ref``, written into ``_config.yml`` by ``tools/notebooks.py``
from ``[tool.dcprivacy]`` in ``pyproject.toml``). ``{source}`text <path::name>``` sets the link's text;
without a name the link goes to the whole file. The function's lines are found by parsing the file (the
site's build imports neither the package nor PyTorch); ``tools/notebooks.py`` turns the role into the same
link for the notebooks.
"""
from __future__ import annotations

import ast
import re
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


def ref_of(config) -> str:
    """The release the links open: the one the Colab buttons open (tools/colab_button.py)."""
    return getattr(config, "dcprivacy_colab_ref", "") or ""


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
    app.add_role("source", source_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
