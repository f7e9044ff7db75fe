"""Record the chapter times of a whole-book run: ``results/timings/book-<profile>-<device>.json``.

``tools/book.sh`` calls ``python -m dcprivacy.timings FILE`` after executing every chapter in order,
with FILE holding one ``<chapter stem> <seconds>`` line per chapter. The cost model
(:mod:`dcprivacy.cost`) is fitted to, and tested against, the latest such record
(``python -m dcprivacy cost --fit``).
"""
from __future__ import annotations

import sys
from pathlib import Path


def device_key() -> str:
    """The cost model's name for this machine: ``t4`` or ``h200`` by the CUDA device's name, ``cuda`` for
    another GPU, else ``cpu``."""
    import torch
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    return next((k for k in ("t4", "h200") if k in name), "cuda")


def record(lines: list[str], *, profile: str | None = None, device: str | None = None) -> Path:
    """Write the per-chapter seconds of ``lines`` (``"<stem> <seconds>"``) with provenance; the path."""
    from .config import profile_name
    from .provenance import results_dir, write_json
    chapters = {}
    for line in lines:
        if line.strip():
            stem, seconds = line.split()
            chapters[stem] = float(seconds)
    if not chapters:
        raise ValueError("no chapter times to record: expected lines '<chapter stem> <seconds>'")
    profile = profile or profile_name()
    device = device or device_key()
    result = {"profile": profile, "device": device, "chapters": chapters, "total_seconds": sum(chapters.values()),
              "source": "a whole-book run of tools/book.sh: every chapter executed in order with jupyter execute "
                        "(chapters 5 and 8 reuse chapter 4's cached experiment)"}
    return write_json(results_dir() / "timings" / f"book-{profile}-{device}.json", result,
                      config={"command": "bash tools/book.sh"})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m dcprivacy.timings FILE  (lines '<chapter stem> <seconds>')")
    print(f"recorded {record(Path(sys.argv[1]).read_text().splitlines())}")
