"""Figures the chapters share: image grids, log-log ROC curves, scaling plots."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchvision.utils import make_grid


def image_grid(images: torch.Tensor, *, nrow: int = 10, dataset=None, ax=None, title: str | None = None,
               row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None):
    """Show ``images`` [N, C, H, W] in a grid; ``dataset`` (a :class:`~dcprivacy.data.Dataset`) undoes
    the normalisation, else each image is min-max scaled on its own."""
    images = images.detach().float().cpu()
    if dataset is not None:
        shown = dataset.denormalize(images)
    else:
        lo = images.flatten(1).min(1).values.view(-1, 1, 1, 1)
        hi = images.flatten(1).max(1).values.view(-1, 1, 1, 1)
        shown = (images - lo) / (hi - lo).clamp_min(1e-8)
    grid = make_grid(shown, nrow=nrow, padding=2, pad_value=1.0)
    if ax is None:
        rows = int(np.ceil(len(images) / nrow))
        _, ax = plt.subplots(figsize=(0.9 * nrow + 1, 0.9 * rows + 0.6))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if images.shape[1] == 1 else None,
              interpolation="nearest")
    h, w = images.shape[-2:]
    ax.set_xticks([] if col_labels is None else [2 + (w + 2) * i + w / 2 for i in range(len(col_labels))])
    ax.set_yticks([] if row_labels is None else [2 + (h + 2) * i + h / 2 for i in range(len(row_labels))])
    if col_labels is not None:
        ax.set_xticklabels(col_labels, rotation=45, ha="left")
        ax.xaxis.tick_top()
    if row_labels is not None:
        ax.set_yticklabels(row_labels)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def roc_loglog(curves: dict, *, ax=None, title: str | None = None, fpr_min: float = 1e-5, bound=None):
    """Log-log ROC curves: ``curves`` maps a label to ``(fpr, tpr)`` arrays (e.g. from
    :func:`dcprivacy.metrics.roc`). ``bound``: optional ``(fpr, tpr)`` of a guarantee to draw."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    grid = np.logspace(np.log10(fpr_min), 0, 200)
    ax.plot(grid, grid, ls=":", color="gray", label="chance")
    if bound is not None:
        ax.plot(*bound, ls="--", color="black", label="bound")
    for label, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr), np.asarray(tpr)
        ax.plot(np.clip(fpr, fpr_min, 1), np.clip(tpr, fpr_min, 1), label=label)
    ax.set(xscale="log", yscale="log", xlim=(fpr_min, 1), ylim=(fpr_min, 1),
           xlabel="false positive rate", ylabel="true positive rate")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def fit_loglog(x, y) -> tuple[float, float]:
    """Least-squares slope and intercept of log y against log x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(intercept)


def scaling_plot(x, y, *, ax=None, label: str = "", yerr=None, fit: bool = True, xlabel: str = "",
                 ylabel: str = "", marker: str = "o"):
    """``y`` against ``x`` on log-log axes, with the fitted power law in the legend.

    Returns ``(ax, slope)`` (``slope`` is None without ``fit``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    x, y = np.asarray(x, float), np.asarray(y, float)
    line = ax.errorbar(x, y, yerr=yerr, marker=marker, ls="none", capsize=3)
    slope = None
    if fit:
        slope, intercept = fit_loglog(x, y)
        xs = np.geomspace(x.min(), x.max(), 50)
        ax.plot(xs, np.exp(intercept) * xs ** slope, color=line[0].get_color(), alpha=0.7,
                label=f"{label} slope {slope:+.2f}".strip())
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if fit or label:
        ax.legend(fontsize="small")
    return ax, slope


def mean_std_plot(x, values, *, ax=None, label: str = "", xlabel: str = "", ylabel: str = "",
                  logx: bool = False):
    """Mean ± std of ``values`` [len(x), repeats] against ``x``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    v = np.asarray(values, float)
    ax.errorbar(x, v.mean(1), yerr=v.std(1), marker="o", capsize=3, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    if label:
        ax.legend(fontsize="small")
    return ax


def glue(name: str, value, display: bool = False):
    """Store ``value`` under ``name`` for the book's prose (``{glue:text}`name``` in MyST).

    Outside a Jupyter Book build (e.g. on Colab, where ``myst_nb`` is absent) the value is printed.
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars → Python
        value = value.item()
    try:
        from myst_nb import glue as _glue
    except ImportError:
        print(f"{name} = {value}")
        return
    _glue(name, value, display=display)
