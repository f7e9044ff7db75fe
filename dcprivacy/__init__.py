"""dcprivacy: does dataset condensation give privacy for free? The code behind the book."""
from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = ("config", "data", "nets", "augment", "train", "condense", "theory", "mia", "metrics",
               "dp", "plots", "provenance", "files", "checks", "cli", "bench")


def __getattr__(name):  # lazy: `import dcprivacy` stays fast; `dcprivacy.data` loads on first use
    if name in _SUBMODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_SUBMODULES)
