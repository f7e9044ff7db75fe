"""Train and evaluate many models of one architecture at once.

Membership inference needs dozens of shadow models and condensation is judged by training
several networks on each synthetic set. Training them one after another wastes a small machine
on Python and kernel-launch overhead; here the N models are *stacked* (``torch.func``) and every
step is one batched forward and backward for all of them (a convolution over N models becomes one
grouped convolution).

Each model keeps its own seed, its own initial weights and, when asked, its own training set (a
row of a membership mask over a shared pool), and sees its own shuffled batches — exactly what it
would see trained alone, which ``tests/test_train.py`` checks.
"""
from __future__ import annotations

import contextlib
import copy
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .augment import apply_transforms, parse_strategy, sample_transforms
from .config import gpu_paths, progress
from .cpu import keep_freed_memory


@dataclass
class Ensemble:
    """N models of one architecture, stacked: every parameter has a leading model dimension."""
    base: nn.Module  # the architecture, on the meta device (holds no numbers)
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def stack(cls, nets: Sequence[nn.Module]) -> "Ensemble":
        params, buffers = stack_module_state(list(nets))
        base = copy.deepcopy(nets[0]).to("meta")
        return cls(base, {k: v.detach() for k, v in params.items()}, buffers)

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def __call__(self, x: torch.Tensor, *, shared: bool = True, method: str = "forward",
                 params: dict | None = None) -> torch.Tensor:
        """Outputs of all models: ``x`` [B, ...] for every model (``shared``) or [N, B, ...] one each."""
        p = self.params if params is None else params
        fn = vmap(lambda pp, bb, xx: _call_method(self.base, pp, bb, xx, method),
                  in_dims=(0, 0, None if shared else 0))
        return fn(p, self.buffers, x)

    def model(self, i: int) -> nn.Module:
        """Model ``i`` as an ordinary ``nn.Module`` (a copy)."""
        net = copy.deepcopy(self.base).to_empty(device=self.device)
        net.load_state_dict({k: v[i] for k, v in {**self.params, **self.buffers}.items()})
        return net


class _Method(nn.Module):
    """Calls ``base.<method>`` so that ``functional_call`` can run methods other than forward."""

    def __init__(self, base: nn.Module, method: str):
        super().__init__()
        self.base, self.method = base, method

    def forward(self, x):
        return getattr(self.base, self.method)(x)


def _call_method(base: nn.Module, params, buffers, x, method: str = "forward"):
    """``base.<method>(x)`` evaluated with the given weights (vmap-able)."""
    if method == "forward":
        return functional_call(base, (params, buffers), (x,))
    named = {f"base.{k}": v for k, v in {**params, **buffers}.items()}
    return functional_call(_Method(base, method), named, (x,))


@dataclass
class TrainConfig:
    """The evaluation protocol of the condensation literature (DC, DSA, DM)."""
    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    decay_at: float = 0.5  # lr × 0.1 from this fraction of the epochs on
    augment: str | None = None  # a DSA strategy applied to every training image (None: no augmentation)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs={self.epochs}, batch_size={self.batch_size}: both must be ≥ 1")
        if not 0 <= self.decay_at <= 1:
            raise ValueError(f"decay_at={self.decay_at}: must lie in [0, 1]")
        parse_strategy(self.augment)

    def as_dict(self) -> dict:
        return asdict(self)


def _data_generator(seed: int, device) -> torch.Generator:
    # (modulo 2**64, the generator's range: the same stream for every seed below 2**63, and no overflow for the
    # seeds near 2**63 that a command's seed plus a model's index reaches)
    return torch.Generator(device=device).manual_seed((int(seed) * 2 + 1) % 2 ** 64)


def train_models(factory: Callable[[int], nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                 seeds: Sequence[int], members: torch.Tensor | None = None,
                 config: TrainConfig = TrainConfig(), aug_seed: int = 0, chunk: int | None = None,
                 device: torch.device | str | None = None, desc: str = "training",
                 channels_last: bool | None = None, callback: Callable[[int], None] | None = None,
                 compile: bool = False, precision: str = "fp32") -> Ensemble:
    """Train ``len(seeds)`` models; model ``i`` starts from ``factory(seeds[i])``.

    ``members``: optional bool mask [N, len(x)]; model ``i`` trains on the rows where it is True
    (for membership inference, one row per shadow model). Without it every model trains on all of
    ``x``. Each model sees its own random order in batches of ``batch_size`` with a smaller last
    batch, as ``DataLoader(shuffle=True)`` would give it; a model whose set is used up before the
    others' skips the remaining steps of the epoch (no update, no weight decay, no momentum).

    ``chunk``: how many models go through each step together. ``None`` picks by device: all of them
    on a GPU (or with ``DCPRIVACY_FORCE_GPU_PATHS=1``, see :func:`dcprivacy.config.gpu_paths`); one at a time on a CPU, where stacked convolutions measured slower than a loop (see
    ``python -m dcprivacy bench train``). The result does not depend on ``chunk`` without
    augmentation; with it, the augmentation draws come from one generator per chunk.

    ``channels_last``: convolution weights and batches in NHWC — the same numbers up to rounding. Off by
    default: on the 2-core CPU, interleaved in one process, a training epoch of the reference's evaluation
    (100 images, width 128, DSA) measured no faster in NHWC than in NCHW.
    ``callback(epochs_done)``: called after every epoch of every chunk (progress, timing).
    ``compile``: run each step's forward and backward through ``torch.compile`` (a one-off compilation of
    seconds to tens of seconds, worth it over hundreds of epochs; falls back to eager where compilation fails).
    ``precision``: ``"fp32"`` (default) or ``"bf16"``: mixed precision (:func:`mixed_precision`).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision={precision!r}: allowed values are fp32, bf16")
    dtype = torch.bfloat16 if precision == "bf16" else None
    device = torch.device(device) if device is not None else x.device
    if device.type == "cpu":
        keep_freed_memory()  # large activations reused, not page-faulted in at every step
    N = len(seeds)
    if N < 1:
        raise ValueError("seeds: give at least one seed (one per model)")
    from . import checks
    checks.images(x, "x", any_shape=True)
    checks.labels(y, "y", rows=x.shape[0])
    if members is not None and tuple(members.shape) != (N, x.shape[0]):
        raise ValueError(f"members has shape {tuple(members.shape)}, expected ({N}, {x.shape[0]}) = (models, pool)")
    if chunk is None:
        chunk = N if gpu_paths(device) else 1
    if chunk < 1:
        raise ValueError(f"chunk={chunk}: must be at least 1")
    parts = []
    bar = progress(total=config.epochs * math.ceil(N / chunk), desc=desc, unit="epoch")
    for start in range(0, N, chunk):
        sub = slice(start, start + chunk)
        parts.append(_train_stacked(factory, x, y, list(seeds[sub]), None if members is None else members[sub],
                                    config, aug_seed + int(seeds[start]), device, bar, channels_last, callback,
                                    compile, dtype))
    bar.close()
    if len(parts) == 1:
        return parts[0]
    return Ensemble(parts[0].base, {k: torch.cat([p.params[k] for p in parts]) for k in parts[0].params},
                    {k: torch.cat([p.buffers[k] for p in parts]) for k in parts[0].buffers})


def mixed_precision(device: torch.device | str, dtype: torch.dtype | None):
    """``torch.autocast`` in ``dtype`` on ``device`` (``None``: float32, no autocast). Weights, gradients and
    the optimiser stay in float32; convolutions and matrix products run in ``dtype`` (the ConvNet's first
    convolution excepted, see :class:`dcprivacy.nets.FirstConv`)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def compiled_or_eager(fn: Callable) -> Callable:
    """``torch.compile(fn)``, falling back to ``fn`` itself (with a warning, once) where compilation fails on
    the first call — no C++ compiler on the machine, an operation the compiler does not support."""
    state = {"fn": torch.compile(fn), "compiled": True}

    def call(*args):
        if state["compiled"]:
            try:
                return state["fn"](*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure: run eagerly (a real error re-raises there)
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); running eagerly")
                state.update(fn=fn, compiled=False)
        return state["fn"](*args)

    return call


def _nhwc(v: torch.Tensor) -> torch.Tensor:
    """Stacked conv weights [N, out, in, h, w] with every model's weight in channels-last strides."""
    return v.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if v.dim() == 5 else v


def shuffled_orders(owned: Sequence[torch.Tensor], generators: Sequence[torch.Generator], n_max: int) -> torch.Tensor:
    """One epoch's batch order for every model: row ``i`` is model ``i``'s own training rows ``owned[i]``
    in a random order drawn from its own generator, padded to ``n_max``. A model's order depends on its
    seed and its set alone, never on the other models trained beside it."""
    return torch.stack([F.pad(own[torch.randperm(len(own), generator=g, device=own.device)], (0, n_max - len(own)))
                        for own, g in zip(owned, generators)])


@torch.no_grad()
def sgd_step(params: dict, grads: Sequence[torch.Tensor], moment: dict, *, lr: float, momentum: float,
             weight_decay: float, active: torch.Tensor | None = None) -> None:
    """One step of SGD with momentum and weight decay, as ``torch.optim.SGD`` takes it, on every model at once:

        d = g + weight_decay · θ;   v ← momentum · v + d;   θ ← θ − lr · v

    ``params`` and ``moment`` (the velocities v) hold one tensor per weight with a leading model
    dimension, updated in place; ``grads`` lists the gradients in the order of ``params``. ``active``
    [models] (optional, bool): the models that take this step; the others keep θ and v unchanged (a
    model whose training set is used up before the others' skips the last steps of an epoch)."""
    for (k, p), g in zip(params.items(), grads):
        d = g + weight_decay * p
        if active is None:
            moment[k].mul_(momentum).add_(d)
            p.sub_(lr * moment[k])
        else:
            a = active.view(-1, *[1] * (p.dim() - 1))
            moment[k] = torch.where(a, moment[k] * momentum + d, moment[k])
            p.copy_(torch.where(a, p - lr * moment[k], p))


def _train_stacked(factory, x, y, seeds, members, config: TrainConfig, aug_seed: int, device, bar,
                   channels_last: bool | None = None, callback=None, compile: bool = False,
                   dtype: torch.dtype | None = None) -> Ensemble:
    """One vectorized training run of ``len(seeds)`` stacked models (see :func:`train_models`)."""
    N = len(seeds)
    x, y = x.to(device), y.to(device)
    channels_last = bool(channels_last) and x.dim() == 4
    P = x.shape[0]
    if members is None:
        members = torch.ones(N, P, dtype=torch.bool, device=device)
    members = members.to(device=device, dtype=torch.bool)
    sizes = members.sum(1).tolist()  # one host sync, before training
    if min(sizes) == 0:
        raise ValueError("members: every model needs at least one training example")
    n_max, n_min, B = max(sizes), min(sizes), config.batch_size
    b = min(B, n_max)
    steps = math.ceil(n_max / B)
    sizes_t = torch.tensor(sizes, device=device)
    owned = [row.nonzero().flatten() for row in members]  # each model's training rows

    ens = Ensemble.stack([factory(int(s)).to(device) for s in seeds])
    layout = _nhwc if channels_last else torch.clone
    params = {k: layout(v).requires_grad_(True) for k, v in ens.params.items()}
    moment = {k: torch.zeros_like(v) for k, v in params.items()}
    gens = [_data_generator(s, device) for s in seeds]
    aug_gen = torch.Generator(device=device).manual_seed(int(aug_seed) % 2 ** 64)  # (see _data_generator)
    groups = parse_strategy(config.augment)
    decay_epoch = int(config.epochs * config.decay_at)
    pos = torch.arange(b, device=device)

    def loss_one(p, bu, xb, yb, wb):
        with mixed_precision(xb.device, dtype):
            out = functional_call(ens.base, (p, bu), (xb,)).float()
        return (F.cross_entropy(out, yb, reduction="none") * wb).sum() / wb.sum().clamp_min(1.0)

    if N > 1:
        batched_loss = vmap(loss_one, in_dims=(0, 0, 0, 0, 0))
    else:  # one model: skip vmap's batching rules (measurably faster on a CPU)
        def batched_loss(p, bu, xb, yb, wb):
            one = lambda d: {k: v[0] for k, v in d.items()}
            xb = xb[0].contiguous(memory_format=torch.channels_last) if channels_last else xb[0]
            return loss_one(one(p), one(bu), xb, yb[0], wb[0]).unsqueeze(0)

    if compile:  # one compiled forward + backward (AOTAutograd compiles both); the update stays eager
        batched_loss = compiled_or_eager(batched_loss)

    for epoch in range(config.epochs):
        lr = config.lr * (0.1 if epoch >= decay_epoch else 1.0)
        order = shuffled_orders(owned, gens, n_max)
        for s in range(steps):
            slot = s * B + pos  # positions of this batch in each model's order
            idx = order.gather(1, slot.clamp_max(n_max - 1).expand(N, b))
            w = (slot.unsqueeze(0) < sizes_t.unsqueeze(1)).to(x.dtype)  # [N, b]
            xb, yb = x[idx], y[idx]
            if groups:
                t = sample_transforms(N * b, config.augment, tuple(x.shape[-2:]), generator=aug_gen,
                                      device=device, share=b)  # one group per model and batch
                xb = apply_transforms(xb.flatten(0, 1), t).view_as(xb)
            loss = batched_loss(params, ens.buffers, xb, yb, w)
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            active = None if s * B < n_min else (s * B < sizes_t)  # known on the host: no sync
            sgd_step(params, grads, moment, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                     active=active)
        bar.update(1)
        if callback is not None:
            callback(epoch + 1)
    ens.params = {k: v.detach() for k, v in params.items()}
    return ens


def _chunks(ens: Ensemble, chunk: int | None):
    n = len(ens)
    chunk = (n if gpu_paths(ens.device) else 1) if chunk is None else chunk
    return [slice(i, min(i + chunk, n)) for i in range(0, n, chunk)]


@torch.no_grad()
def predict(ens: Ensemble, x: torch.Tensor, *, batch_size: int = 256, method: str = "forward",
            chunk: int | None = None) -> torch.Tensor:
    """Outputs of every model on every row of ``x``: [N, len(x), ...] (logits by default).

    ``chunk`` models are evaluated together (default: all on a GPU, one at a time on a CPU)."""
    x = x.to(ens.device)
    outs = []
    for part in _chunks(ens, chunk):
        rows = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            if part.stop - part.start == 1:  # one model: a plain call, no batching rules
                one = lambda d: {k: v[part.start] for k, v in d.items()}
                rows.append(_call_method(ens.base, one(ens.params), one(ens.buffers), xb, method).unsqueeze(0))
            else:
                sub = lambda d: {k: v[part] for k, v in d.items()}
                rows.append(Ensemble(ens.base, sub(ens.params), sub(ens.buffers))(xb, method=method))
        outs.append(torch.cat(rows, dim=1))
    return torch.cat(outs, dim=0)


@torch.no_grad()
def accuracy(ens: Ensemble, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
             chunk: int | None = None) -> torch.Tensor:
    """Test accuracy of each model: a tensor [N] in [0, 1]."""
    y = y.to(ens.device)
    correct = torch.zeros(len(ens), device=ens.device)
    for i in range(0, x.shape[0], batch_size):
        logits = predict(ens, x[i:i + batch_size], batch_size=batch_size, chunk=chunk)
        correct += (logits.argmax(-1) == y[i:i + batch_size]).sum(1)
    return correct / x.shape[0]
