"""What each chapter costs: FLOPs, steps and predicted minutes, per profile and device.

A chapter's time is predicted from the work its profile asks for, counted term by term over the
same networks, sizes and loops the chapter (and the package functions it calls) use::

    minutes = (conv FLOPs / (conv efficiency × peak) + dense FLOPs / (dense efficiency × peak)
               + steps × per-step overhead + host seconds + chapter overhead) / 60

- **FLOPs** of one image through a network come from :func:`dcprivacy.nets.conv_flops` (convolutions
  and linear layers, multiply-adds × 2; normalisation, ReLU and pooling are memory-bound and priced
  into the efficiency). A training step costs 3× the forward pass (forward, then a backward of
  about twice its work); DM's real images need a forward pass only (they are embedded without a
  graph); gradient matching's synthetic side costs about 7× a forward pass (forward, a backward that
  keeps its graph, and the backward through that backward).
- **Steps** are optimiser steps and other launch-bound units (one evaluation batch, one class's
  gradient in a per-class loop): on a GPU with small networks they, not the FLOPs, set the pace.
- **Host seconds** are work that runs on the CPU whatever the device: bootstrap resamples of the
  attack metrics, scikit-image SSIM, privacy accounting.
- **The dataset** is the profile's (``Profile.dataset``, set by :func:`dcprivacy.config.get_profile` from
  ``DCPRIVACY_DATASET``): its channels and image size enter every network's FLOPs, its pixels ``d`` the
  pixel-space work (chapters 3, 6, 7), its training and test sizes the "whole set" terms
  (:func:`data_info`; the module constants below are FashionMNIST's).

Each experiment of the book has one function here (``dm``, ``gradient_matching``, ``evaluate``,
``mia_experiment``, ...) returning a :class:`Work`; a chapter's cost is the sum of the terms of the
experiments it runs (``CHAPTERS``). When a chapter gains an experiment, add its term to that
chapter's function with the same building blocks (see the module's tests).

``python -m dcprivacy cost --profile standard --device t4`` prints the table;
``python -m dcprivacy cost --timings FILE`` adds the chapter times of a whole-book run beside the
predictions (a report: the tests check the model's arithmetic, never a machine's speed);
``python -m dcprivacy cost --fit`` re-fits the CPU constants to the chapter times of the committed
whole-book record (``results/timings/book-quick-cpu.json``, written by ``bash tools/book.sh --record``
on a quiet machine; ``--timings FILE`` fits another run) and writes them to
``results/timings/calibration-cpu.json``, which :func:`predict` then uses.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from .config import PROFILES, Profile, for_dataset, get_profile
from .data import INFO, DatasetInfo, dataset_name

NUM_CLASSES = 10  # classes of FashionMNIST
D = 784  # pixels of one FashionMNIST image (HOST's SSIM time was measured on such images)
EVAL_BATCH = 256  # dcprivacy.train.predict's batch
TRAIN_BATCH = 256  # dcprivacy.train.TrainConfig's default batch (the literature's)
FWD_BWD = 3  # a training step: forward + backward (≈ 2× the forward)
DOUBLE_BACKWARD = 7  # gradient matching's synthetic side: forward, backward with graph, backward of that
DEVICES = ("cpu", "t4", "h200")

# the dataset being priced: set by chapter_work (from the profile) and pricing(); else the active one
_PRICED: ContextVar[str | None] = ContextVar("dcprivacy_cost_dataset", default=None)


def data_info() -> DatasetInfo:
    """The dataset whose work is being priced (:func:`pricing`), else the active one (``DCPRIVACY_DATASET``)."""
    return INFO[_PRICED.get() or dataset_name()]


@contextmanager
def pricing(dataset: str):
    """Price the work inside the ``with`` block on ``dataset`` (its image shape, ``d``, sizes)."""
    token = _PRICED.set(INFO[dataset].name)
    try:
        yield INFO[dataset]
    finally:
        _PRICED.reset(token)


# What each chapter may take (minutes), tested against the predictions: a chapter opened alone on a fresh runtime
# (chapters 5 and 8 re-creating chapter 4's experiment). Quick on 2 CPU cores: the book's CI budget (the whole
# book in order ≤ 12 minutes, ≤ 15 with the standalone re-creations); standard on a T4: a Colab session's
# attention span, 20 minutes per chapter.
BUDGET_MINUTES = {
    # Raised on 2026-12-04 (chapter 4 from 3.5, 5 alone from 4.0, 8 alone from 6.0, the book from 12): RMIA, the one-run
    # audit with its positive control, chapter 6's equal-norm control and the paired verdicts add work, and
    # the whole-book run that day took 839 s (results/timings/book-quick-cpu.json), 13.8 min predicted. Chapter 6
    # (from 1.0) and 8 alone also hold CIFAR-10's quick sizes: 1.7 and 7.6 min predicted (FashionMNIST 0.8, 7.2).
    ("quick", "cpu"): {"01-tour": 1.5, "02-condensation": 3.0, "03-linear-bound": 0.5, "04-membership-inference": 4.0,
                       "05-no-free-lunch": 5.5, "06-nonlinear": 2.0, "07-visual-privacy": 1.0,
                       "08-dp-condensation": 8.0,  # 5 and 8 standing alone: chapter 4's experiment included
                       "appendix-fast": 0.5},
    ("standard", "t4"): {stem: 20.0 for stem in ("01-tour", "02-condensation", "03-linear-bound",
                                                 "04-membership-inference", "05-no-free-lunch", "06-nonlinear",
                                                 "07-visual-privacy", "08-dp-condensation", "appendix-fast")},
}
BOOK_BUDGET_MINUTES = {("quick", "cpu"): 15.0}  # the whole book executed in order (chapter 4's experiment once)

# A device whose constants no run has measured (no calibration file: the T4 and H200 today) is held to its
# budget also at this pessimistic efficiency: convolutions at 15% of the peak instead of the assumed 25%
# (matrix products scaled alike). Measured constants (the CPU's calibration) are used as they are.
PESSIMISTIC_EFFICIENCY = 0.15


@dataclass(frozen=True)
class Device:
    """The constants of one device (see the module docstring for how they enter the prediction)."""
    name: str
    peak: float  # FLOP/s (fp32)
    conv_efficiency: float  # fraction of peak reached by ConvNet training and DM
    dense_efficiency: float  # fraction of peak reached by matrix products (linear DM, MLPs, theory)
    step_seconds: float  # overhead of one launch-bound step (optimiser step, evaluation batch)
    chapter_seconds: float  # imports, loading FashionMNIST, plotting: what every chapter pays once
    gpu_paths: bool  # stacked training and vmap gradient matching (the package's defaults on CUDA)
    note: str = ""


# Host work (the CPU beside the accelerator; the same on every device in this table), measured on
# this project's 2-core CPU: metrics.summary with 200 resamples of 16 000 scores took 0.21 s
# (6.6e-8 s per score and resample); scikit-image SSIM of one 28×28 pair 0.4 ms; one Opacus PRV
# calibration of σ 1.5–5.5 s, one ε evaluation 0.15 s. Leave-one-out LiRA (mia.leave_one_out), per target ×
# shadow × example × query: 2e-8 s (16 runs × 1000 examples × 2 queries, 0.013–0.031 s of process time on a
# loaded machine, scaled by that machine's ratio to the bootstrap figure above; to re-measure on a quiet one).
HOST = dict(bootstrap_element=6.6e-8, ssim_pair=4e-4, calibration=3.0, epsilon=0.15, lira_element=2e-8)

DEVICE_TABLE: dict[str, Device] = {
    # 2 CPU cores (this project's CI machine and Colab's CPU runtime). Peak: the convolution throughput
    # `python -m dcprivacy bench condense` measured at width 128 (results/bench/condense-cpu.json:
    # 462 GFLOP/s channels-last). The efficiencies, per-step overhead and chapter overhead that predictions
    # use are NOT these: they are fitted to the chapter times of the last whole-book run (python -m dcprivacy
    # cost --fit) and read from results/timings/calibration-cpu.json, their one source, which the wheel ships
    # (so the site and Colab print the same minutes); the numbers here are only what a checkout without that
    # file falls back to. The quick profile's narrow networks (width 8–16) reach a small fraction of what
    # width 128 reaches, and their steps are Python-bound.
    "cpu": Device("cpu", 4.6e11, 0.10, 0.036, 2.4e-4, 6.0, False,
                  "2 CPU cores; peak = measured conv throughput (results/bench/condense-cpu.json)"),
    # NVIDIA T4 (Colab's free GPU): 8.1 TFLOP/s fp32, no TF32. cuDNN reaches about a third of peak on plain
    # ConvNet-sized layers (32×32 maps, 128 channels) and less through stacked (grouped) convolutions and the
# memory-bound normalisation around them: a quarter of peak is assumed; an eager PyTorch optimiser step of a small
    # ConvNet launches ~40 kernels at ~10 µs each from Colab's slow host: ~4 ms.
    "t4": Device("t4", 8.1e12, 0.25, 0.3, 4.0e-3, 30.0, True,
                 "Colab T4: 8.1 TFLOP/s fp32 peak; constants not yet measured on one (step 0 of tools/gpu)"),
    # NVIDIA H200: 67 TFLOP/s fp32 (convolutions run in TF32 by PyTorch's default, faster still). Small
    # ConvNets cannot fill it: a quarter of the fp32 peak is assumed; a faster host launches kernels at
    # ~1.5 ms per step.
    "h200": Device("h200", 6.7e13, 0.25, 0.3, 1.5e-3, 20.0, True,
                   "H200: 67 TFLOP/s fp32 peak; constants to be recalibrated by tools/gpu step 0"),
}


def timings_dir() -> Path:
    """Where ``cost --fit`` writes a calibration (``results/timings``)."""
    from .provenance import results_dir
    return results_dir() / "timings"


def recorded_timings_dir() -> Path:
    """Where predictions read the calibrations and chapter times: ``results/timings`` of a checkout, or its
    copy shipped in the installed package (the one source of the fitted constants, on the site and on Colab)."""
    from .provenance import records_dir
    return records_dir("timings")


FITTED = ("conv_efficiency", "dense_efficiency", "step_seconds", "chapter_seconds")  # what a calibration sets


def _read_json_object(path: Path, what: str, fix: str) -> dict:
    """The JSON object in ``path``, or a one-line ``FileError`` naming the file and ``fix``."""
    from .files import FileError
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise FileError(f"{what} {path} cannot be read ({e.strerror or type(e).__name__}); {fix}") from None
    except ValueError as e:
        raise FileError(f"{what} {path} is not valid JSON ({' '.join(str(e).split())[:80]}); {fix}") from None
    if not isinstance(d, dict):
        raise FileError(f"{what} {path} holds a JSON {type(d).__name__}, not an object; {fix}")
    return d


def device_constants(device: str, *, pessimistic: bool = False) -> Device:
    """The constants of ``device``, with a fitted calibration (``results/timings/calibration-<device>.json``,
    shipped with the package) applied when one exists (a damaged one is refused with a one-line error naming
    it). ``pessimistic``: a device without one gets its efficiencies scaled down to
    :data:`PESSIMISTIC_EFFICIENCY` (see :func:`pessimistic_constants`)."""
    from .files import FileError
    if device not in DEVICE_TABLE:
        raise ValueError(f"device {device!r}: allowed values are {', '.join(DEVICE_TABLE)}")
    dev = DEVICE_TABLE[device]
    path = recorded_timings_dir() / f"calibration-{device}.json"
    if path.exists():
        fix = f"delete it to use the built-in constants, or rewrite it: python -m dcprivacy cost --fit --device {device}"
        fitted = _read_json_object(path, "calibration", fix).get("constants", {})
        if not isinstance(fitted, dict):
            raise FileError(f"calibration {path}: 'constants' must be an object; {fix}")
        values = {}
        for k, v in fitted.items():
            if k in FITTED:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                    raise FileError(f"calibration {path}: constants.{k} = {v!r} is not a positive number; {fix}")
                values[k] = float(v)
        dev = replace(dev, **values)
    elif pessimistic:
        dev = pessimistic_constants(dev)
    return dev


def pessimistic_constants(dev: Device) -> Device:
    """``dev`` with convolutions at :data:`PESSIMISTIC_EFFICIENCY` of the peak and matrix products scaled by the
    same factor (unchanged where the efficiency is already that low)."""
    k = min(1.0, PESSIMISTIC_EFFICIENCY / dev.conv_efficiency)
    return replace(dev, conv_efficiency=dev.conv_efficiency * k, dense_efficiency=dev.dense_efficiency * k)


# --- work ---------------------------------------------------------------------------------------------

@dataclass
class Work:
    """Work of one experiment (or a sum of them): FLOPs by kind, launch-bound steps, host seconds."""
    conv: float = 0.0  # FLOPs through ConvNets
    dense: float = 0.0  # FLOPs of matrix products (MLPs, linear extractors, the theory's linear algebra)
    steps: float = 0.0
    host: float = 0.0  # seconds on the host CPU
    terms: dict = field(default_factory=dict)  # name → (flops, steps, host) of each part

    @property
    def flops(self) -> float:
        return self.conv + self.dense

    def __add__(self, other: "Work") -> "Work":
        return Work(self.conv + other.conv, self.dense + other.dense, self.steps + other.steps,
                    self.host + other.host, {**self.terms, **other.terms})

    def __mul__(self, k: float) -> "Work":
        return Work(self.conv * k, self.dense * k, self.steps * k, self.host * k,
                    {n: tuple(v * k for v in t) for n, t in self.terms.items()})

    __rmul__ = __mul__

    def named(self, name: str) -> "Work":
        """The same work, recorded as one term ``name`` of its chapter."""
        return Work(self.conv, self.dense, self.steps, self.host, {name: (self.flops, self.steps, self.host)})

    def seconds(self, dev: Device) -> float:
        return (self.conv / (dev.conv_efficiency * dev.peak) + self.dense / (dev.dense_efficiency * dev.peak)
                + self.steps * dev.step_seconds + self.host)


def total(parts) -> Work:
    out = Work()
    for p in parts:
        out = out + p
    return out


def forward_flops(arch: str = "convnet", width: int = 128, depth: int = 3, *, head: bool = True) -> float:
    """FLOPs of one image of the priced dataset (:func:`data_info`) through ``arch`` (its embedding, plus the
    linear head with ``head``)."""
    info = data_info()
    return _forward_flops(arch, width, depth, head, info.channels, info.im_size, info.num_classes)


@lru_cache(maxsize=None)
def _forward_flops(arch, width, depth, head, channels, im_size, num_classes) -> float:
    from .nets import conv_flops, make_net
    kw = dict(width=width) if arch == "linear" else dict(width=width, depth=depth)
    net = make_net(arch, channels=channels, im_size=im_size, num_classes=num_classes, **kw)
    return float(conv_flops(net, im_size=im_size, channels=channels) + (2 * net.feature_dim * num_classes if head else 0))


# An MLP's or linear extractor's optimiser step launches a few matrix products where a ConvNet's launches
# convolutions, normalisations and poolings: on the project's 2-core CPU a training step of the MLP (64, 2) on
# 40 images took 0.78 ms, of a width-8 ConvNet 6.4 ms (train_models, 200 epochs each). Such steps count as
# this fraction of a ConvNet step.
DENSE_STEP_FRACTION = 0.12


def _kind(arch: str, flops: float, steps: float, host: float = 0.0) -> Work:
    if arch == "convnet":
        return Work(conv=flops, steps=steps, host=host)
    return Work(dense=flops, steps=steps * DENSE_STEP_FRACTION, host=host)


def train(n: float, epochs: int, models: int, *, arch: str = "convnet", width: int = 128, depth: int = 3,
          batch_size: int = TRAIN_BATCH, gpu_paths: bool = False) -> Work:
    """:func:`dcprivacy.train.train_models`: ``models`` networks, each on ``n`` examples for ``epochs``.
    Stacked (one step for all models) on GPU paths, one model after another otherwise."""
    flops = FWD_BWD * forward_flops(arch, width, depth) * n * epochs * models
    steps = epochs * math.ceil(n / batch_size) * (1 if gpu_paths else models)
    return _kind(arch, flops, steps)


def inference(n: float, models: int, *, queries: int = 1, arch: str = "convnet", width: int = 128, depth: int = 3,
            gpu_paths: bool = False) -> Work:
    """:func:`dcprivacy.train.predict` / ``accuracy`` / ``mia.query_logits``: forward passes only."""
    flops = forward_flops(arch, width, depth) * n * models * queries
    steps = math.ceil(n / EVAL_BATCH) * queries * (1 if gpu_paths else models)
    return _kind(arch, flops, steps)


def evaluate(n_train: float, epochs: int, models: int, *, width: int = 128, depth: int = 3, arch: str = "convnet",
             test: int | None = None, gpu_paths: bool = False) -> Work:
    """:func:`dcprivacy.condense.evaluate_synthetic`: train ``models`` on a set, test accuracy (on the whole
    test set by default)."""
    return (train(n_train, epochs, models, arch=arch, width=width, depth=depth, gpu_paths=gpu_paths)
            + inference(test or data_info().test_size, models, arch=arch, width=width, depth=depth, gpu_paths=gpu_paths))


def dm(ipc: int, iterations: int, real_per_class: float, *, classes: int = NUM_CLASSES, runs: int = 1,
       arch: str = "convnet", width: int = 128, depth: int = 3) -> Work:
    """:func:`dcprivacy.condense.distribution_matching`: per iteration, ``real_per_class`` real images of every
    class embedded without a graph (once for all ``runs`` sharing the draw), and every run's synthetic
    images forward and backward."""
    e = forward_flops(arch, width, depth, head=False)
    per_it = e * classes * real_per_class + FWD_BWD * e * runs * classes * ipc
    return _kind(arch, per_it * iterations, iterations)


def gradient_matching(ipc: int, iterations: int, loops: tuple[int, int] | None, batch_real: float, *,
                      classes: int = NUM_CLASSES, width: int = 128, depth: int = 3, gpu_paths: bool = False) -> Work:
    """:func:`dcprivacy.condense.gradient_matching` (DC; DSA costs the same plus its cheap augmentation):
    ``outer`` gradient matches per iteration (real: forward + backward; synthetic: with the double
    backward), with ``inner`` epochs of network training on the synthetic set between them."""
    from .condense import default_loops
    outer, inner = default_loops(ipc) if loops is None else loops
    f = forward_flops("convnet", width, depth)
    match = FWD_BWD * f * classes * batch_real + DOUBLE_BACKWARD * f * classes * ipc
    net_train = (outer - 1) * inner * FWD_BWD * f * classes * ipc
    # a match: one vmap call for all classes on GPU paths, else a loop of 2 autograd calls per class
    match_steps = 2 if gpu_paths else 2 * classes + 1
    steps = outer * match_steps + (outer - 1) * inner * math.ceil(classes * ipc / TRAIN_BATCH)
    return Work(conv=(outer * match + net_train) * iterations, steps=steps * iterations)


def bootstrap(scores: float, resamples: int, summaries: int = 1) -> Work:
    """:func:`dcprivacy.metrics.summary` with ``resamples`` bootstrap resamples of ``scores`` scores, on the host."""
    return Work(host=HOST["bootstrap_element"] * scores * max(resamples, 1) * summaries)


def lira(runs: int, pool: int, attacks: int = 1, queries: int = 2) -> Work:
    """``attacks`` leave-one-out attacks (:func:`dcprivacy.pipelines.attack`) on ``runs`` runs of ``pool`` examples."""
    return Work(host=HOST["lira_element"] * runs * (runs - 1) * pool * queries * attacks)


def ssim(pairs: float) -> Work:
    """scikit-image SSIM of ``pairs`` image pairs (:mod:`dcprivacy.visual`), on the host: measured on 28×28
    grey pairs, in proportion to the pixels (one pass per channel) for other images."""
    return Work(host=HOST["ssim_pair"] * pairs * data_info().dim / D)


def accounting(calibrations: int = 0, evaluations: int = 0) -> Work:
    """Opacus accountant calls: calibrating σ to an ε, or evaluating ε of a σ, on the host."""
    return Work(host=HOST["calibration"] * calibrations + HOST["epsilon"] * evaluations)


# --- pipelines (chapters 4, 5, 8) -----------------------------------------------------------------------

def mia_pipeline(name: str, cfg, *, gpu_paths: bool = False) -> Work:
    """:func:`dcprivacy.pipelines.run_pipeline`: K runs of one pipeline on the IN halves of the pool,
    every model scored on the whole pool and on ``test_size`` test images (2 queries each: the plain one
    gives the accuracy, both RMIA's population scores)."""
    K, half = cfg.runs, cfg.pool / 2
    net = dict(width=cfg.width, depth=3, gpu_paths=gpu_paths)
    small = NUM_CLASSES * cfg.ipc
    if name == "real":
        w = train(half, cfg.epochs, K, batch_size=cfg.batch_size, **net)
    elif name == "subset":
        w = train(small, cfg.epochs_small, K, batch_size=cfg.batch_size, **net)
    else:
        if name in ("dm", "dm-noise"):
            real = min(cfg.batch_real, half / NUM_CLASSES)
            if cfg.shared_draws:  # one batch for all K runs: 2·batch_real pool images per class
                cond = dm(cfg.ipc, cfg.dm_iterations, min(2 * cfg.batch_real, cfg.pool / NUM_CLASSES), runs=K,
                          width=cfg.width)
            else:
                cond = K * dm(cfg.ipc, cfg.dm_iterations, real, width=cfg.width)
        else:
            cond = K * gradient_matching(cfg.ipc, cfg.dc_iterations, cfg.dc_loops,
                                         min(cfg.batch_real, half / NUM_CLASSES), width=cfg.width,
                                         gpu_paths=gpu_paths)
        w = cond + train(small, cfg.epochs_small, K, batch_size=cfg.batch_size, **net)
    test = cfg.test_size or data_info().test_size
    return (w + inference(cfg.pool, K, queries=2, width=cfg.width, gpu_paths=gpu_paths)
            + inference(test, K, queries=2, width=cfg.width, gpu_paths=gpu_paths)).named(f"pipeline {name}")


def mia_experiment(cfg, *, gpu_paths: bool = False) -> Work:
    """:func:`dcprivacy.pipelines.run_experiment`: every pipeline of ``cfg.pipelines``."""
    return total(mia_pipeline(p, cfg, gpu_paths=gpu_paths) for p in cfg.pipelines)


# --- chapters -------------------------------------------------------------------------------------------

def ch01_tour(p: Profile, dev: Device) -> Work:
    t, g = p.tour, dev.gpu_paths
    return total(evaluate(NUM_CLASSES * k, t.epochs, t.models, width=t.width, gpu_paths=g).named(f"{k}/class")
                 for k in t.per_class)


def appendix_fast(p: Profile, dev: Device) -> Work:
    """The appendix "How the code is fast": the same in every profile. It reads the recorded benchmarks
    (results/bench/*.json, no work), trains 3 tiny models stacked and alone, compares DM's gradient with a
    bfloat16 and a float32 real side, and probes this machine's
    convolution speed once (:func:`dcprivacy.bench.conv_throughput` at width 128, batch 64, 16×16 maps:
    4 calls of a 4.8-GFLOP convolution in each layout and 4 of a 17-GFLOP GEMM — priced as convolution
    FLOPs, as the probe runs near the machine's peak, not at the narrow networks' fitted efficiency)."""
    check = 2 * train(50, 3, 3, width=8, batch_size=16, gpu_paths=False)  # stacked vs alone, tiny
    probe = Work(conv=2 * 4 * 2 * 64 * 128 * 128 * 9 * 16 * 16 + 4 * 2 * 2048 ** 3, steps=16)
    # bfloat16 against float32: on 2 networks of width 128, 3 DM gradients of 64 real images per class
    rounding = 2 * dm(2, 3, 64, width=128)
    return check.named("stacked check") + probe.named("conv throughput probe") + rounding.named("bfloat16 check")


def ch02_condensation(p: Profile, dev: Device) -> Work:
    c, g = p.condense, dev.gpu_paths
    pool = c.per_class_pool or data_info().train_per_class
    real = min(c.batch_real, pool)
    ipc = 10 if 10 in c.ipc else c.ipc[-1]
    net = dict(width=c.width, depth=c.depth)
    w = 2 * dm(ipc, c.dm_iterations, real, **net).named(f"DM real+noise ipc {ipc}")
    w = w + 2 * gradient_matching(ipc, c.dc_iterations, c.dc_loops, real, gpu_paths=g, **net).named("DC+DSA")
    for k in c.ipc:
        if k != ipc:
            w = w + dm(k, c.dm_iterations, real, **net).named(f"DM ipc {k}")
    ev = dict(models=c.eval_models, gpu_paths=g, **net)
    w = w + evaluate(NUM_CLASSES * ipc, c.eval_epochs_dm, **ev).named("evaluate DM real") * 3  # DM real, DM noise, DSA
    w = w + evaluate(NUM_CLASSES * ipc, c.eval_epochs_dc, **ev).named("evaluate DC")
    for k in c.ipc:  # the random start of every ipc, and DM at the other ipcs
        w = w + evaluate(NUM_CLASSES * k, c.eval_epochs_dm, **ev).named(f"evaluate random {k}") * (1 if k == ipc else 2)
    w = w + evaluate(NUM_CLASSES * ipc, c.eval_epochs_dc, **ev).named("evaluate random, no aug")
    w = w + evaluate(NUM_CLASSES * pool, c.eval_epochs_whole, **ev).named("evaluate whole pool")
    return w


def ch03_linear_bound(p: Profile, dev: Device) -> Work:
    t = p.theory
    N, k, m, D, TEST_SIZE = data_info().train_per_class, t.k, t.ipc, data_info().dim, data_info().test_size
    randn = 10  # FLOP-equivalents of one normal draw
    main = Work(dense=t.iterations * (4 * NUM_CLASSES * k * D + randn * k * D), steps=t.iterations).named("linear DM")
    n0, v = t.n_grid[0], t.validate
    loo = Work(dense=t.iterations * (4 * NUM_CLASSES * (v + 1) * k * D + randn * k * D) + NUM_CLASSES * v * n0 * D,
               steps=2 * t.iterations).named("leave-one-out loop")
    grid = Work(dense=sum(3 * NUM_CLASSES * n * D + 10 * NUM_CLASSES * t.removals * mm * D
                          for n in t.n_grid for mm in t.m_grid),
                steps=10 * len(t.n_grid) * len(t.m_grid)).named("sensitivity grid")
    lang = Work(dense=t.langevin_steps * t.chains * NUM_CLASSES * D * (5 + randn)
                + 2 * TEST_SIZE * t.chains * NUM_CLASSES * D,
                steps=t.langevin_steps).named("Langevin")
    rest = Work(dense=8 * NUM_CLASSES * N * D * (len(t.n_grid) + 4), steps=200).named("closed forms")
    return main + loo + grid + lang + rest


def ch04_membership_inference(p: Profile, dev: Device) -> Work:
    cfg = p.mia
    # the table: loss, LiRA online and offline, RMIA online and offline, per pipeline; the reference-model
    # table on the real pipeline: RMIA with 1 model per side, LiRA and RMIA with 2 and 4 (all: the table's);
    # the verdict: a paired bootstrap of real against each condensed pipeline
    attacks = bootstrap(cfg.runs * cfg.pool, cfg.bootstrap, 5 * len(cfg.pipelines) + 10).named("attacks")
    condensed = sum(p_ not in ("real", "subset") for p_ in cfg.pipelines)
    verdict = bootstrap(cfg.runs * cfg.pool, 5 * cfg.bootstrap, condensed + 1).named("paired verdict")
    return mia_experiment(cfg, gpu_paths=dev.gpu_paths) + attacks + verdict


def _ch05_own(cfg) -> Work:
    return bootstrap(cfg.runs * cfg.pool, cfg.bootstrap, len(cfg.pipelines) + 4).named("attacks")


def ch05_no_free_lunch(p: Profile, dev: Device) -> Work:
    """Chapter 5's own work; it re-creates chapter 4's experiment when the cache is empty (see ``RECREATES``).

    Beyond re-reading chapter 4's scores: the subset-size sweep (:func:`dcprivacy.pipelines.run_subset_sweep`:
    K ``subset`` runs at every size of ``cfg.subset_sizes`` but ``cfg.ipc``, which chapter 4 trained); every
    attack of ``pipelines.ATTACKS`` on every point of the privacy–utility frontier (every size, the real
    pipeline, the condensed ones) to choose the strongest; one summary per point on the test half (half the
    pool) and per group of DM's and the subset's members (two groups, four φ-based attacks); and the paired
    bootstraps (5 × ``cfg.bootstrap`` resamples) of the initialisers' comparison (offline LiRA, then each of
    the four) and of the verdict (every point
    on the test half at once).
    """
    from .pipelines import ATTACKS
    cfg = p.mia
    sizes = [k for k in cfg.subset_sizes if k != cfg.ipc]
    sweep = total(mia_pipeline("subset", replace(cfg, ipc=k), gpu_paths=dev.gpu_paths) for k in sizes)
    points = len(cfg.subset_sizes) + 1 + sum(p_ not in ("real", "subset") for p_ in cfg.pipelines)
    choose = lira(cfg.runs, cfg.pool, points * len(ATTACKS) + 4).named("strongest attacks")
    summaries = (bootstrap(cfg.runs * cfg.pool / 2, cfg.bootstrap, points)
                 + bootstrap(cfg.runs * cfg.pool, cfg.bootstrap, 2 * 8)).named("frontier and subset groups")
    # at least 20 resamples beyond each end of a Bonferroni interval (the chapter's family_resamples)
    family = lambda tests: max(5 * cfg.bootstrap, math.ceil(40 * tests / 0.05))
    condensed = sum(p_ not in ("real", "subset") for p_ in cfg.pipelines)
    paired = (bootstrap(cfg.runs * cfg.pool / 2, family(3 * condensed), points)
              + bootstrap(cfg.runs * cfg.pool * 0.6, 5 * cfg.bootstrap, 2)
              + bootstrap(cfg.runs * cfg.pool * 0.6, family(4), 2 * 4)).named("paired tests")
    return _ch05_own(cfg) + sweep.named("subset-size sweep") + choose + summaries + paired


def ch06_nonlinear(p: Profile, dev: Device) -> Work:
    nl, g = p.nonlinear, dev.gpu_paths
    n_max, its = max(nl.n_grid), max(nl.iterations)
    G, R, P = len(nl.n_grid), nl.removals + 1, nl.removals  # P: the perturbed runs (non-initialisers)

    def removal(arch, width, depth, m, iterations=its):
        """sensitivity.removal_shifts(perturb=True): one DM call, G·(2 + R + P) runs; the pool holds the
        G·P perturbed copies after the n_max real images."""
        return dm(m, iterations, n_max + G * P, classes=1, runs=G * (2 + R + P), arch=arch, width=width,
                  depth=depth)

    keys = set()  # the chapter's `measure` cache: (arch, width, depth, m, repeat, step)
    for arch, (width, depth) in (("mlp", nl.mlp), ("convnet", nl.convnet)):
        for m in nl.m_grid:
            keys |= {(arch, width, depth, m, rep, nl.lr_img) for rep in range(nl.repeats)}
        for v in nl.widths:
            keys.add((arch, v, depth, nl.sweep_m, 0, nl.lr_img))
        for v in nl.depths:
            keys.add((arch, width, v, nl.sweep_m, 0, nl.lr_img))
    keys |= {("convnet", *nl.convnet, min(nl.m_grid), rep, lr) for lr in nl.lr_sweep for rep in range(nl.repeats)}
    w = total(removal(a, wd, dp, m).named(str(key)) for key in sorted(keys) for (a, wd, dp, m, _, _) in [key])
    from .theory import linear_dm_contraction
    lin_its = int(math.ceil(math.log(1e-10) / math.log(linear_dm_contraction(nl.linear_k, data_info().dim, 1.0))))
    w = w + removal("linear", nl.linear_k, 1, nl.sweep_m, lin_its).named("linear control")
    runs = 1 + 2 * nl.targets
    w = w + dm(nl.model_ipc, its, nl.pool, runs=runs, width=nl.convnet[0], depth=nl.convnet[1]).named("DM T and T∖{x'}")
    arch, width, depth = nl.model
    w = w + runs * (train(NUM_CLASSES * nl.model_ipc, nl.train_epochs, nl.train_seeds, arch=arch, width=width,
                          depth=depth, gpu_paths=g)
                    + inference(2 * nl.targets, nl.train_seeds, arch=arch, width=width, depth=depth, gpu_paths=g)
                    ).named("models on the sets")
    # the slopes' intervals are t intervals over repeats (no resampling); standardized_shift bootstraps the seeds
    w = w + bootstrap(2 * nl.train_seeds, nl.bootstrap, 2 * nl.targets).named("bootstrap")
    return w


def ch07_visual_privacy(p: Profile, dev: Device) -> Work:
    v, g = p.visual, dev.gpu_paths
    pool = v.per_class_pool or data_info().train_per_class
    real = min(v.batch_real, pool)
    net = dict(width=v.width, depth=v.depth)
    w = 2 * dm(v.ipc, v.dm_iterations, real, classes=v.classes, **net).named("DM")
    w = w + 4 * gradient_matching(v.ipc, v.dc_iterations, v.dc_loops, real, classes=v.classes, gpu_paths=g,
                                  **net).named("DC+DSA")
    Q, P = v.classes * v.ipc, v.classes * pool
    snaps = 2 * len(v.dm_snapshots) + 4 * len(v.dc_snapshots)
    per_snapshot = ssim(Q * (v.candidates + 1 + v.others + 1)) + Work(dense=3 * Q * P * data_info().dim)
    w = w + (snaps * per_snapshot).named("nearest images")
    w = w + ssim(6 * v.exact_check * P + Q * v.candidates).named("exhaustive SSIM check, test images")
    return w


# Host work of chapter 8's audit, on the same 2-core CPU: one simulated white-box release of one canary (a
# Bernoulli, a normal and a log-likelihood term) ≈ 5e-8 s.
AUDIT_SIM_ELEMENT = 5e-8


def _attacks_host(runs: int, pool: int, shadows: int, attacks: int | None = None) -> Work:
    """Every attack of ``pipelines.ATTACKS`` (default: all of them) run on ``runs`` targets with ``shadows``
    shadows each, over ``pool`` examples and 2 queries, on the host: :func:`lira`'s cost per element."""
    from .pipelines import ATTACKS
    n = len(ATTACKS) if attacks is None else attacks
    return Work(host=HOST["lira_element"] * n * runs * shadows * pool * 2)


def ch08_dp_condensation(p: Profile, dev: Device) -> Work:
    d, g = p.dp, dev.gpu_paths
    per_class, TEST_SIZE = d.per_class_pool or data_info().train_per_class, data_info().test_size
    n = NUM_CLASSES * per_class
    eps = len(d.epsilons) + 1
    e = forward_flops("convnet", d.width, 3, head=False)

    def dp_dm(n_real, iterations):  # DP-DM: q·n real images embedded, the synthetic set forward + backward
        return Work(conv=iterations * (e * d.sample_rate * n_real + FWD_BWD * e * NUM_CLASSES * d.ipc),
                    steps=iterations)

    def dp_sgd(n_real, models):  # Opacus, one model after another; per-sample gradients ≈ one more backward
        batches = d.dpsgd_epochs * math.ceil(1 / d.dpsgd_sample_rate)
        return Work(conv=(FWD_BWD + 1) * forward_flops("convnet", d.width, 3) * n_real * d.dpsgd_epochs * models,
                    steps=3 * batches * models)

    ev = evaluate(NUM_CLASSES * d.ipc, d.eval_epochs, d.eval_models, width=d.width, gpu_paths=g)
    dm_plain = dm(d.ipc, d.iterations, max(1, round(d.sample_rate * per_class)), width=d.width)
    w = (eps * (dp_dm(n, d.iterations) + ev)).named("DP-DM sweep")
    w = w + (eps * dp_sgd(n, 1) + eps * inference(TEST_SIZE, 1, width=d.width)).named("DP-SGD sweep")
    w = w + (dm_plain + ev).named("DM plain")
    # the attacked ε over seeds: DP-DM, DP-SGD and DM from real images for seeds 1 … S − 1, random real images for all S
    S = d.seeds
    w = w + ((S - 1) * (dp_dm(n, d.iterations) + ev + dp_sgd(n, 1) + inference(TEST_SIZE, 1, width=d.width) + dm_plain
                        + ev) + S * ev).named(
        "seeds at the attacked ε")
    # σ calibrations are cached per (ε, δ, q, T): one per ε for DP-DM (shared with the accounting section),
    # one per ε for DP-SGD; the accounting section's curves evaluate ε at 8 σ with 2 accountants
    w = w + accounting(calibrations=2 * len(d.epsilons), evaluations=16 + 3 * len(d.epsilons)).named("accounting")
    K, half = d.attack_runs, d.attack_pool / 2
    test = d.attack_test or TEST_SIZE
    scored = 2 * (inference(d.attack_pool, K, queries=2, width=d.width, gpu_paths=g)
                  + inference(test, K, queries=2, width=d.width, gpu_paths=g))  # as mia_pipeline scores
    w = w + (K * dp_dm(half, d.iterations) + train(NUM_CLASSES * d.ipc, d.eval_epochs, K, width=d.width, gpu_paths=g)
             + dp_sgd(half, K) + scored + accounting(calibrations=1)).named("attacked DP pipelines")
    # every attack, each target against the other half: an upper bound (cross_attack scores LiRA and the loss
    # attack per half, vectorised; any other attack takes K calls of K/2 + 1 runs, as counted here)
    w = w + (2 * _attacks_host(K * (K // 2 + 1), d.attack_pool, K // 2)
             + bootstrap(K * d.attack_pool, p.mia.bootstrap, 2)).named("attacks")
    # the one-run audit: one run of each of 5 pipelines on the attack pool and the included image canaries
    n_a = d.attack_pool + d.audit_image_canaries / 2
    release_models = (train(NUM_CLASSES * d.ipc, d.eval_epochs, d.audit_models, width=d.width, gpu_paths=g)
                      + inference(d.audit_image_canaries, d.audit_models, queries=2, width=d.width, gpu_paths=g)
                      + inference(test, d.audit_models, width=d.width, gpu_paths=g))
    one_model = inference(d.audit_image_canaries, 1, queries=2, width=d.width) + inference(test, 1, width=d.width)
    w = w + (3 * (dp_dm(n_a, d.iterations) + release_models) + 2 * (dp_sgd(n_a, 1) + one_model)
             + accounting(calibrations=1, evaluations=4)).named("one-run audit")
    sims = sum(d.audit_power_canaries) * d.iterations * 6  # 6 noise divisors at every canary count
    w = w + (Work(host=AUDIT_SIM_ELEMENT * sims) + accounting(evaluations=6)).named("audit power (simulated)")
    # chapter 5's rows and frontier: every attack on every pipeline and subset size, the strongest bootstrapped
    m = p.mia
    points = len(m.pipelines) + len(m.subset_sizes) + 1
    w = w + (_attacks_host(m.runs * points, m.pool, m.runs - 1)
             + bootstrap(m.runs * m.pool, m.bootstrap, points)).named("chapter 5's rows and frontier")
    return w


def _chapter8_standalone(p: Profile, dev: Device) -> Work:
    """Chapter 8 alone with an empty cache: chapter 4's experiment, and the smallest subset size of chapter 5's
    frontier, one image per class (the rest of chapter 5's sweep is drawn only when chapter 5 cached it)."""
    small = mia_pipeline("subset", replace(p.mia, ipc=1), gpu_paths=dev.gpu_paths) if p.mia.ipc != 1 else Work()
    return _chapter4_models(p, dev) + small.named("subset size 1 (re-created)")


def _chapter4_models(p: Profile, dev: Device) -> Work:
    return mia_experiment(p.mia, gpu_paths=dev.gpu_paths).named("chapter 4's experiment (re-created)")


CHAPTERS = {
    "01-tour": ch01_tour,
    "02-condensation": ch02_condensation,
    "03-linear-bound": ch03_linear_bound,
    "04-membership-inference": ch04_membership_inference,
    "05-no-free-lunch": ch05_no_free_lunch,
    "06-nonlinear": ch06_nonlinear,
    "07-visual-privacy": ch07_visual_privacy,
    "08-dp-condensation": ch08_dp_condensation,
    "appendix-fast": appendix_fast,  # the appendices, after the numbered chapters
}

# What a chapter re-creates from an earlier chapter when it runs alone with an empty cache; in a whole-book
# run the earlier chapter has filled the cache and this work is skipped.
RECREATES = {"05-no-free-lunch": _chapter4_models, "08-dp-condensation": _chapter8_standalone}


def _profile(profile, dataset: str | None) -> Profile:
    """The profile by name (sized for ``dataset``), or a given one as it is — re-sized only for another
    dataset, so that a custom profile keeps its own sizes."""
    if isinstance(profile, Profile):
        return profile if dataset is None or dataset == profile.dataset else for_dataset(profile, dataset)
    return get_profile(profile, dataset=dataset)


def chapter_work(stem: str, profile: str | Profile | None = None, device: str = "cpu", *,
                 in_book: bool = False, dataset: str | None = None) -> Work:
    """The :class:`Work` of chapter ``stem`` (standing alone, or after the earlier chapters with ``in_book``),
    on ``dataset`` (default: the profile's, i.e. the active dataset for a profile given by name)."""
    if stem not in CHAPTERS:
        raise ValueError(f"chapter {stem!r}: allowed values are {', '.join(CHAPTERS)}")
    p = _profile(profile, dataset)
    dev = device_constants(device)
    with pricing(p.dataset):
        work = CHAPTERS[stem](p, dev)
        if not in_book and stem in RECREATES:
            work = work + RECREATES[stem](p, dev)
    return work


def chapter_seconds(stem: str, profile=None, device: str = "cpu", *, in_book: bool = False,
                    dataset: str | None = None, pessimistic: bool = False) -> float:
    dev = device_constants(device, pessimistic=pessimistic)
    return chapter_work(stem, profile, device, in_book=in_book, dataset=dataset).seconds(dev) + dev.chapter_seconds


def chapter_minutes(stem: str, profile: str, device: str, dataset: str | None = None, *,
                    pessimistic: bool = False) -> float:
    """Predicted minutes of chapter ``stem`` opened by itself (on a fresh runtime, with an empty cache), on
    ``dataset`` (default: the active one); ``pessimistic``: at :data:`PESSIMISTIC_EFFICIENCY` on a device whose
    constants are not measured."""
    return chapter_seconds(stem, profile, device, dataset=dataset, pessimistic=pessimistic) / 60


def over_budget(profile: str, device: str, *, pessimistic: bool = True,
                dataset: str | None = None) -> dict[str, tuple[float, float | None]]:
    """The chapters of ``profile`` on ``device`` predicted, opened alone on a fresh runtime, above their budget
    (:data:`BUDGET_MINUTES`), or without one: ``{stem: (minutes, budget or None)}``, empty when all fit. By
    default at the pessimistic end (:func:`pessimistic_constants`) where the device's constants are assumed.
    ``dataset``: default the active one (``DCPRIVACY_DATASET``), the profile sized for it."""
    budget = BUDGET_MINUTES[profile, device]
    out = {}
    for stem in CHAPTERS:
        minutes = chapter_minutes(stem, profile, device, dataset, pessimistic=pessimistic)
        if stem not in budget or minutes > budget[stem]:
            out[stem] = (minutes, budget.get(stem))
    return out


def predict(profile: str, device: str, dataset: str | None = None) -> dict:
    """Predicted work and minutes of every chapter: ``{"profile", "device", "dataset", "constants", "chapters":
    {stem: {"flops", "steps", "minutes", "minutes_pessimistic", "minutes_in_book", "host_seconds", "terms"}},
    "total_minutes", "total_minutes_in_book"}``. ``minutes``: the chapter alone on a fresh runtime (what a
    reader who opens it on Colab waits); ``minutes_pessimistic``: the same at :data:`PESSIMISTIC_EFFICIENCY`
    where the device's constants are assumed; ``minutes_in_book``: after the earlier chapters filled the
    cache (a whole-book run). ``dataset``: default the active one (``DCPRIVACY_DATASET``)."""
    dev = device_constants(device)
    p = _profile(profile, dataset)  # validates the names
    dataset = p.dataset
    chapters = {}
    for stem in CHAPTERS:
        w = chapter_work(stem, p, device)
        chapters[stem] = {
            "flops": w.flops, "steps": w.steps, "host_seconds": w.host,
            "minutes": (w.seconds(dev) + dev.chapter_seconds) / 60,
            "minutes_pessimistic": chapter_seconds(stem, p, device, pessimistic=True) / 60,
            "minutes_in_book": chapter_seconds(stem, p, device, in_book=True) / 60,
            "terms": {k: {"flops": f, "steps": s, "host_seconds": h} for k, (f, s, h) in w.terms.items()},
        }
    return {"profile": profile, "device": device, "dataset": dataset, "constants": {**asdict(dev), "host": HOST},
            "chapters": chapters, "total_minutes": sum(c["minutes"] for c in chapters.values()),
            "total_minutes_in_book": sum(c["minutes_in_book"] for c in chapters.values())}


# --- calibration ------------------------------------------------------------------------------------------

def recorded_timings_path(profile: str = "quick", device: str = "cpu") -> Path:
    """The committed record of a whole-book run on a quiet machine: ``results/timings/book-<profile>-<device>.json``
    (written by ``bash tools/book.sh --record``; a plain ``book.sh`` run writes its times under ``_build/``),
    read from the checkout or from the copy shipped in the installed package."""
    return recorded_timings_dir() / f"book-{profile}-{device}.json"


def read_timings(path) -> dict[str, float]:
    """The per-chapter seconds of a whole-book timings record (as :mod:`dcprivacy.timings` writes it), checked:
    an object ``chapters`` of chapter stems to positive seconds. Errors are one line naming the file."""
    from .files import FileError
    path = Path(path)
    fix = "give a record written by tools/book.sh (a whole-book run)"
    if not path.exists():
        raise FileError(f"timings {path}: no such file; run `bash tools/book.sh` (which writes its times under "
                        f"_build/timings/) and pass that file, or `bash tools/book.sh --record` to record them here")
    chapters = _read_json_object(path, "timings", fix).get("chapters")
    if not isinstance(chapters, dict) or not chapters:
        raise FileError(f"timings {path}: no 'chapters' object of chapter times; {fix}")
    out = {}
    for stem, seconds in chapters.items():
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (0 < seconds < math.inf):
            raise FileError(f"timings {path}: chapters.{stem} = {seconds!r} is not a positive number of seconds")
        out[str(stem)] = float(seconds)
    if not set(out) & set(CHAPTERS):
        raise FileError(f"timings {path}: none of its chapters ({', '.join(out)}) is a chapter of the book")
    return out


def measured_timings(profile: str = "quick", device: str = "cpu") -> dict:
    """Per-chapter seconds of the committed whole-book record (:func:`recorded_timings_path`)."""
    return read_timings(recorded_timings_path(profile, device))


def compare(measured: dict, profile: str = "quick", device: str = "cpu") -> dict:
    """Measured whole-book chapter times beside the predictions (in the book's order, caches warm):
    ``{stem: {"measured_seconds", "predicted_seconds", "measured_over_predicted"}}``. A report of
    how this machine compares with the model, for a printout; nothing checks it."""
    out = {}
    for stem in CHAPTERS:
        if stem in measured:
            predicted = chapter_seconds(stem, profile, device, in_book=True)
            out[stem] = {"measured_seconds": measured[stem], "predicted_seconds": predicted,
                         "measured_over_predicted": measured[stem] / predicted}
    return out


def fit(profile: str = "quick", device: str = "cpu", measured: dict | None = None) -> dict:
    """Fit ``conv_efficiency``, ``dense_efficiency``, ``step_seconds`` and ``chapter_seconds`` of ``device``
    to measured whole-book chapter times (least squares on log time ratios, over a grid, with a penalty on
    any ratio beyond 1.4), and return the constants with the ratios predicted / measured they leave.
    ``measured``: chapter stem → seconds (default: the committed record, :func:`measured_timings`)."""
    import numpy as np
    measured = measured_timings(profile, device) if measured is None else measured
    base = replace(DEVICE_TABLE[device])
    stems = [s for s in CHAPTERS if s in measured]
    if not stems:
        raise ValueError(f"fit: no chapter of the book among the measured times ({', '.join(measured)})")
    p = get_profile(profile, dataset="fashionmnist")  # the recorded runs are the book's, on FashionMNIST
    with pricing(p.dataset):
        works = [CHAPTERS[s](p, base) for s in stems]  # in the book's order: nothing re-created
    # every point of the grid at once: axes (conv efficiency, dense efficiency, step seconds, chapter seconds, chapter)
    ce = np.geomspace(0.01, 1.0, 41)[:, None, None, None, None]
    de = np.geomspace(0.005, 1.0, 41)[None, :, None, None, None]
    ss = np.geomspace(1e-4, 2e-2, 25)[None, None, :, None, None]
    cs = np.array([1.0, 2.0, 4.0, 6.0])[None, None, None, :, None]
    conv, dense, steps, host = (np.array([getattr(w, k) for w in works]) for k in ("conv", "dense", "steps", "host"))
    seconds = conv / (ce * base.peak) + dense / (de * base.peak) + steps * ss + host + cs
    r = np.log(seconds / np.array([measured[s] for s in stems]))
    score = (r ** 2).sum(-1) + 10 * np.maximum(0.0, np.abs(r).max(-1) - math.log(1.4)) ** 2
    i, j, k, l = np.unravel_index(np.argmin(score), score.shape)  # (the first of equal scores, as a loop would)
    constants = {"conv_efficiency": float(ce.flat[i]), "dense_efficiency": float(de.flat[j]),
                 "step_seconds": float(ss.flat[k]), "chapter_seconds": float(cs.flat[l])}
    return {"constants": constants, "ratios": {s: float(math.exp(x)) for s, x in zip(stems, r[i, j, k, l])},
            "profile": profile, "device": device}


__all__ = ["predict", "chapter_minutes", "over_budget", "pessimistic_constants", "PESSIMISTIC_EFFICIENCY",
           "chapter_work", "chapter_seconds", "Work", "Device", "DEVICE_TABLE", "data_info", "pricing", "CHAPTERS",
           "fit", "measured_timings", "read_timings", "recorded_timings_path", "compare", "train", "evaluate", "dm",
           "gradient_matching", "mia_pipeline",
           "mia_experiment", "inference", "bootstrap", "ssim", "accounting", "forward_flops"]
