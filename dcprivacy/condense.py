"""Dataset condensation: distribution matching (DM) and gradient matching (DC, DSA).

Both learn a few synthetic images per class so that networks trained on them behave like networks
trained on the real data:

- **DM** (Zhao & Bilen, WACV 2023) draws a fresh *random* ConvNet every iteration and moves the
  synthetic images so that their mean embedding matches the real images' mean embedding, class by
  class. No network is ever trained.
- **DC** (Zhao, Mopuri & Bilen, ICLR 2021) makes the gradient of the loss on the synthetic images
  match the gradient on real images, layer by layer, while the network itself is trained on the
  synthetic set; **DSA** (Zhao & Bilen, ICML 2021) adds differentiable siamese augmentation.

Every result is a :class:`SyntheticSet` that remembers which real images initialised it — the
privacy chapters need exactly that.

Speed: all classes go through the network in one pass per step (instance normalisation makes this
equal to the reference's per-class loop, see ``tests/test_condense.py``); data stays on the device;
losses are kept on the device (no host synchronisation inside the loop).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .augment import DEFAULT_STRATEGY, apply_transforms, parse_strategy, sample_transforms
from .config import compile_pays, fast_dtype, gpu_paths, progress
from .cpu import keep_freed_memory
from .nets import make_net
from .train import compiled_or_eager

INITS = ("real", "noise")
# What a SyntheticSet's ``method`` may be: the condensations (DM, DC, DSA, DP-DM of dcprivacy.dp) and the
# baselines built from real images (a random subset of them, a whole pool).
METHODS = ("dm", "dc", "dsa", "dp-dm", "real-subset", "real-pool")

# Published ConvNet test accuracies (%) at 1 / 10 / 50 images per class: DC (Zhao et al. 2021),
# DSA (Zhao & Bilen 2021), DM (Zhao & Bilen 2023). Keys: (method, dataset, images per class).
PUBLISHED_ACCURACY = {
    ("dc", "fashionmnist", 1): 70.5, ("dc", "fashionmnist", 10): 82.3, ("dc", "fashionmnist", 50): 83.6,
    ("dc", "cifar10", 1): 28.3, ("dc", "cifar10", 10): 44.9, ("dc", "cifar10", 50): 53.9,
    ("dsa", "fashionmnist", 1): 70.6, ("dsa", "fashionmnist", 10): 84.6, ("dsa", "fashionmnist", 50): 88.7,
    ("dsa", "cifar10", 1): 28.8, ("dsa", "cifar10", 10): 52.1, ("dsa", "cifar10", 50): 60.6,
    ("dm", "cifar10", 1): 26.0, ("dm", "cifar10", 10): 48.9, ("dm", "cifar10", 50): 63.0,
}


@dataclass
class SyntheticSet:
    """A condensed dataset: images grouped by class, and where they came from."""
    images: torch.Tensor  # [classes · ipc, C, H, W], normalised like the real data, sorted by class
    labels: torch.Tensor  # [classes · ipc]
    init_indices: torch.Tensor  # dataset indices of the real image that initialised each one; empty for noise
    method: str
    config: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)  # loss per iteration, snapshots, seconds

    @property
    def ipc(self) -> int:
        return self.images.shape[0] // self.num_classes

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1

    @property
    def real_init(self) -> bool:
        return self.init_indices.numel() > 0

    def to_dict(self) -> dict:
        """A plain dict of tensors and plain values (what :meth:`save` writes)."""
        return {"format": "dcprivacy.SyntheticSet", "version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "synthetic set") -> "SyntheticSet":
        """The inverse of :meth:`to_dict`, checked: shapes, dtypes and finite images."""
        from .files import FileError, expect
        expect(d, "dcprivacy.SyntheticSet", where, "synthetic set")
        missing = [k for k in ("images", "labels", "init_indices", "method") if k not in d]
        if missing:
            raise FileError(f"{where}: not a synthetic set (missing {', '.join(missing)})")
        if not isinstance(d["method"], str) or d["method"] not in METHODS:
            raise FileError(f"{where}: method {d['method']!r} is not one of {', '.join(METHODS)}")
        for k in ("config", "history"):
            if not isinstance(d.get(k, {}), dict):
                raise FileError(f"{where}: {k} must be a dict, found {type(d[k]).__name__}")
        syn = cls(**{k: d[k] for k in ("images", "labels", "init_indices", "method", "config", "history") if k in d})
        x, y = syn.images, syn.labels
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.is_floating_point() and len(x) > 0):
            raise FileError(f"{where}: images must be a non-empty float tensor [N, C, H, W]")
        if not (isinstance(y, torch.Tensor) and y.dim() == 1 and not y.is_floating_point() and len(y) == len(x)
                and int(y.min()) >= 0):
            raise FileError(f"{where}: labels must be {len(x)} non-negative integer class indices, one per image")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise FileError(f"{where}: {bad} image(s) hold NaN or infinite pixels; the condensation diverged "
                            f"(lower lr_img) or the file was altered")
        i = syn.init_indices
        if not (isinstance(i, torch.Tensor) and i.dim() == 1 and not i.is_floating_point() and len(i) in (0, len(x))
                and (len(i) == 0 or int(i.min()) >= 0)):
            raise FileError(f"{where}: init_indices must be empty or {len(x)} non-negative integer dataset indices")
        return syn

    def save(self, path) -> Path:
        """Write the set to ``path`` (atomically; readable with :meth:`load`)."""
        from .files import save
        return save(self.to_dict(), path)

    @classmethod
    def load(cls, path) -> "SyntheticSet":
        """Read a set written by :meth:`save` (tensors and plain values only: ``weights_only=True``)."""
        from .files import load
        return cls.from_dict(load(path, what="synthetic set"), where=f"synthetic set {path}")


# --- shared pieces ---------------------------------------------------------------------------------

def default_loops(ipc: int) -> tuple[int, int]:
    """(outer, inner) loops of gradient matching, from the reference implementation."""
    table = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
    if ipc not in table:
        raise ValueError(f"ipc={ipc}: the reference defines loops for ipc in {sorted(table)}; pass loops=(outer, inner)")
    return table[ipc]


class _ClassPool:
    """The real images indexed by class, to draw per-class batches without host synchronisation."""

    def __init__(self, y: torch.Tensor, num_classes: int):
        counts = torch.bincount(y, minlength=num_classes)
        if int(counts.min()) == 0:
            raise ValueError("every class needs at least one real image; class "
                             f"{int((counts == 0).nonzero()[0])} has none")
        self.n_max = int(counts.max())
        order = torch.argsort(y, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(self.n_max, device=y.device)
        self.valid = pos.unsqueeze(0) < counts.unsqueeze(1)  # [classes, n_max]
        self.table = order[(starts.unsqueeze(1) + pos).clamp_max(len(y) - 1)]  # [classes, n_max] pool indices
        self.counts = counts

    def batch(self, b: int | None, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``b`` random images per class (all of them for ``None``): indices [classes, b] and validity [classes, b]."""
        if b is None or b >= self.n_max:
            return self.table, self.valid
        keys = torch.rand(self.table.shape, generator=generator, device=self.table.device)
        pick = keys.masked_fill(~self.valid, 2.0).argsort(dim=1)[:, :b]
        return self.table.gather(1, pick), self.valid.gather(1, pick)


def init_synthetic(real_x: torch.Tensor, real_y: torch.Tensor, ipc: int, init: str | torch.Tensor, *,
                   num_classes: int, generator: torch.Generator,
                   members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial synthetic images [R, classes·ipc, ...] and the pool rows that initialised them [R, classes·ipc]
    (all -1 for noise). ``init``: ``"real"`` (random real images of each class, from each run's
    members), ``"noise"`` (standard normal, as the reference's noise init) or pool indices [classes·ipc]."""
    R = 1 if members is None else members.shape[0]
    dev = real_x.device
    if isinstance(init, torch.Tensor):
        idx = init.to(dev).long().view(1, -1).expand(R, -1) if init.dim() == 1 else init.to(dev).long()
        if idx.shape != (R, num_classes * ipc):
            raise ValueError(f"init indices have shape {tuple(idx.shape)}, expected ({R}, {num_classes * ipc})")
        want = torch.arange(num_classes, device=dev).repeat_interleave(ipc)
        if not torch.equal(real_y[idx], want.expand(R, -1)):
            raise ValueError("init indices must list ipc images of class 0, then of class 1, ...")
        return real_x[idx].clone(), idx
    if init == "noise":
        noise = torch.randn((num_classes * ipc, *real_x.shape[1:]), generator=generator, device=dev)
        return noise.expand(R, *noise.shape).clone(), torch.full((R, num_classes * ipc), -1, device=dev)
    if init != "real":
        raise ValueError(f"init={init!r}: allowed values are {', '.join(INITS)} or a tensor of pool indices")
    allowed = torch.ones(R, len(real_y), dtype=torch.bool, device=dev) if members is None else members.to(dev)
    idx = []
    for c in range(num_classes):  # once, before the loop
        keys = torch.rand(len(real_y), generator=generator, device=dev).expand(R, -1)  # one draw shared by runs
        keys = keys.masked_fill(~(allowed & (real_y == c)), 2.0)
        if int(((allowed & (real_y == c)).sum(1)).min()) < ipc:
            raise ValueError(f"class {c} has fewer than ipc={ipc} real images to initialise from")
        idx.append(keys.argsort(dim=1)[:, :ipc])
    idx = torch.cat(idx, dim=1)
    return real_x[idx].clone(), idx


@torch.no_grad()
def fresh_network(net: torch.nn.Module, arch: str, seed: int, **kw) -> torch.nn.Module:
    """Give ``net`` the weights a freshly built ``make_net(arch, seed=seed, **kw)`` would have, in place
    (so a compiled ``net.embed`` keeps working)."""
    for p, q in zip(net.parameters(), make_net(arch, seed=seed, **kw).parameters()):
        p.copy_(q)
    return net


def _net_seeds(generator: torch.Generator, n: int) -> list[int]:
    return torch.randint(0, 2 ** 62, (n,), generator=generator).tolist()


def _check(real_x, real_y, ipc, iterations, num_classes, **numbers) -> int:
    """Arguments of a condensation, before any work: shapes, dtypes, finite values and ranges
    (``numbers``: name → value of the positive finite hyper-parameters, e.g. ``lr_img``); the number
    of classes (``num_classes``, or one more than the largest label)."""
    from . import checks
    checks.images(real_x, "real_x")
    checks.labels(real_y, "real_y", rows=real_x.shape[0])
    checks.number(ipc, "ipc", low=1, integer=True)
    checks.number(iterations, "iterations", low=0, integer=True)
    num_classes = int(real_y.max()) + 1 if num_classes is None else num_classes
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1")
    checks.labels(real_y, "real_y", num_classes=num_classes)
    for name, value in numbers.items():
        if value is not None:
            integer = name in ("width", "depth", "batch_real", "batch_train", "checkpoint_every")
            checks.number(value, name, low=0 if name == "momentum" else (1 if integer else 0),
                          low_open=not integer and name != "momentum", integer=integer)
    return num_classes


def _finish(images, init_idx, indices, labels, method, config, losses, snaps, started, R) -> list[SyntheticSet]:
    out = []
    for r in range(R):
        idx = init_idx[r]
        idx = torch.empty(0, dtype=torch.long) if bool((idx < 0).all()) else (
            indices.to(idx.device)[idx] if indices is not None else idx).cpu()
        hist = {"loss": losses[:, r].cpu() if losses.dim() == 2 else losses.cpu(),
                "snapshots": {k: v[r].cpu() for k, v in snaps.items()},
                "seconds": time.time() - started}
        out.append(SyntheticSet(images[r].detach().cpu(), labels.cpu(), idx, method, dict(config), hist))
    return out


def _save_checkpoint(path, config, syn, opt, gen, iteration, losses):
    from .files import save
    save({"format": "dcprivacy.checkpoint", "config": config, "images": syn.detach().cpu(),
          "optimizer": opt.state_dict(), "generator": gen.get_state(), "iteration": iteration,
          "losses": losses[:iteration].cpu()}, path)


def _checkpoint_due(checkpoint, every: int, it: int, iterations: int) -> bool:
    """Save after iteration ``it`` (1-based): every ``every`` iterations and after the last one."""
    return checkpoint is not None and (it % every == 0 or it == iterations)


def _resume(path, config, syn, opt, gen, losses) -> int:
    """Load a checkpoint written by the same configuration into the running state; its iteration.

    Every field is checked before anything is loaded (a damaged or altered file is refused with one line,
    the running state untouched): the configuration, the images (shape, finite), the iteration (a whole
    number from 0 to the run's length), the losses (one finite value per iteration done), the optimiser's
    state (the same hyper-parameters as this run's, a momentum buffer shaped like the images, finite) and
    the generator's state (a byte tensor of this generator's size that it accepts)."""
    from .files import FileError, expect, load
    if path is None or not Path(path).exists():
        return 0
    state = expect(load(path, what="checkpoint"), "dcprivacy.checkpoint", path, "checkpoint")
    if any(k not in state for k in ("config", "images", "optimizer", "generator", "iteration", "losses")):
        raise FileError(f"checkpoint {path}: not a condensation checkpoint; delete it or choose another path")
    if state.get("config") != config:
        raise ValueError(f"checkpoint {path} was written by a different configuration; delete it or "
                         f"choose another path")

    def bad(what: str):
        return FileError(f"checkpoint {path}: {what}; it is damaged or was altered: delete it (the run starts "
                         f"over) or choose another path")
    images = state["images"]
    if not (isinstance(images, torch.Tensor) and tuple(images.shape) == tuple(syn.shape)
            and images.is_floating_point() and bool(torch.isfinite(images).all())):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise FileError(f"checkpoint {path}: images of shape {shape} (expected {tuple(syn.shape)}, finite); "
                        f"delete it or choose another path")
    it, total = state["iteration"], len(losses)
    if isinstance(it, bool) or not isinstance(it, int) or not 0 <= it <= total:
        raise bad(f"iteration {it!r} is not a whole number from 0 to {total}")
    lost = state["losses"]
    if not (isinstance(lost, torch.Tensor) and lost.dim() == 1 and len(lost) == it and lost.is_floating_point()
            and bool(torch.isfinite(lost).all())):
        shape = tuple(lost.shape) if isinstance(lost, torch.Tensor) else type(lost).__name__
        raise bad(f"losses {shape} are not {it} finite values, one per iteration done")
    saved, mine = state["optimizer"], opt.state_dict()
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    keys = ("params", "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")  # what steps use
    if not (isinstance(saved, dict) and set(saved) == set(mine) and isinstance(saved.get("state"), dict)
            and isinstance(groups, list) and len(groups) == len(mine["param_groups"])
            and all(isinstance(a, dict) and all(a.get(k) == b.get(k) for k in keys)
                    for a, b in zip(groups, mine["param_groups"]))):
        raise bad("its optimizer state is not that of this run's optimiser (hyper-parameters or layout differ)")
    for entry in saved["state"].values():
        buf = entry.get("momentum_buffer") if isinstance(entry, dict) else entry
        if not isinstance(entry, dict) or set(entry) - {"momentum_buffer"} or not (
                buf is None or (isinstance(buf, torch.Tensor) and tuple(buf.shape) == tuple(syn.shape)
                                and buf.is_floating_point() and bool(torch.isfinite(buf).all()))):
            raise bad("its optimizer momentum is not a finite tensor shaped like the images")
    if set(saved["state"]) - {0}:
        raise bad("its optimizer state names parameters this run does not have")
    g, mine_g = state["generator"], gen.get_state()
    if not (isinstance(g, torch.Tensor) and g.dtype == torch.uint8 and g.shape == mine_g.shape):
        raise bad(f"its generator state is not a byte tensor of {mine_g.numel()} bytes")
    try:
        gen.set_state(g)
    except (RuntimeError, ValueError, TypeError) as e:
        gen.set_state(mine_g)
        raise bad(f"its generator state is refused ({' '.join(str(e).split())[:80]})") from None
    try:
        opt.load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        gen.set_state(mine_g)
        raise bad(f"its optimizer state is refused ({' '.join(str(e).split())[:80]})") from None
    with torch.no_grad():
        syn.copy_(images.to(syn.device))
    losses[:it] = lost.to(losses.device)
    return it


# --- distribution matching --------------------------------------------------------------------------

def dm_loss(embed: Callable, real_x: torch.Tensor, real_w: torch.Tensor, syn_x: torch.Tensor, *,
            transforms=None, real_chunk: int | None = None, embed_real: Callable | None = None) -> torch.Tensor:
    """DM's loss for all classes (and runs) at once: one pass over the real images of every class
    (without a graph: they need no gradient), one over the synthetic images.

    ``real_x`` [classes, b, ...]: a batch of real images per class; ``real_w`` [R, classes, b]: which of them each
    run uses (weights; 0 for padding or non-members); ``syn_x`` [R, classes, m, ...]. Returns
    Σ_r Σ_c ‖mean_i embed(real_c,i) − mean_j embed(syn_r,c,j)‖², with one siamese augmentation per
    class (``transforms``: one row per class) shared by the real and the synthetic images.
    ``real_chunk``: embed the real images this many at a time (same numbers; on a CPU, pieces whose
    activations fit in the cache measured about 2× faster than one pass over all of them).
    ``embed_real``: the embedding for the real side, if not ``embed`` (the same network in bfloat16,
    see :func:`real_embedding`).
    """
    num_classes, b = real_x.shape[:2]
    R, _, m = syn_x.shape[:3]
    xr, xs = real_x.flatten(0, 1), syn_x.flatten(0, 2)
    if transforms is not None:
        cls = torch.arange(num_classes, device=xr.device)
        xr = apply_transforms(xr, transforms, cls.repeat_interleave(b))
        xs = apply_transforms(xs, transforms, cls.repeat_interleave(m).repeat(R))
    with torch.no_grad():  # the real side needs no gradient: embed it without building a graph
        parts = xr.split(real_chunk or max(len(xr), 1))
        er = torch.cat([(embed_real or embed)(part) for part in parts]).view(num_classes, b, -1)
    es = embed(xs).view(R, num_classes, m, -1)
    mean_real = torch.einsum("rcb,cbf->rcf", real_w, er) / real_w.sum(-1, keepdim=True).clamp_min(1.0)
    mean_syn = es.mean(2)
    present = (real_w.sum(-1) > 0).unsqueeze(-1).to(es.dtype)  # a run without images of a class skips it
    return (((mean_real - mean_syn) ** 2) * present).sum()


def real_embedding(net: torch.nn.Module, dtype: torch.dtype | None, *,
                   compile: bool = False) -> tuple[Callable | None, Callable]:
    """DM's real side in a reduced precision: a copy of ``net`` in ``dtype`` (``None``: no copy).

    Returns ``(embed_real, sync)``: ``embed_real(x)`` embeds ``x`` with the copy and returns float32;
    ``sync()`` copies ``net``'s fresh weights into it (after every re-initialisation). The real images
    need no gradient, and their embeddings are only averaged, 256 at a time, before they meet the
    synthetic side (which stays in float32); bfloat16's relative rounding of about 0.4 % per number
    shrinks in that mean (``tests/test_condense.py`` compares the gradients on the synthetic images with
    float32's, against the spread that the random real batch itself gives them). ``compile``: run the copy
    through ``torch.compile``.
    """
    if dtype is None:
        return None, lambda: None
    import copy
    # bfloat16 on a CPU: eagerly fastest in NCHW (channels-last normalisation is slow there); compiled, the
    # normalisation is fused and the channels-last convolutions win (bench condense measured both)
    layout = torch.channels_last if compile else torch.contiguous_format
    low = copy.deepcopy(net).to(dtype=dtype, memory_format=layout)

    def sync():
        with torch.no_grad():
            for a, b in zip(low.parameters(), net.parameters()):
                a.copy_(b)

    embed = compiled_or_eager(low.embed) if compile else low.embed
    return (lambda x: embed(x.to(dtype=dtype, memory_format=layout)).float()), sync


def distribution_matching(real_x: torch.Tensor, real_y: torch.Tensor, *, ipc: int = 10,
                          init: str | torch.Tensor = "real", iterations: int = 20000, lr_img: float = 1.0,
                          momentum: float = 0.5, batch_real: int | None = 256,
                          augment: str | None = DEFAULT_STRATEGY, arch: str = "convnet", width: int = 128,
                          depth: int = 3, num_classes: int | None = None, seed: int = 0,
                          indices: torch.Tensor | None = None, members: torch.Tensor | None = None,
                          snapshots=(), callback: Callable | None = None, callback_every: int = 100,
                          checkpoint=None, checkpoint_every: int | None = None, device=None, compile: bool | None = None,
                          channels_last: bool | None = None, real_chunk: int | None = None,
                          precision: str = "auto", desc: str = "DM") -> SyntheticSet | list[SyntheticSet]:
    """Condense ``real_x``/``real_y`` into ``ipc`` images per class by distribution matching.

    Defaults are the reference's (lr 1.0, momentum 0.5, 256 real images per class and iteration,
    20000 iterations, real init, DSA augmentation). ``indices``: the dataset indices of ``real_x``'s
    rows, recorded in ``init_indices``. ``members`` [R, len(real_x)]: condense R sets at once that
    share every random draw (init noise, networks, batches, augmentation) and differ only in which
    real images they may use — returns a list of R sets. ``batch_real=None`` uses every real image
    in every iteration. ``snapshots``: iterations at which to keep a copy of the images.
    ``checkpoint``: a file to resume from and to save to every ``checkpoint_every`` iterations (default
    a tenth of the run) and after the last one.
    ``compile``: run the embeddings through ``torch.compile`` (fuses normalisation, ReLU and pooling; pays
    a compilation of seconds to tens of seconds once). ``None`` (default): on a CPU for ConvNets at least 64
    wide and runs of at least 500 iterations (:func:`dcprivacy.config.compile_pays`); ``bench condense``
    records both choices. ``channels_last`` (default: on a CPU, for a ConvNet whose real side is in
    float32) and ``real_chunk`` (default: 64 on a CPU, all at once on a GPU) change the memory layout and
    the order of work, not the result; ``python -m dcprivacy bench condense`` measures what they buy.
    ``precision``: the real side's arithmetic (:func:`dcprivacy.config.fast_dtype`: ``"auto"`` is bfloat16
    on a CPU with native bfloat16 for networks 64 or more channels wide, float32 otherwise; see
    :func:`real_embedding`).
    """
    num_classes = _check(real_x, real_y, ipc, iterations, num_classes, lr_img=lr_img, momentum=momentum,
                         batch_real=batch_real, width=width, depth=depth, checkpoint_every=checkpoint_every)
    checkpoint_every = max(1, iterations // 10) if checkpoint_every is None else checkpoint_every
    parse_strategy(augment)
    device = torch.device(device) if device is not None else real_x.device
    if device.type == "cpu":
        keep_freed_memory()  # large activations reused, not page-faulted in at every step
    real_x, real_y = real_x.to(device), real_y.to(device)
    real_dtype = fast_dtype(device, width, precision) if arch == "convnet" else None
    config = dict(method="dm", ipc=ipc, init=init if isinstance(init, str) else "given", iterations=iterations,
                  lr_img=lr_img, momentum=momentum, batch_real=batch_real, augment=augment, arch=arch,
                  width=width, depth=depth, seed=seed, n_real=len(real_y), runs=1 if members is None else len(members),
                  precision="bf16" if real_dtype is not None else "fp32")
    gen = torch.Generator(device=device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed ^ 0x5DEECE66D)  # network seeds: a stream of their own
    pool = _ClassPool(real_y, num_classes)
    syn, init_idx = init_synthetic(real_x, real_y, ipc, init, num_classes=num_classes, generator=gen, members=members)
    R = syn.shape[0]
    w_members = None if members is None else members.to(device).float()
    syn = syn.view(R, num_classes, ipc, *real_x.shape[1:]).requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=lr_img, momentum=momentum)
    net_kw = dict(channels=real_x.shape[1], num_classes=num_classes, im_size=real_x.shape[-1], width=width)
    if arch in ("convnet", "mlp"):  # both take a depth (the linear extractor has none)
        net_kw["depth"] = depth
    seeds = _net_seeds(cpu_gen, iterations)
    losses = torch.zeros(iterations, device=device)
    snaps = {0: syn.detach().flatten(1, 2).clone()} if 0 in snapshots else {}
    started = time.time()
    start_it = _resume(checkpoint, config, syn, opt, gen, losses)
    on_cpu = not gpu_paths(device)  # the CPU's layout and pieces (DCPRIVACY_FORCE_GPU_PATHS=1: the GPU's)
    if channels_last is None:  # NHWC helps float32 convolutions on a CPU; bfloat16's fast kernels are NCHW
        channels_last = on_cpu and arch == "convnet" and real_dtype is None
    if compile is None:
        compile = arch == "convnet" and compile_pays(device, width, iterations, 500)
    real_chunk = (64 if on_cpu else None) if real_chunk is None else real_chunk
    net = make_net(arch, **net_kw).to(device).requires_grad_(False)
    if channels_last:  # convolutions in NHWC (oneDNN's and tensor cores' preferred layout)
        net = net.to(memory_format=torch.channels_last)
    embed = compiled_or_eager(net.embed) if compile else net.embed
    embed_real, sync_real = real_embedding(net, real_dtype, compile=compile)
    for it in progress(range(start_it, iterations), desc=desc, unit="it", initial=start_it, total=iterations):
        fresh_network(net, arch, seeds[it], **net_kw)
        sync_real()
        loss = dm_step(embed, real_x, pool, syn, opt, batch_real=batch_real, augment=augment, generator=gen,
                       members=w_members, real_chunk=real_chunk, embed_real=embed_real)
        losses[it] = loss.detach() / R
        if it + 1 in snapshots:
            snaps[it + 1] = syn.detach().flatten(1, 2).clone()
        if _checkpoint_due(checkpoint, checkpoint_every, it + 1, iterations):
            _save_checkpoint(checkpoint, config, syn, opt, gen, it + 1, losses)
        if callback is not None and (it + 1) % callback_every == 0:
            callback(it + 1, syn.detach().flatten(1, 2), losses[it])
    labels = torch.arange(num_classes).repeat_interleave(ipc)
    out = _finish(syn.flatten(1, 2), init_idx, indices, labels, "dm", config, losses, snaps, started, R)
    return out if members is not None else out[0]


def dm_step(embed: Callable, real_x: torch.Tensor, pool: _ClassPool, syn: torch.Tensor,
            opt: torch.optim.Optimizer, *, batch_real: int | None, augment: str | None, generator: torch.Generator,
            members: torch.Tensor | None = None, real_chunk: int | None = None,
            embed_real: Callable | None = None) -> torch.Tensor:
    """One iteration of DM under the random network whose features ``embed`` returns (drawn afresh every
    iteration by :func:`distribution_matching`): draw ``batch_real`` real images of every class, one siamese
    augmentation per class, and take one step of ``opt`` on the synthetic images ``syn`` [R, classes, m, ...]
    down the gradient of :func:`dm_loss`. ``members`` [R, len(real_x)] (float): the real images each run
    may use; ``embed_real``: the real side's embedding, if not ``embed`` (see :func:`real_embedding`).
    Returns the loss (on the device: no host synchronisation)."""
    idx, valid = pool.batch(batch_real, generator)  # [classes, b]: a batch of real images per class
    w = valid.float().unsqueeze(0)
    if members is not None:
        w = w * members[:, idx]
    t = sample_transforms(syn.shape[1], augment, tuple(real_x.shape[-2:]), generator=generator,
                          device=syn.device) if parse_strategy(augment) else None
    loss = dm_loss(embed, real_x[idx], w, syn, transforms=t, real_chunk=real_chunk, embed_real=embed_real)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


# --- gradient matching (DC, DSA) ---------------------------------------------------------------------

def gradient_distance(g_real: dict, g_syn: dict) -> torch.Tensor:
    """The reference's layer-wise distance ("ours"), summed over classes.

    Each gradient has a leading class dimension. Per layer and output unit: 1 − cosine between the
    real and synthetic gradient rows (conv weights seen as out × in·h·w); 1-D parameters (biases,
    normalisation) contribute 0, as in the reference.
    """
    total = 0.0
    for k, gr in g_real.items():
        if gr.dim() <= 2:  # [classes, n]: a bias or a norm parameter
            continue
        gs = g_syn[k]
        gr, gs = gr.flatten(2), gs.flatten(2)
        cos = (gr * gs).sum(-1) / (gr.norm(dim=-1) * gs.norm(dim=-1) + 1e-6)
        total = total + (1 - cos).sum()
    return total


def class_gradients(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None, *,
                    vectorize: bool | None = None) -> dict:
    """Gradient of the (weighted) mean cross-entropy of each class's batch w.r.t. the network's weights.

    ``x`` [classes, b, ...], ``y`` [classes, b], ``w`` [classes, b]. The result (a dict of [classes, ...] tensors) is
    differentiable w.r.t. ``x`` when ``x`` requires grad — what DC needs for the synthetic side.
    ``vectorize``: one ``vmap`` over ``torch.func.grad`` for all classes (default on a GPU and with
    ``DCPRIVACY_FORCE_GPU_PATHS=1``), or a loop
    over classes (default on a CPU, where it measured faster: ``python -m dcprivacy bench condense``).
    """
    w = torch.ones(y.shape, device=x.device) if w is None else w
    vectorize = gpu_paths(x.device) if vectorize is None else vectorize
    if vectorize:
        params = {k: v.detach() for k, v in net.named_parameters()}

        def loss(p, xc, yc, wc):
            ce = F.cross_entropy(functional_call(net, p, (xc,)), yc, reduction="none")
            return (ce * wc).sum() / wc.sum().clamp_min(1.0)

        return vmap(grad(loss), in_dims=(None, 0, 0, 0))(params, x, y, w)
    names, params = zip(*net.named_parameters())
    per_class = []
    for c in range(x.shape[0]):
        ce = F.cross_entropy(net(x[c]), y[c], reduction="none")
        loss = (ce * w[c]).sum() / w[c].sum().clamp_min(1.0)
        per_class.append(torch.autograd.grad(loss, params, create_graph=x.requires_grad))
    return {k: torch.stack([g[i] for g in per_class]) for i, k in enumerate(names)}


def siamese_augment(real: torch.Tensor, syn: torch.Tensor, augment: str, generator: torch.Generator):
    """DSA's siamese augmentation: one random transformation per class, applied to that class's real images
    ``real`` [classes, b, ...] and to its synthetic images ``syn`` [classes, m, ...] alike."""
    num_classes, b, m = real.shape[0], real.shape[1], syn.shape[1]
    t = sample_transforms(num_classes, augment, tuple(real.shape[-2:]), generator=generator, device=syn.device)
    cls = torch.arange(num_classes, device=syn.device)
    real = apply_transforms(real.flatten(0, 1), t, cls.repeat_interleave(b)).view_as(real)
    syn = apply_transforms(syn.flatten(0, 1), t, cls.repeat_interleave(m)).view_as(syn)
    return real, syn


def match_step(net: torch.nn.Module, real_x: torch.Tensor, real_y: torch.Tensor, pool: _ClassPool,
               syn: torch.Tensor, opt: torch.optim.Optimizer, *, batch_real: int | None, augment: str | None,
               generator: torch.Generator, vectorize: bool | None = None) -> torch.Tensor:
    """One matching step of gradient matching: the per-class gradients of ``net`` on a batch of real images
    and on the synthetic images ``syn`` [classes, m, ...] (the same siamese augmentation on both for DSA), their
    :func:`gradient_distance`, and one step of ``opt`` on the synthetic images down its gradient. Returns the
    distance (on the device)."""
    num_classes, m = syn.shape[:2]
    idx, valid = pool.batch(batch_real, generator)  # [classes, b]: a batch of real images per class
    xr, xs = real_x[idx], syn
    if parse_strategy(augment):
        xr, xs = siamese_augment(xr, xs, augment, generator)
    g_real = {k: v.detach() for k, v in class_gradients(net, xr, real_y[idx], valid.float(),
                                                         vectorize=vectorize).items()}
    y_syn = torch.arange(num_classes, device=syn.device).repeat_interleave(m).view(num_classes, m)
    g_syn = class_gradients(net, xs, y_syn, vectorize=vectorize)  # differentiable w.r.t. the pixels
    loss = gradient_distance(g_real, g_syn)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def train_on_synthetic(net: torch.nn.Module, opt_net: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
                       epochs: int, batch_size: int, augment: str | None, generator: torch.Generator) -> None:
    """Gradient matching's inner loop, as the reference's: train ``net`` ``epochs`` epochs on the (detached)
    synthetic set ``x``, ``y`` in shuffled batches, with the DSA augmentation when ``augment`` is given."""
    n, size, augmented = x.shape[0], tuple(x.shape[-2:]), bool(parse_strategy(augment))
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator, device=x.device)
        for s in range(0, n, batch_size):
            bi = perm[s:s + batch_size]
            xb = x[bi]
            if augmented:
                xb = apply_transforms(xb, sample_transforms(len(bi), augment, size, generator=generator,
                                                            device=x.device, share=len(bi)))
            opt_net.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), y[bi]).backward()
            opt_net.step()


def gradient_matching(real_x: torch.Tensor, real_y: torch.Tensor, *, ipc: int = 10,
                      init: str | torch.Tensor | None = None, iterations: int = 1000, lr_img: float = 0.1,
                      momentum: float = 0.5, lr_net: float = 0.01, batch_real: int | None = 256,
                      batch_train: int = 256, loops: tuple[int, int] | None = None, augment: str | None = None,
                      arch: str = "convnet", width: int = 128, depth: int = 3, num_classes: int | None = None,
                      seed: int = 0, indices: torch.Tensor | None = None, snapshots=(),
                      callback: Callable | None = None, callback_every: int = 10, checkpoint=None,
                      checkpoint_every: int | None = None, device=None, desc: str | None = None,
                      vectorize: bool | None = None) -> SyntheticSet:
    """Condense by gradient matching: DC without ``augment``, DSA with a strategy.

    Every iteration draws a fresh network; ``loops = (outer, inner)`` (default: the reference's value
    for ``ipc``): ``outer`` times, match the per-class gradients on real and synthetic images and
    take one step on the images, then train the network ``inner`` epochs on the synthetic set.
    Defaults are the reference's (lr_img 0.1, momentum 0.5, lr_net 0.01, 256 real images per class;
    init from noise for DC and from real images for DSA). ``vectorize``: see :func:`class_gradients`.
    """
    num_classes = _check(real_x, real_y, ipc, iterations, num_classes, lr_img=lr_img, momentum=momentum,
                         lr_net=lr_net, batch_real=batch_real, batch_train=batch_train, width=width, depth=depth,
                         checkpoint_every=checkpoint_every)
    checkpoint_every = max(1, iterations // 10) if checkpoint_every is None else checkpoint_every
    groups = parse_strategy(augment)
    init = ("real" if groups else "noise") if init is None else init
    outer, inner = default_loops(ipc) if loops is None else loops
    if outer < 1 or inner < 0:
        raise ValueError(f"loops={loops}: need outer ≥ 1 and inner ≥ 0")
    method = "dsa" if groups else "dc"
    device = torch.device(device) if device is not None else real_x.device
    if device.type == "cpu":
        keep_freed_memory()
    real_x, real_y = real_x.to(device), real_y.to(device)
    config = dict(method=method, ipc=ipc, init=init if isinstance(init, str) else "given", iterations=iterations,
                  lr_img=lr_img, momentum=momentum, lr_net=lr_net, batch_real=batch_real, batch_train=batch_train,
                  loops=(outer, inner), augment=augment, arch=arch, width=width, depth=depth, seed=seed,
                  n_real=len(real_y))
    gen = torch.Generator(device=device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed ^ 0x5DEECE66D)  # network seeds: a stream of their own
    pool = _ClassPool(real_y, num_classes)
    syn, init_idx = init_synthetic(real_x, real_y, ipc, init, num_classes=num_classes, generator=gen)
    syn = syn[0].view(num_classes, ipc, *real_x.shape[1:]).requires_grad_(True)
    opt = torch.optim.SGD([syn], lr=lr_img, momentum=momentum)
    labels = torch.arange(num_classes, device=device).repeat_interleave(ipc)
    net_kw = dict(channels=real_x.shape[1], num_classes=num_classes, im_size=real_x.shape[-1], width=width)
    if arch in ("convnet", "mlp"):  # both take a depth (the linear extractor has none)
        net_kw["depth"] = depth
    seeds = _net_seeds(cpu_gen, iterations)
    losses = torch.zeros(iterations, device=device)
    snaps = {0: syn.detach().flatten(0, 1).clone()[None]} if 0 in snapshots else {}
    started = time.time()
    start_it = _resume(checkpoint, config, syn, opt, gen, losses)
    for it in progress(range(start_it, iterations), desc=desc or method.upper(), unit="it", initial=start_it,
                       total=iterations):
        net = make_net(arch, seed=seeds[it], **net_kw).to(device)
        opt_net = torch.optim.SGD(net.parameters(), lr=lr_net)
        for ol in range(outer):
            loss = match_step(net, real_x, real_y, pool, syn, opt, batch_real=batch_real, augment=augment,
                              generator=gen, vectorize=vectorize)
            losses[it] = losses[it] + loss.detach() / outer
            if ol == outer - 1:
                break
            train_on_synthetic(net, opt_net, syn.detach().flatten(0, 1), labels, epochs=inner,
                               batch_size=batch_train, augment=augment, generator=gen)
        if it + 1 in snapshots:
            snaps[it + 1] = syn.detach().flatten(0, 1).clone()[None]
        if _checkpoint_due(checkpoint, checkpoint_every, it + 1, iterations):
            _save_checkpoint(checkpoint, config, syn, opt, gen, it + 1, losses)
        if callback is not None and (it + 1) % callback_every == 0:
            callback(it + 1, syn.detach().flatten(0, 1), losses[it])
    return _finish(syn.flatten(0, 1)[None], init_idx, indices, labels, method, config, losses, snaps, started, 1)[0]


# --- evaluation ---------------------------------------------------------------------------------------

def evaluation_arithmetic(device, width: int, epochs: int, precision: str = "auto",
                          compile: bool | None = None) -> tuple[str, bool]:
    """How :func:`evaluate_synthetic` trains: ``(precision, compile)``. ``"auto"`` precision is bfloat16 mixed
    precision where :func:`dcprivacy.config.fast_dtype` allows it (a CPU with native bfloat16, width ≥ 64,
    no :func:`~dcprivacy.config.exact_arithmetic`); ``compile=None`` compiles each training step on a CPU
    for networks that wide and runs of at least 300 epochs (the protocol's 300 or 1000), where the
    compilation (seconds, more on a cold cache) is repaid many times. ``python -m dcprivacy bench evaluate``
    times exactly these settings against the reference."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = fast_dtype(device, width, precision)
    if compile is None:
        compile = compile_pays(device, width, epochs, 300)
    return ("bf16" if dtype is not None else "fp32"), bool(compile)


def evaluate_synthetic(syn: SyntheticSet, test_x: torch.Tensor, test_y: torch.Tensor, *, models: int = 5,
                       epochs: int | None = None, augment: str | None | bool = True, arch: str = "convnet",
                       width: int = 128, depth: int = 3, seed: int = 0, device=None,
                       desc: str = "evaluate", stack: bool | None = None,
                       callback: Callable[[int], None] | None = None, precision: str = "auto",
                       compile: bool | None = None) -> dict:
    """Train ``models`` networks at once on ``syn`` with the literature's protocol; test accuracy.

    ``augment=True`` picks the reference's choice: the DSA augmentation for DSA and DM sets (1000
    epochs), none for DC (300 epochs). SGD lr 0.01 (×0.1 half-way), momentum 0.9, weight decay 5e-4,
    batch 256. ``stack``: train all models as one stacked ensemble (``vmap``; the default on a GPU)
    or one after another (the default on a CPU, where it measured faster); ``callback(epochs_done)``
    runs after every epoch (``python -m dcprivacy bench evaluate`` times epochs with it).
    ``precision`` and ``compile``: the arithmetic (:func:`evaluation_arithmetic`; by default bfloat16 mixed
    precision and a compiled step for the protocol's long runs of wide ConvNets on a CPU that has native
    bfloat16; float32 elsewhere). The result records both.
    """
    from .nets import net_factory
    from .train import TrainConfig, accuracy, train_models
    if augment is True:
        augment = None if syn.method == "dc" else DEFAULT_STRATEGY
    elif augment is False:
        augment = None
    epochs = (300 if augment is None else 1000) if epochs is None else epochs
    device = torch.device(device) if device is not None else test_x.device
    kw = dict(channels=syn.images.shape[1], num_classes=syn.num_classes, im_size=syn.images.shape[-1], width=width)
    if arch in ("convnet", "mlp"):  # both take a depth (the linear extractor has none)
        kw["depth"] = depth
    factory = net_factory(arch, **kw)
    precision, compile = evaluation_arithmetic(device, width if arch == "convnet" else 0, epochs, precision, compile)
    ens = train_models(factory, syn.images.to(device), syn.labels.to(device), seeds=range(seed, seed + models),
                       config=TrainConfig(epochs=epochs, augment=augment), aug_seed=seed, device=device, desc=desc,
                       chunk=None if stack is None else (models if stack else 1), callback=callback,
                       precision=precision, compile=compile)
    acc = accuracy(ens, test_x.to(device), test_y.to(device)).cpu()
    return {"accuracy_mean": acc.mean().item(), "accuracy_std": acc.std(unbiased=False).item(),
            "accuracies": acc.tolist(), "models": models, "epochs": epochs, "augment": augment,
            "arch": arch, "width": width, "depth": depth, "precision": precision, "compiled": compile}


def random_real_subset(real_x: torch.Tensor, real_y: torch.Tensor, ipc: int, *, seed: int = 0,
                       indices: torch.Tensor | None = None, num_classes: int | None = None) -> SyntheticSet:
    """The naive baseline: ``ipc`` random real images per class, as a :class:`SyntheticSet`."""
    num_classes = int(real_y.max()) + 1 if num_classes is None else num_classes
    gen = torch.Generator(device=real_x.device).manual_seed(seed)
    images, idx = init_synthetic(real_x, real_y, ipc, "real", num_classes=num_classes, generator=gen)
    labels = torch.arange(num_classes).repeat_interleave(ipc)
    init = (indices.to(idx.device)[idx[0]] if indices is not None else idx[0]).cpu()
    return SyntheticSet(images[0].cpu(), labels, init, "real-subset", {"ipc": ipc, "seed": seed}, {})
