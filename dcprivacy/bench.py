"""Benchmarks behind the speed claims (``python -m dcprivacy bench …``).

Each benchmark runs the fast path and its baseline on the same work in one process and reports
both, so a reader can check the ratio on their own machine. Timed tests are never used for this.
"""
from __future__ import annotations

import time

import torch

from .config import default_device


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn`` (after synchronising the device)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_train(*, models: int = 8, per_class: int = 50, width: int = 32, epochs: int = 5,
                batch_size: int = 256, arch: str = "convnet", device=None, seed: int = 0) -> dict:
    """N models trained stacked (one chunk) vs one after another, same seeds and batches."""
    from .data import class_balanced_subset, load_dataset
    from .nets import net_factory
    from .train import TrainConfig, train_models

    device = torch.device(device) if device is not None else default_device()
    ds = load_dataset("fashionmnist")
    idx = class_balanced_subset(ds.train_y, per_class, seed=seed)
    x, y = ds.train_x[idx].to(device), ds.train_y[idx].to(device)
    factory = net_factory(arch, width=width, channels=ds.channels, im_size=ds.im_size)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size)
    seeds = list(range(seed, seed + models))
    run = lambda chunk: train_models(factory, x, y, seeds=seeds, config=cfg, chunk=chunk, device=device,
                                     desc=f"chunk {chunk}")
    run(models), run(1)  # warm-up (allocators, kernels)
    t_vec, ens_vec = timed(lambda: run(models), device)
    t_loop, ens_loop = timed(lambda: run(1), device)
    diff = max((ens_vec.params[k] - ens_loop.params[k]).abs().max().item() for k in ens_vec.params)
    return {"benchmark": "train", "arch": arch, "width": width, "models": models, "examples": len(idx),
            "epochs": epochs, "batch_size": batch_size, "device": str(device),
            "vectorized_s": round(t_vec, 4), "one_by_one_s": round(t_loop, 4),
            "speedup": round(t_loop / t_vec, 3), "max_param_difference": diff}
