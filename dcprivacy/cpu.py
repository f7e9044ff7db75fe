"""CPU speed: let the memory allocator keep large freed blocks for reuse.

A ConvNet's first-layer activations are large: 64 images × 128 channels × 32 × 32 floats are 33 MB,
256 images 134 MB. glibc's ``malloc`` serves blocks that large with fresh ``mmap`` pages and unmaps
them on ``free``, so every normalisation, ReLU and pooling pass that writes a new activation first
page-faults all of it in, and the freed heap top is handed back to the OS as soon as it exceeds the
trim threshold. On the project's 2-core machine that made those memory-bound kernels several times
slower than with the blocks kept (``python -m dcprivacy bench evaluate`` and ``bench condense`` time
the commands with the setting in place; ``DCPRIVACY_CPU_ALLOCATOR=0`` turns it off to compare).

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds once per process (``mallopt``):
large blocks come from the heap and stay there for the next step. The cost is that the process keeps
its peak memory until it exits. On other C libraries (macOS, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_applied: bool | None = None


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds (bytes) once per process; ``True`` when in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("DCPRIVACY_CPU_ALLOCATOR", "1").strip() == "0":
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    return _applied
