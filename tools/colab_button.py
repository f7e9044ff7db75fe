"""Sphinx extension: the Colab button of a chapter opens its generated notebook, not its MyST source.

sphinx-book-theme builds the Colab link from the page's own path (``book/NN-name.ipynb`` on the site's
branch): the executed notebook, whose markdown is MyST that Colab shows raw. This hook, run after the
theme's, points the link at ``notebooks/NN-name.ipynb`` at the release ``dcprivacy_colab_ref``
(written into ``_config.yml`` by ``tools/notebooks.py``), the same release that notebook installs.
Pages without a generated notebook lose the button.
"""
from __future__ import annotations

from pathlib import Path

from sphinx.util import logging

LOGGER = logging.getLogger(__name__)
FOLDER = "notebooks"


def _colab_buttons(context):
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if isinstance(group, dict) else []:
            if button.get("text") == "Colab":
                yield group, button


def point_colab_at_generated_notebooks(app, pagename, templatename, context, doctree):
    buttons = list(_colab_buttons(context))
    if not buttons:
        return
    root = Path(app.srcdir)
    notebook = Path(FOLDER) / (Path(pagename).name + ".ipynb")
    ref = app.config.dcprivacy_colab_ref
    if not ref:
        LOGGER.warning("dcprivacy_colab_ref is not set: run `python tools/notebooks.py`")
        return
    for group, button in buttons:
        if not (root / notebook).exists():
            group["buttons"].remove(button)
            continue
        head, _, _ = button["url"].partition("/blob/")  # https://colab.research.google.com/github/OWNER/NAME
        button["url"] = f"{head}/blob/{ref}/{notebook.as_posix()}"
        button["tooltip"] = "Open this chapter as a notebook on Colab"


def setup(app):
    app.add_config_value("dcprivacy_colab_ref", "", "html")
    # sphinx-book-theme adds its launch buttons at priority 501; run after it
    app.connect("html-page-context", point_colab_at_generated_notebooks, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
