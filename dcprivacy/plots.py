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


def _value_err(point: dict, key: str):
    """``point[key]`` and its error bar: from ``<key>_ci`` (low, high) or ``<key>_std``, else none."""
    if key not in point:
        raise ValueError(f"no {key!r} in {sorted(point)}: pass x=/y= naming keys every point has")
    v, ci, std = float(point[key]), point.get(f"{key}_ci"), point.get(f"{key}_std")
    if ci is not None:
        return v, [[max(v - ci[0], 0.0)], [max(ci[1] - v, 0.0)]]
    return v, (None if std is None else float(std))


def _chance(key: str):
    """What guessing scores for a metric of :func:`dcprivacy.metrics.summary`."""
    if key in ("auc", "balanced_accuracy"):
        return 0.5
    return float(key[4:]) if key.startswith("tpr@") else None


def _metric_label(key: str) -> str:
    if key.startswith("tpr@"):
        return f"TPR at {100 * float(key[4:]):g}% FPR"
    return {"auc": "AUC", "accuracy": "test accuracy"}.get(key, key.replace("_", " "))


def privacy_utility(points: dict, *, x: str = "accuracy", y: str = "tpr@0.001", ax=None, chance="auto",
                    logy: bool | None = None, xlabel: str | None = None, ylabel: str | None = None,
                    title: str | None = None):
    """Privacy against utility: one point per label, with error bars.

    ``points`` maps a label to a dict holding ``x`` and ``y`` (e.g. a
    :func:`dcprivacy.metrics.summary` with ``accuracy`` added); ``<key>_ci`` = (low, high) or
    ``<key>_std`` gives a key's error bar. ``chance``: a y value drawn as a dotted line ("auto":
    0.5 for AUC and balanced accuracy, the FPR itself for ``tpr@<fpr>``; None: no line). ``logy``
    defaults to log for ``tpr@…``, where attacks differ by orders of magnitude."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    logy = y.startswith("tpr@") if logy is None else logy
    for label, point in points.items():
        xv, xerr = _value_err(point, x)
        yv, yerr = _value_err(point, y)
        ax.errorbar([xv], [max(yv, 1e-6) if logy else yv], xerr=xerr, yerr=yerr, marker="o", capsize=3,
                    ls="none", label=label)
    line = _chance(y) if chance == "auto" else chance
    if line is not None:
        ax.axhline(line, ls=":", color="gray", label="chance")
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel or _metric_label(x), ylabel=ylabel or _metric_label(y))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def score_distributions(in_scores, out_scores, *, target: float | None = None, ax=None, bins: int = 30,
                        fit: bool = True, title: str | None = None, xlabel: str = "logit-scaled confidence φ"):
    """LiRA for one example: histograms of its scores on shadow models trained with it (IN) and
    without it (OUT), the Gaussians fitted to each (median, std, as :func:`dcprivacy.mia.lira` does)
    and, when given, the target model's score as a vertical line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    groups = {"IN": np.asarray(in_scores, float).ravel(), "OUT": np.asarray(out_scores, float).ravel()}
    lo = min(g.min() for g in groups.values() if g.size)
    hi = max(g.max() for g in groups.values() if g.size)
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else bins
    grid = np.linspace(lo - 0.1 * (hi - lo + 1), hi + 0.1 * (hi - lo + 1), 300)
    for (name, v), color in zip(groups.items(), ("C3", "C0")):
        if not v.size:
            continue
        ax.hist(v, bins=edges, density=True, alpha=0.4, color=color, label=f"{name} ({v.size} models)")
        if fit and v.size >= 2 and v.std() > 0:
            mu, sd = np.median(v), v.std()
            ax.plot(grid, np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), color=color)
    if target is not None:
        ax.axvline(float(target), color="black", ls="--", label="target")
    ax.set(xlabel=xlabel, ylabel="density")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax
