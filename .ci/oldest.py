"""Print pip constraints that hold the package's dependencies (and its `dp` extra) to the oldest versions
pyproject.toml declares: `numpy>=1.24` becomes `numpy==1.24.*` (the newest patch of the declared minimum).
The `oldest` job of .github/workflows/ci.yml installs with them and runs the unit tests, so that a declared
minimum the code has outgrown fails CI instead of a reader's install.

    python .ci/oldest.py > oldest.txt && pip install -c oldest.txt -e ".[dp,test]"
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

EXTRAS = ("dp",)  # the extras the package's own code imports


def oldest(requirement: str) -> str | None:
    """``name==X.*`` for a requirement with a lower bound ``>=X`` (None without one)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;.*)?", requirement)
    if not m:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name, specs = m.groups()
    lows = [s.strip()[2:].strip() for s in specs.split(",") if s.strip().startswith(">=")]
    return f"{name}=={lows[0]}.*" if lows else None


def constraints(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in EXTRAS for r in project["optional-dependencies"][e]]
    return [c for c in map(oldest, reqs) if c]


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    print("\n".join(constraints(root / "pyproject.toml")))
