"""Provenance for every result the package writes: which code, machine, libraries, config and seed.

A number in ``results/`` is only worth showing next to a paper's if one can tell what produced it.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

_LIBS = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "opacus", "dcprivacy")


def git_commit(path: str | Path | None = None) -> str:
    """The commit of the checkout holding this package (with ``+dirty`` if it has changes outside ``results/``)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=where,  # results written since do not count
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device | str | None = None) -> str:
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def command_line(argv: list[str] | None = None) -> list[str]:
    """The command that produced a result, without the paths of the machine it ran on."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return []
    head = Path(argv[0])
    if head.name == "__main__.py" and head.parent.name == "dcprivacy":
        return ["python", "-m", "dcprivacy", *argv[1:]]
    return [head.name, *argv[1:]]


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def _plain(obj):
    if is_dataclass(obj):
        return asdict(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a JSON result")


def current_profile() -> str:
    """The active profile's name as a record states it (the raw variable if it names no profile)."""
    from .config import profile_name
    try:
        return profile_name()
    except ValueError:
        return os.environ.get("DCPRIVACY_PROFILE", "")


def provenance(*, config=None, seed=None, device=None, started: float | None = None,
               command: list[str] | None = None) -> dict:
    """The provenance block of a result (``started``: ``time.time()`` when the work began)."""
    profile = current_profile()
    return {
        "commit": git_commit(),
        "device": device_description(device),
        "versions": library_versions(),
        "profile": profile,
        "config": as_json(config) if config is not None else None,
        "seed": seed,
        "wall_time_s": None if started is None else round(time.time() - started, 3),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else command_line(),
    }


def as_json(obj):
    """``obj`` as it reads back from a JSON record (dataclasses, tensors, tuples and paths made plain)."""
    return json.loads(json.dumps(obj, default=_plain))


def record(result: dict, **prov) -> dict:
    """``result`` with a ``provenance`` block (see :func:`provenance`), ready for JSON."""
    return json.loads(json.dumps({**result, "provenance": provenance(**prov)}, default=_plain))


def write_json(path: str | Path, result: dict, **prov) -> Path:
    """Write ``result`` with a ``provenance`` block to ``path`` (folders are created; atomically:
    a temporary file in the same folder renamed into place)."""
    from .files import write_json as atomic_write_json
    return atomic_write_json(path, record(result, **prov))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def results_dir() -> Path:
    """Where full-scale results live: ``$DCPRIVACY_RESULTS``, else ``results/`` beside the package."""
    env = os.environ.get("DCPRIVACY_RESULTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "results"


# The repository's results/ as the wheel ships it (pyproject.toml: the package dcprivacy._data is results/)
SHIPPED_RESULTS = Path(__file__).resolve().parent / "_data"


def records_dir(sub: str = "") -> Path:
    """The folder ``sub`` of the recorded results that pages and predictions read (``bench``: the benchmark
    records, ``timings``: chapter times and the cost model's calibration, ``condensation``, ...): under
    :func:`results_dir` when it is there (a checkout), else under ``results/`` beside the package, else the
    copy of ``results/`` shipped inside the installed package (``dcprivacy/_data``: a wheel, e.g. on Colab,
    reads the same records as the checkout it was built from). Writing goes to :func:`results_dir`."""
    for base in (results_dir(), Path(__file__).resolve().parent.parent / "results", SHIPPED_RESULTS):
        if (base / sub).is_dir():
            return base / sub
    return results_dir() / sub
