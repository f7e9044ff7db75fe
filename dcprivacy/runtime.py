"""The note each chapter opens with: how long it takes, which profile is running, how to pick another.

The times are the cost model's predictions (:func:`dcprivacy.cost.chapter_minutes`) for the chapter opened
by itself on a fresh runtime: the ``quick`` profile on a 2-core CPU (the machine the cost model is fitted
to) and the ``standard`` profile on a T4 (Colab's free GPU), on the active dataset
(``DCPRIVACY_DATASET``); the note also gives the other dataset's ``standard`` time on a T4 and how to
switch to it (``standard`` is sized for a T4 on both).
"""
from __future__ import annotations

from . import cost
from .config import PROFILE_NAMES, default_device, profile_name
from .data import INFO, dataset_name

SETTINGS = (("quick", "cpu", "on 2 CPU cores"), ("standard", "t4", "on a T4 GPU (Colab's free GPU)"))


def minutes_text(minutes: float) -> str:
    """``minutes`` as a reader reads a prediction: under a minute, about N minutes, about N hours."""
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        m = round(minutes)
        return f"about {m} minute{'s' if m != 1 else ''}"
    return f"about {minutes / 60:.1f} hours"


def runtime_note(stem: str) -> str:
    """The note, as markdown, for chapter ``stem`` (``"01-tour"``)."""
    if stem not in cost.CHAPTERS:
        raise ValueError(f"no chapter {stem!r} in the cost model: one of {', '.join(cost.CHAPTERS)}")
    dataset = dataset_name()
    times = "; ".join(f"{minutes_text(cost.chapter_minutes(stem, profile, device))} in `{profile}` {where}"
                      for profile, device, where in SETTINGS)
    names = ", ".join(f"`{p}`" for p in PROFILE_NAMES)
    other = next(d for d in INFO if d != dataset)
    switch = ("`%env DCPRIVACY_DATASET=cifar10`; torchvision downloads it" if other == "cifar10"
              else "`%env DCPRIVACY_DATASET=fashionmnist`, the book's own")
    return (f"**Running this chapter.** Predicted time, opened by itself, on {INFO[dataset].title}: {times}. "
            f"On {INFO[other].title} ({switch}): "
            f"{minutes_text(cost.chapter_minutes(stem, 'standard', 't4', dataset=other))} in `standard` on a T4 "
            f"(`standard` is sized to stay within {cost.BUDGET_MINUTES['standard', 't4'][stem]:.0f} minutes a chapter "
            f"on a T4, on either dataset). "
            f"This run: the `{profile_name()}` profile on `{default_device().type}`, {INFO[dataset].title}. "
            f"A GPU selects `standard` by itself (on Colab: *Runtime → Change runtime type → T4 GPU*), a CPU "
            f"`quick`. To choose one of {names}, run `%env DCPRIVACY_PROFILE=quick` (say) in a cell of its "
            f"own, then the chapter's cells from the next one on: every size is read from the profile when "
            f"a cell runs.")


def chapter_note(stem: str):
    """Display :func:`runtime_note` as rendered markdown (in Jupyter, Colab and the book)."""
    from IPython.display import Markdown
    return Markdown(runtime_note(stem))
