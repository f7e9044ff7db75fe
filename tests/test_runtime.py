"""The runtime note each chapter opens with: the cost model's predictions and how to pick a profile."""
import re
from pathlib import Path

import jupytext
import pytest

from dcprivacy import cost
from dcprivacy.runner import chapter_sources
from dcprivacy.runtime import chapter_note, minutes_text, runtime_note

BOOK = Path(__file__).resolve().parent.parent / "book"


def test_minutes_read_as_a_reader_reads_them():
    assert minutes_text(0.4) == "under a minute"
    assert minutes_text(1.2) == "about 1 minute" and minutes_text(14.6) == "about 15 minutes"
    assert minutes_text(150) == "about 2.5 hours"


@pytest.mark.parametrize("stem", sorted(cost.CHAPTERS))
def test_note_gives_the_cost_models_predictions(stem, monkeypatch):
    monkeypatch.setenv("DCPRIVACY_PROFILE", "quick")
    note = runtime_note(stem)
    assert f"{minutes_text(cost.chapter_minutes(stem, 'quick', 'cpu'))} in `quick` on 2 CPU cores" in note
    assert f"{minutes_text(cost.chapter_minutes(stem, 'standard', 't4'))} in `standard` on a T4" in note
    slow = cost.chapter_minutes(stem, "standard", "t4", pessimistic=True)
    assert (f"up to {minutes_text(slow).removeprefix('about ')} if it runs slower" in note) == (
        round(slow) > round(cost.chapter_minutes(stem, "standard", "t4")) and slow >= 1)
    assert "the `quick` profile" in note and "%env DCPRIVACY_PROFILE=" in note and "re-run the setup cell" in note
    assert chapter_note(stem).data == note


def test_unknown_chapter_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="01-tour"):
        runtime_note("99-nope")


def test_every_chapter_opens_with_its_note():
    for md in chapter_sources(BOOK):
        code = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
        assert re.search(rf'chapter_note\("{md.stem}"\)', code[1].source), md.name
        assert "remove-input" in code[1].metadata.get("tags", []), md.name
