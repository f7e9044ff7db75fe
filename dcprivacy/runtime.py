"""The note each chapter opens with: how long it takes, which profile is running, how to pick another.

The times are the cost model's predictions (:func:`dcprivacy.cost.chapter_minutes`) for the chapter opened
by itself on a fresh runtime: the ``quick`` profile on a 2-core CPU (the machine the cost model is fitted
to) and the ``standard`` profile on a T4 (Colab's free GPU).
"""
from __future__ import annotations

from . import cost
from .config import PROFILE_NAMES, default_device, profile_name

SETTINGS = (("quick", "cpu", "on 2 CPU cores"), ("standard", "t4", "on a T4, Colab's free GPU"))


def minutes_text(minutes: float) -> str:
    """``minutes`` as a reader reads a prediction: under a minute, about N minutes, about N hours."""
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        m = round(minutes)
        return f"about {m} minute{'s' if m != 1 else ''}"
    return f"about {minutes / 60:.1f} hours"


def _prediction(stem: str, profile: str, device: str, where: str) -> str:
    """``about N minutes in `profile` <where>``, and on a device whose constants are assumed, how long the
    chapter may take if the device is slower (cost.PESSIMISTIC_EFFICIENCY)."""
    point = cost.chapter_minutes(stem, profile, device)
    slow = cost.chapter_minutes(stem, profile, device, pessimistic=True)
    text = f"{minutes_text(point)} in `{profile}` {where}"
    if round(slow) > round(point) and slow >= 1:
        text += f" (up to {minutes_text(slow).removeprefix('about ')} if it runs slower than assumed)"
    return text


def runtime_note(stem: str) -> str:
    """The note, as markdown, for chapter ``stem`` (``"01-tour"``)."""
    if stem not in cost.CHAPTERS:
        raise ValueError(f"no chapter {stem!r} in the cost model: one of {', '.join(cost.CHAPTERS)}")
    times = "; ".join(_prediction(stem, profile, device, where) for profile, device, where in SETTINGS)
    names = ", ".join(f"`{p}`" for p in PROFILE_NAMES)
    return (f"**Running this chapter.** Predicted time, opened by itself: {times}. "
            f"This run: the `{profile_name()}` profile on `{default_device().type}`. "
            f"A GPU selects `standard` by itself (on Colab: *Runtime → Change runtime type → T4 GPU*), a CPU "
            f"`quick`. To choose one of {names}: edit and re-run the setup cell (the next code cell) — "
            f"uncomment its first line, `%env DCPRIVACY_PROFILE=quick`, and name the profile — then run the "
            f"cells after it. The setup cell reads the profile, and every size comes from it.")


def chapter_note(stem: str):
    """Display :func:`runtime_note` as rendered markdown (in Jupyter, Colab and the book)."""
    from IPython.display import Markdown
    return Markdown(runtime_note(stem))
