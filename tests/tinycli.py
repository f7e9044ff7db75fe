"""``python tests/tinycli.py ARGS``: ``python -m dcprivacy ARGS`` at test sizes, for tests that need a real
process (to kill it, or to run a Slurm script).

- The active profile shrinks to ``TINY`` below (width 4, a few iterations and epochs).
- With ``TINYCLI_DATA=FILE`` the dataset is the small tensor file written by ``save_small_data`` (read
  with ``weights_only=True``) instead of the whole FashionMNIST, so a process starts in seconds.
- With ``TINYCLI_KILL_AT=N`` the process kills itself with SIGKILL (no clean-up, as ``kill -9`` or a
  job scheduler would) after the N-th condensation iteration of the run, counted over all runs — a
  deterministic stand-in for ``timeout -s KILL``.
"""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcprivacy import condense, config, data  # noqa: E402


def tiny_profile(prof: config.Profile) -> config.Profile:
    return replace(prof, condense=replace(prof.condense, width=4, batch_real=4, dm_iterations=6, dc_iterations=2,
                                          dc_loops=(1, 1), per_class_pool=8),
                   mia=replace(prof.mia, pool=60, runs=4, epochs=1, epochs_small=1, width=4, ipc=1, dm_iterations=6,
                               batch_real=4, dc_iterations=1, dc_loops=(1, 1), bootstrap=0, test_size=50))


def save_small_data(ds, path, *, per_class: int = 12, test: int = 100) -> Path:
    """A small copy of ``ds`` (``per_class`` training images of each class, ``test`` test images)."""
    idx = data.class_balanced_subset(ds.train_y, per_class, seed=0)
    torch.save({"name": ds.name, "train_x": ds.train_x[idx].clone(), "train_y": ds.train_y[idx].clone(),
                "test_x": ds.test_x[:test].clone(), "test_y": ds.test_y[:test].clone(), "mean": list(ds.mean),
                "std": list(ds.std), "classes": list(ds.classes), "source": "small copy for tests"}, path)
    return Path(path)


def small_dataset(path) -> data.Dataset:
    d = torch.load(path, weights_only=True)
    return data.Dataset(d["name"], d["train_x"], d["train_y"], d["test_x"], d["test_y"], tuple(d["mean"]),
                        tuple(d["std"]), tuple(d["classes"]), d["source"])


def install(kill_at: int | None = None, data_file=None) -> None:
    """Patch the package for test sizes (in this process)."""
    real_get = config.get_profile
    config.get_profile = lambda name=None: tiny_profile(real_get(name))
    if data_file:
        data.load_dataset = lambda name="fashionmnist", *a, **k: small_dataset(data_file)
    if kill_at:
        count = {"it": 0}
        for fn in ("distribution_matching", "gradient_matching"):
            real = getattr(condense, fn)

            def wrapped(*a, _real=real, **k):
                def cb(it, images, loss):
                    count["it"] += 1
                    if count["it"] >= kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                return _real(*a, **k, callback=cb, callback_every=1)
            setattr(condense, fn, wrapped)


if __name__ == "__main__":
    install(int(os.environ.get("TINYCLI_KILL_AT") or 0) or None, os.environ.get("TINYCLI_DATA"))
    from dcprivacy.cli import main
    sys.exit(main(sys.argv[1:]))
