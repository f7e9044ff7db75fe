"""The chapter times of a whole-book run: written where they cannot change the repository, unless asked.

``tools/book.sh`` calls ``python -m dcprivacy.timings FILE`` after executing every chapter in order, with
FILE holding one ``<chapter stem> <seconds>`` line per chapter, and this module

- writes them, with provenance, to ``_build/timings/book-<profile>-<device>.json`` (``_build/`` is the
  book's build folder, ignored by git): a reader's run on a busy laptop changes neither ``git status``
  nor what the cost model is fitted to;
- with ``--record`` (``bash tools/book.sh --record``, or ``DCPRIVACY_RECORD_TIMINGS=1``), writes them to
  the committed record instead, ``results/timings/book-<profile>-<device>.json`` — what
  ``python -m dcprivacy cost --fit`` fits the constants to. Record only a run on a quiet machine;
- prints each chapter's time beside the cost model's prediction (:func:`dcprivacy.cost.compare`): a
  report for the reader, never a test. The tests check the model's arithmetic on fixed numbers and read
  no timing that a machine wrote.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout (tools/book.sh runs from it)


def device_key() -> str:
    """The cost model's name for this machine: ``t4`` or ``h200`` by the CUDA device's name, ``cuda`` for
    another GPU, else ``cpu``."""
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    return next((k for k in ("t4", "h200") if k in name), "cuda")


def local_dir() -> Path:
    """Where a whole-book run writes its times unless asked to record them: ``_build/timings/``."""
    return ROOT / "_build" / "timings"


def recording_requested() -> bool:
    """``DCPRIVACY_RECORD_TIMINGS`` set to 1/true/yes: record into ``results/timings/`` (as ``--record``)."""
    return os.environ.get("DCPRIVACY_RECORD_TIMINGS", "").strip().lower() in ("1", "true", "yes")


def parse(lines: list[str]) -> dict[str, float]:
    """``"<stem> <seconds>"`` lines → {stem: seconds} (one line error for anything else)."""
    chapters = {}
    for n, line in enumerate(lines, 1):
        if line.strip():
            parts = line.split()
            try:
                stem, seconds = parts
                chapters[stem] = float(seconds)
            except ValueError:
                raise ValueError(f"line {n} {line.strip()!r}: expected '<chapter stem> <seconds>'") from None
    if not chapters:
        raise ValueError("no chapter times to record: expected lines '<chapter stem> <seconds>'")
    return chapters


def record(lines: list[str], *, profile: str | None = None, device: str | None = None, commit: bool = False,
           folder: Path | None = None) -> Path:
    """Write the per-chapter seconds of ``lines`` (``"<stem> <seconds>"``) with provenance; the path.
    ``commit``: into the committed record (``results/timings/``), else into ``folder`` (default
    :func:`local_dir`)."""
    from .config import profile_name
    from .provenance import results_dir, write_json
    chapters = parse(lines)
    profile = profile or profile_name()
    device = device or device_key()
    result = {"profile": profile, "device": device, "chapters": chapters, "total_seconds": sum(chapters.values()),
              "source": "a whole-book run of tools/book.sh: every chapter executed in order with jupyter execute "
                        "(chapters 5 and 8 reuse chapter 4's cached experiment)"}
    where = results_dir() / "timings" if commit else Path(folder) if folder is not None else local_dir()
    return write_json(where / f"book-{profile}-{device}.json", result,
                      config={"command": "bash tools/book.sh" + (" --record" if commit else "")})


def report(chapters: dict[str, float], profile: str, device: str) -> str:
    """The measured times beside the cost model's predictions, as a table (for the reader; nothing asserts it)."""
    from . import cost
    if device not in cost.DEVICE_TABLE:
        return f"(the cost model has no constants for the device {device!r}: no prediction to compare with)"
    rows = cost.compare(chapters, profile, device)
    lines = [f"{'chapter':<26}{'measured s':>12}{'predicted s':>13}{'measured/predicted':>20}"]
    for stem, r in rows.items():
        lines.append(f"{stem:<26}{r['measured_seconds']:>12.0f}{r['predicted_seconds']:>13.0f}"
                     f"{r['measured_over_predicted']:>20.2f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--record"]
    if len(args) != 1:
        print("usage: python -m dcprivacy.timings FILE [--record]  (lines '<chapter stem> <seconds>'; --record: "
              "into results/timings/, the committed record)", file=sys.stderr)
        return 2
    commit = "--record" in argv or recording_requested()
    path = record(Path(args[0]).read_text().splitlines(), commit=commit)
    print(f"{'recorded' if commit else 'wrote'} {path}" + ("" if commit else
          " (not the committed record: `bash tools/book.sh --record` writes results/timings/)"))
    from .provenance import read_json
    r = read_json(path)
    print(report(r["chapters"], r["profile"], r["device"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
