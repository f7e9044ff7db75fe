"""Pipelines under attack: how a training set becomes a model, K times over.

A *pipeline* maps the IN half of a pool of real examples (and a seed) to a trained model:

- ``real``: train on the IN half itself — the undefended baseline;
- ``subset``: train on ``ipc`` random IN examples per class — the naive baseline of the critique
  (as many real images as the synthetic set has); its ``init_mask`` marks the images it trained on,
  as a condensed pipeline's marks its initialisers (:func:`run_subset_sweep`: the same at several sizes);
- ``dm``, ``dm-noise``: condense the IN half by distribution matching (real or noise init), train on
  the synthetic set;
- ``dc``, ``dsa``: the same with gradient matching (noise init) and with DSA (real init).
- ``dp-dm``, ``dp-sgd`` (:func:`run_dp_pipeline`, chapter 8): DP distribution matching and DP-SGD at
  a given (ε, δ), for the same attacks.

:func:`run_pipeline` runs K of them — one per membership mask — and returns what the attacks need:
every model's scores on every pool example and on the test images (its test accuracy, and RMIA's
population: images that no run trained on), and which pool examples initialised each run's synthetic set. The K models are trained with :func:`dcprivacy.train.train_models`
(vectorized where the device gains from it); the K condensations run one after another with
independent randomness, since shadow models that shared the target's random draws would know more
than any attacker.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .augment import DEFAULT_STRATEGY
from .config import DP, MIA, progress
from .mia import logit_scaled_confidence, membership_masks, query_logits
from .nets import net_factory
from .train import TrainConfig, train_models

PIPELINES = ("real", "subset", "dm", "dm-noise", "dc", "dsa")


@dataclass
class PipelineRuns:
    """What K runs of one pipeline leave behind for the attacks (rows: runs, columns: pool examples)."""
    name: str
    runs: list[int]  # which of the K runs these rows are (all of them, or one shard)
    scores: torch.Tensor  # [runs, pool, queries] logit-scaled confidence φ, float64
    logits: torch.Tensor  # [runs, pool, classes] of the plain query (for the loss attack)
    test_accuracy: torch.Tensor  # [runs]
    init_mask: torch.Tensor  # [runs, pool] bool: the example initialised a synthetic image of that run
    train_size: torch.Tensor  # [runs] images each model was trained on
    seconds: float = 0.0
    config: dict = field(default_factory=dict)
    # [runs, test images, queries] φ of the test images: RMIA's population samples ζ, which no run trained on
    # (None in runs written before RMIA; RMIA then asks for them to be run again)
    population: torch.Tensor | None = None

    def to_dict(self) -> dict:
        """A plain dict of tensors and plain values (for files read with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "runs") -> "PipelineRuns":
        """The inverse of :meth:`to_dict`, checked: one row per run in every tensor."""
        from .files import FileError
        keys = ("name", "runs", "scores", "logits", "test_accuracy", "init_mask", "train_size")
        if not isinstance(d, dict) or any(k not in d for k in keys):
            raise FileError(f"{where}: not the runs of a pipeline (expected the fields {', '.join(keys)})")
        r = cls(**{k: d[k] for k in (*keys, "seconds", "config", "population") if k in d})
        n = len(r.runs)
        tensors = keys[2:] + (("population",) if r.population is not None else ())
        if any(not isinstance(getattr(r, k), torch.Tensor) or len(getattr(r, k)) != n for k in tensors):
            raise FileError(f"{where}: every tensor must have one row per run ({n})")
        if not bool(torch.isfinite(r.scores).all()) or \
                (r.population is not None and not bool(torch.isfinite(r.population).all())):
            raise FileError(f"{where}: scores hold NaN or infinite values")
        return r

    @staticmethod
    def merge(parts: Sequence["PipelineRuns"]) -> "PipelineRuns":
        """Join shards (of the same pipeline and configuration) into one, ordered by run."""
        parts = sorted(parts, key=lambda p: p.runs[0])
        if len({p.name for p in parts}) != 1:
            raise ValueError("merge: the shards belong to different pipelines")
        runs = [r for p in parts for r in p.runs]
        if len(set(runs)) != len(runs):
            raise ValueError(f"merge: runs overlap between shards ({runs})")
        cat = lambda k: torch.cat([getattr(p, k) for p in parts])
        has = [p.population is not None for p in parts]
        if any(has) and not all(has):
            raise ValueError("merge: some shards hold population scores (RMIA) and some do not: they were written "
                             "by different versions; run the older ones again")
        population = cat("population") if all(has) else None
        return PipelineRuns(parts[0].name, runs, cat("scores"), cat("logits"), cat("test_accuracy"),
                            cat("init_mask"), cat("train_size"), sum(p.seconds for p in parts), parts[0].config,
                            population)


def _subset_mask(members: torch.Tensor, y: torch.Tensor, ipc: int, seed: int) -> torch.Tensor:
    """``ipc`` random members of each class (the naive baseline's training set)."""
    g = torch.Generator(device=members.device).manual_seed(seed)
    keys = torch.rand(members.shape, generator=g, device=members.device)
    out = torch.zeros_like(members)
    for c in range(int(y.max()) + 1):
        k = keys.masked_fill(~(members & (y == c)), 2.0)
        out.scatter_(1, k.argsort(dim=1)[:, :ipc], True)
    return out & members


def _condense_run(name: str, x: torch.Tensor, y: torch.Tensor, member: torch.Tensor, cfg: MIA, seed: int, device,
                  checkpoint=None, checkpoint_every: int | None = None):
    """Condense one run's IN half; returns (images, labels, init pool indices). ``checkpoint``: a file
    to resume the condensation from and save it to (see :func:`dcprivacy.condense.distribution_matching`)."""
    from .condense import distribution_matching, gradient_matching
    pos = member.nonzero().flatten()
    kw = dict(ipc=cfg.ipc, width=cfg.width, seed=seed, indices=pos, device=device, batch_real=cfg.batch_real,
              num_classes=int(y.max()) + 1, checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    if name in ("dm", "dm-noise"):
        s = distribution_matching(x[pos], y[pos], init="real" if name == "dm" else "noise",
                                  iterations=cfg.dm_iterations, desc=f"{name} run {seed}", **kw)
    else:
        s = gradient_matching(x[pos], y[pos], iterations=cfg.dc_iterations, loops=cfg.dc_loops,
                              augment=DEFAULT_STRATEGY if name == "dsa" else None, desc=f"{name} run {seed}", **kw)
    return s.images, s.labels, s.init_indices


def _condense_shared(name: str, x: torch.Tensor, y: torch.Tensor, members: torch.Tensor, cfg: MIA, seed: int,
                     device, checkpoint=None, checkpoint_every: int | None = None) -> list[tuple]:
    """DM for all runs at once with shared random draws (``cfg.shared_draws``). Each iteration samples
    2·``batch_real`` pool images per class, so that a run, which owns about half of them, matches about
    ``batch_real`` of its own — as when it condenses alone. A run's result does not depend on which other
    runs share the batch (every draw is made for the whole pool), so shards agree."""
    from .condense import distribution_matching
    sets = distribution_matching(x, y, members=members, ipc=cfg.ipc, width=cfg.width, seed=seed, device=device,
                                 init="real" if name == "dm" else "noise", iterations=cfg.dm_iterations,
                                 batch_real=2 * cfg.batch_real, num_classes=int(y.max()) + 1,
                                 indices=torch.arange(len(y), device=device), desc=f"{name}, {len(members)} runs",
                                 checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    return [(s.images, s.labels, s.init_indices) for s in sets]


def _on_device(x, y, masks, runs, device):
    """The pool and masks on the device the runs use (default: the pool's), and the runs as a list."""
    device = torch.device(device) if device is not None else x.device
    runs = list(range(masks.shape[0])) if runs is None else list(runs)
    return device, x.to(device), y.to(device), masks.to(device), runs


def _check_pipeline_args(name: str, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor) -> None:
    if name not in PIPELINES:
        raise ValueError(f"pipeline {name!r}: allowed values are {', '.join(PIPELINES)}")
    from . import checks
    checks.images(x, "x")
    checks.labels(y, "y", rows=x.shape[0])
    if not isinstance(masks, torch.Tensor) or masks.dim() != 2 or masks.dtype != torch.bool or \
            masks.shape[1] != x.shape[0]:
        raise ValueError(f"masks: expected a bool tensor [K, {x.shape[0]}] (runs, pool), got "
                         f"{getattr(masks, 'dtype', type(masks).__name__)} {tuple(getattr(masks, 'shape', ()))}")


def _condense_runs(name: str, x: torch.Tensor, y: torch.Tensor, members: torch.Tensor, runs: list[int], cfg: MIA,
                   seed: int, device, checkpoints=None, checkpoint_every: int | None = None):
    """The synthetic set of each run, condensed from its IN half (run ``k`` with seed ``seed + k``):
    (images, labels) per run, and the [runs, pool] mask of the pool examples that initialised them."""
    ckpt = (lambda k: None) if checkpoints is None else (lambda k: Path(checkpoints) / f"{name}-run-{k}-condense.pt")
    images, labels, init_mask = [], [], torch.zeros_like(members)
    if cfg.shared_draws and name in ("dm", "dm-noise"):
        shared = None if checkpoints is None else \
            Path(checkpoints) / f"{name}-runs-{'-'.join(map(str, runs))}-condense.pt"
        per_run = _condense_shared(name, x, y, members, cfg, seed, device, shared, checkpoint_every)
    else:
        per_run = (_condense_run(name, x, y, members[i], cfg, seed + k, device, ckpt(k), checkpoint_every)
                   for i, k in enumerate(progress(runs, desc=f"condense {name}", unit="run")))
    for i, (imgs, labs, init) in enumerate(per_run):
        images.append(imgs.to(device))
        labels.append(labs.to(device))
        init_mask[i, init.to(device)] = True
    return images, labels, init_mask


def _train_on_own_sets(factory, images: list[torch.Tensor], labels: list[torch.Tensor], seeds: Sequence[int], *,
                       device, aug_seed: int, config: TrainConfig, desc: str):
    """Model ``i`` (seed ``seeds[i]``) trains on ``images[i]``/``labels[i]`` alone (sets of one size), all
    models at once. Returns the ensemble and the number of images each model trained on."""
    syn_x, syn_y = torch.cat(images).to(device), torch.cat(labels).to(device)
    m = images[0].shape[0]
    block = torch.arange(len(images) * m, device=device) // m  # model i trains on block i
    own = block.unsqueeze(0) == torch.arange(len(images), device=device).unsqueeze(1)
    ens = train_models(factory, syn_x, syn_y, seeds=seeds, members=own, device=device, aug_seed=aug_seed,
                       config=config, desc=desc)
    return ens, own.sum(1)


def _score(ens, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, query: str):
    """What the attacks need of trained models: the logit-scaled confidence of every query of every pool
    example [runs, pool, queries], the plain query's logits [runs, pool, classes], test accuracy [runs]
    (from the plain query), and the logit-scaled confidence of every query of every test image [runs,
    test, queries]: RMIA's population samples, images of the same distribution that no run trained on."""
    logits = query_logits(ens, x, augment=query)  # [runs, pool, queries, classes]
    scores = logit_scaled_confidence(logits, y.view(1, -1, 1))
    test = query_logits(ens, test_x, augment=query)  # [runs, test, queries, classes]
    test_y = test_y.to(test.device)
    acc = (test[:, :, 0].argmax(-1) == test_y).float().mean(1)
    return scores, logits[:, :, 0].float(), acc, logit_scaled_confidence(test, test_y.view(1, -1, 1))


def run_pipeline(name: str, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, *, cfg: MIA = MIA(), runs: Sequence[int] | None = None, seed: int = 0,
                 device=None, query: str = "flip", checkpoints=None,
                 checkpoint_every: int | None = None) -> PipelineRuns:
    """Run pipeline ``name`` for the given ``runs`` (default all K) of ``masks`` [K, pool].

    Model ``k`` gets seed ``seed + k``. All models are scored on the whole pool: logit-scaled
    confidence of every query (``"flip"``: the image and its mirror) and the plain query's logits; and on
    the test images: accuracy, and the same confidences (RMIA's population, ``PipelineRuns.population``).
    ``checkpoints``: a folder for the condensation checkpoints of each run (``NAME-run-K-condense.pt``;
    a run killed half-way resumes from its last one, with the same result).
    """
    _check_pipeline_args(name, x, y, masks)
    device, x, y, masks, runs = _on_device(x, y, masks, runs, device)
    members, started, seeds = masks[runs], time.time(), [seed + k for k in runs]
    factory = net_factory("convnet", width=cfg.width, channels=x.shape[1], num_classes=int(y.max()) + 1,
                          im_size=x.shape[-1])
    train = TrainConfig(epochs=cfg.epochs if name == "real" else cfg.epochs_small, batch_size=cfg.batch_size,
                        augment=DEFAULT_STRATEGY if cfg.train_augment else None)
    if name in ("real", "subset"):  # the IN half itself, or ipc random IN images per class
        train_on = members if name == "real" else torch.cat(  # per run: a shard draws what the full run draws
            [_subset_mask(members[i:i + 1], y, cfg.ipc, seed + 7919 + k) for i, k in enumerate(runs)])
        ens = train_models(factory, x, y, seeds=seeds, members=train_on, device=device, aug_seed=seed,
                           config=train, desc=f"{name} models")
        # the few real images "subset" trained on, as DM records its initialisers
        train_size, init_mask = train_on.sum(1), train_on if name == "subset" else torch.zeros_like(members)
    else:  # condense each run's IN half, then train model i on synthetic set i
        images, labels, init_mask = _condense_runs(name, x, y, members, runs, cfg, seed, device, checkpoints,
                                                   checkpoint_every)
        ens, train_size = _train_on_own_sets(factory, images, labels, seeds, device=device, aug_seed=seed,
                                             config=train, desc=f"{name} models")
    scores, logits, acc, population = _score(ens, x, y, test_x, test_y, query)
    return PipelineRuns(name, runs, scores.cpu(), logits.cpu(), acc.cpu(), init_mask.cpu(),
                        train_size.cpu(), time.time() - started, asdict(cfg), population.cpu())


@dataclass
class Experiment:
    """A membership-inference experiment: a pool, K LiRA masks, and the pipelines run on them."""
    pool_idx: torch.Tensor  # dataset indices of the pool
    pool_y: torch.Tensor
    masks: torch.Tensor  # [K, pool] bool
    pipelines: dict[str, PipelineRuns]
    config: dict

    def save(self, path) -> Path:
        """Write the experiment to ``path`` (atomically; plain tensors and values)."""
        from .files import save
        return save({"format": "dcprivacy.Experiment", "pool_idx": self.pool_idx, "pool_y": self.pool_y,
                     "masks": self.masks, "pipelines": {k: v.to_dict() for k, v in self.pipelines.items()},
                     "config": self.config}, path)

    @classmethod
    def load(cls, path) -> "Experiment":
        """Read an experiment written by :meth:`save` (``weights_only=True``: tensors and plain values only)."""
        from .files import FileError, expect, load
        d = expect(load(path, what="experiment"), "dcprivacy.Experiment", path, "experiment")
        if any(k not in d for k in ("pool_idx", "pool_y", "masks", "pipelines", "config")):
            raise FileError(f"experiment {path}: not an experiment file; delete it to run the experiment again")
        return cls(d["pool_idx"], d["pool_y"], d["masks"],
                   {k: PipelineRuns.from_dict(v, where=f"experiment {path}, pipeline {k}")
                    for k, v in d["pipelines"].items()}, d["config"])


def _code_fingerprint() -> str:
    """A hash of the code an experiment's numbers depend on (stale caches are not reused)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for mod in ("pipelines", "condense", "train", "augment", "nets", "mia", "data"):
        h.update((here / f"{mod}.py").read_bytes())
    return h.hexdigest()[:16]


def experiment_path(ds, cfg: MIA, *, pipelines: Sequence[str] | None = None, seed: int = 0,
                    query: str = "flip") -> Path:
    """Where :func:`run_experiment` keeps this experiment in the cache (the file exists once it has run),
    keyed by the configuration and the code: a later chapter can ask whether it may reuse the models."""
    from .data import cache_dir
    pipelines = list(cfg.pipelines if pipelines is None else pipelines)
    key = hashlib.sha256(repr((asdict(cfg), sorted(pipelines), seed, query, ds.name, _code_fingerprint()))
                         .encode()).hexdigest()[:20]
    return cache_dir() / "experiments" / f"mia-{key}.pt"


def run_experiment(ds, cfg: MIA, *, pipelines: Sequence[str] | None = None, seed: int = 0, device=None,
                   cache: bool = True, query: str = "flip", log: Callable[[str], None] = print) -> Experiment:
    """Draw a class-balanced pool of ``cfg.pool`` training images and K = ``cfg.runs`` LiRA masks, and
    run every pipeline on them. With ``cache``, the result is kept in the dcprivacy cache, keyed by
    the configuration and the code, so later chapters reuse the same models instead of retraining."""
    pipelines = list(cfg.pipelines if pipelines is None else pipelines)
    for p in pipelines:
        if p not in PIPELINES:
            raise ValueError(f"pipeline {p!r}: allowed values are {', '.join(PIPELINES)}")
    path = experiment_path(ds, cfg, pipelines=pipelines, seed=seed, query=query)
    if cache and path.exists():
        from .files import FileError
        try:
            exp = Experiment.load(path)
            log(f"reusing the models of an identical earlier run (cache {path.name})")
            return exp
        except FileError as e:  # unsafe, truncated or of an older format: never trusted, run again
            log(f"not reusing the cache ({e}); running the experiment again")
    device = torch.device(device) if device is not None else ds.train_x.device
    x, y, masks, test_x, test_y, pool_idx = _attack_data(ds, cfg, seed, device, with_pool=True)
    done = {}
    for p in pipelines:
        done[p] = run_pipeline(p, x, y, masks, test_x, test_y, cfg=cfg, seed=seed, device=device, query=query)
        log(f"{p:<9} {len(done[p].runs)} models, test accuracy {done[p].test_accuracy.mean():.3f} "
            f"± {done[p].test_accuracy.std():.3f}, {done[p].seconds:.0f} s")
    exp = Experiment(pool_idx, y.cpu(), masks, done, {"mia": asdict(cfg), "seed": seed, "query": query,
                                                      "dataset": ds.name})
    if cache:
        exp.save(path)
    return exp


def _attack_data(ds, cfg: MIA, seed: int, device, *, with_pool: bool = False):
    """The attack's pool (class-balanced, on ``device``), its LiRA masks and the test images, as
    :func:`run_experiment` and :func:`run_subset_sweep` both draw them from ``cfg`` and ``seed``."""
    from .data import class_balanced_subset
    from .mia import membership_masks
    pool_idx = class_balanced_subset(ds.train_y, cfg.pool // ds.num_classes, seed=seed)
    x, y = ds.train_x[pool_idx].to(device), ds.train_y[pool_idx].to(device)
    masks = membership_masks(cfg.runs, len(pool_idx), seed=seed)
    n_test = cfg.test_size or len(ds.test_y)
    test = (ds.test_x[:n_test], ds.test_y[:n_test])  # the test set is in random order
    return (x, y, masks, *test, pool_idx) if with_pool else (x, y, masks, *test)


def subset_sweep_path(ds, cfg: MIA, *, sizes: Sequence[int] | None = None, seed: int = 0,
                      query: str = "flip") -> Path:
    """Where :func:`run_subset_sweep` keeps this sweep in the cache (the file exists once it has run)."""
    from .data import cache_dir
    sizes = sorted({int(s) for s in (cfg.subset_sizes if sizes is None else sizes)})
    key = hashlib.sha256(repr((asdict(cfg), sizes, seed, query, ds.name, _code_fingerprint())).encode()).hexdigest()[:20]
    return cache_dir() / "experiments" / f"subsets-{key}.pt"


def run_subset_sweep(ds, cfg: MIA, *, sizes: Sequence[int] | None = None, seed: int = 0, device=None,
                     cache: bool = True, query: str = "flip", exp: Experiment | None = None,
                     log: Callable[[str], None] = print) -> dict[int, PipelineRuns]:
    """The naive baseline at several sizes: pipeline ``subset`` with ``ipc`` = each of ``sizes`` (default
    ``cfg.subset_sizes``) random IN images per class, on the pool and masks of :func:`run_experiment` (same
    ``cfg`` and ``seed``). The subsets are nested (a run's 5 images per class are among its 10), every
    size trains ``cfg.epochs_small`` epochs like the baseline, and the size ``cfg.ipc`` is taken from
    ``exp`` when given. Cached like :func:`run_experiment`. Returns ``{ipc: PipelineRuns}``."""
    from dataclasses import replace

    from . import files
    sizes = sorted({int(s) for s in (cfg.subset_sizes if sizes is None else sizes)})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"sizes={sizes}: give one or more positive numbers of images per class")
    path = subset_sweep_path(ds, cfg, sizes=sizes, seed=seed, query=query)
    if exp is not None:  # the baseline is compared with exp's pipelines run by run, example by example
        _, _, masks, _, _, pool_idx = _attack_data(ds, cfg, seed, "cpu", with_pool=True)
        if not (torch.equal(masks, exp.masks.cpu()) and torch.equal(pool_idx.cpu(), exp.pool_idx.cpu())):
            raise ValueError("exp: drawn with another pool or other masks than cfg and seed give; pass the "
                             "experiment of run_experiment(ds, cfg, seed=seed)")
    if cache and path.exists():
        from .files import FileError
        try:
            d = files.load(path, what="cached subset sweep")
            out = {int(k): PipelineRuns.from_dict(v, where=f"{path.name}: size {k}") for k, v in d["sizes"].items()}
            log(f"reusing the subset sweep of an identical earlier run (cache {path.name})")
            return out
        except (FileError, KeyError, TypeError) as e:  # unsafe, damaged or of an older format: run again
            log(f"not reusing the cache ({e}); running the sweep again")
    device = torch.device(device) if device is not None else ds.train_x.device
    x, y, masks, test_x, test_y = _attack_data(ds, cfg, seed, device)
    out = {}
    for ipc in sizes:
        if exp is not None and ipc == cfg.ipc and "subset" in exp.pipelines:
            out[ipc] = exp.pipelines["subset"]
            continue
        out[ipc] = run_pipeline("subset", x, y, masks, test_x, test_y,
                                cfg=replace(cfg, ipc=ipc), seed=seed, device=device, query=query)
        log(f"subset, {ipc:>3} per class: test accuracy {out[ipc].test_accuracy.mean():.3f}, {out[ipc].seconds:.0f} s")
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.save({"kind": "subset-sweep", "sizes": {str(k): v.to_dict() for k, v in out.items()}}, path)
    return out


ATTACKS = {  # name → (variant, fixed variance): LiRA's; "loss" is the loss-threshold attack; "rmia-…" RMIA's
    "lira-online": ("online", False), "lira-online-fixed": ("online", True),
    "lira-offline": ("offline", False), "lira-offline-fixed": ("offline", True), "loss": (None, None),
    "rmia-online": ("online", None), "rmia-offline": ("offline", None),
}


def _population(runs: PipelineRuns):
    if runs.population is None:
        raise ValueError(f"the runs of {runs.name!r} hold no population scores (written before RMIA): run them again")
    return runs.population


def attack(runs: PipelineRuns, masks: torch.Tensor, y: torch.Tensor, name: str = "lira-online-fixed", *,
           per_side: int | None = None):
    """Leave-one-out attack ``name`` (see ``ATTACKS``) on the K runs of one pipeline. ``per_side``: at most
    this many reference models per example trained on it, and as many not (LiRA and RMIA; see
    :func:`dcprivacy.mia.lira`)."""
    from .mia import leave_one_out, loss_scores, rmia_leave_one_out
    if name not in ATTACKS:
        raise ValueError(f"attack {name!r}: allowed values are {', '.join(ATTACKS)}")
    members = masks[runs.runs]
    if name == "loss":
        return leave_one_out(loss_scores(runs.logits, y.view(1, -1)), members, attack="global", name="loss")
    variant, fixed = ATTACKS[name]
    if name.startswith("rmia-"):
        return rmia_leave_one_out(runs.scores, _population(runs), members, attack=variant, per_side=per_side,
                                  name=name)
    return leave_one_out(runs.scores, members, attack=variant, fixed_variance=fixed, name=name, per_side=per_side)


def group_summary(result, group: torch.Tensor | None = None, *, bootstrap: int = 200, seed: int = 0,
                  fprs=(1e-3, 1e-2), method: str = "clustered") -> dict:
    """Metrics of an attack restricted to the members in ``group`` [runs, pool] (all non-members stay
    as negatives): e.g. members that initialised a synthetic image, against those that did not.
    Intervals from :func:`dcprivacy.metrics.bootstrap_ci` (``method``: ``"clustered"`` resamples runs and
    pool examples; ``"naive"`` the (run, example) pairs as if independent)."""
    from . import metrics
    scores, labels = result.per_run()
    keep = None if group is None else \
        (torch.as_tensor(group, dtype=torch.bool) | ~torch.as_tensor(labels, dtype=torch.bool)).numpy()
    return metrics.summary(scores, labels, keep=keep, fprs=fprs, bootstrap=bootstrap, seed=seed, method=method)


def strongest_attack(runs: PipelineRuns, masks: torch.Tensor, y: torch.Tensor, examples, *, fpr: float = 1e-2,
                     names: Sequence[str] | None = None) -> tuple[str, dict]:
    """The attack (of ``names``, default every one in ``ATTACKS``) that finds the most members of ``runs``
    at ``fpr`` FPR — ties broken by the AUC — judged on the pool ``examples`` only (bool [pool] or indices).

    Choosing the attack on the same scores that a test then uses would favour whichever attack was lucky
    on them; judged on a part of the pool that the test leaves out, the choice is independent of the
    test's examples. Returns the name and ``{name: AttackResult}`` of every attack, on the whole pool."""
    from . import metrics
    names = list(ATTACKS if names is None else names)
    pick = torch.zeros(masks.shape[1], dtype=torch.bool)
    pick[torch.as_tensor(examples).cpu()] = True
    results, rank = {}, {}
    for name in names:
        results[name] = attack(runs, masks, y, name)
        s, lab = results[name].per_run()
        s, lab = s[:, pick.numpy()], lab[:, pick.numpy()]
        rank[name] = (metrics.tpr_at_fpr(s, lab, fpr), metrics.auc(s, lab))
    return max(names, key=lambda n: rank[n]), results


# --- differentially private pipelines (chapter 8) ------------------------------------------------------

DP_PIPELINES = ("dp-dm", "dp-sgd")


def _secret_seeds(seed: int, runs: Sequence[int]) -> list[int]:
    """The seeds of the mechanisms' coins (Poisson samples, noise) of each run, from a stream apart from the
    public network seeds."""
    return [int(np.random.SeedSequence([int(seed), int(k), 0x5EC2E7]).generate_state(1, np.uint64)[0] >> 1)
            for k in runs]


def run_dp_pipeline(name: str, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, test_x: torch.Tensor,
                    test_y: torch.Tensor, *, cfg: DP = DP(), epsilon: float | None = None,
                    runs: Sequence[int] | None = None, seed: int = 0, class_size: float | None = None,
                    device=None, query: str = "flip") -> PipelineRuns:
    """Run the private pipeline ``name`` at (``epsilon``, ``cfg.delta``) for the given ``runs`` (default all K)
    of ``masks`` [K, pool]; the same :class:`PipelineRuns` as :func:`run_pipeline`, for the same attacks.

    - ``dp-dm``: :func:`dcprivacy.dp.dp_distribution_matching` condenses each run's IN half into
      ``cfg.ipc`` images per class, from noise; a ConvNet then trains on the released set for
      ``cfg.eval_epochs`` epochs with DSA augmentation (post-processing: free of privacy cost);
    - ``dp-sgd``: :func:`dcprivacy.dp.dpsgd_train_models` trains the ConvNet on the IN half.

    Each model is (ε, δ)-DP for adding or removing one example of its own IN half; ``epsilon`` defaults
    to ``cfg.attack_epsilon`` (``math.inf``: the same pipeline without noise). DP-DM divides its noisy class
    sums by a public ``class_size``: by default half the pool's per-class size, the expected number of IN
    examples per class of a class-balanced pool under LiRA masks (each example is IN for half the runs);
    DP-SGD divides its noisy gradient sums by its sampling rate times ``class_size`` × classes. The
    Poisson samples and the noise of run ``k`` come from a secret seed drawn apart from its network
    seed (reproducible here, so that the book can be checked).
    Model ``k`` gets seed ``seed + k``; ``config["epsilon"]`` is the largest ε spent by any run.
    """
    from .dp import dp_distribution_matching, dpsgd_train_models
    if name not in DP_PIPELINES:
        raise ValueError(f"pipeline {name!r}: allowed values are {', '.join(DP_PIPELINES)}")
    epsilon = cfg.attack_epsilon if epsilon is None else float(epsilon)
    if not epsilon > 0:
        raise ValueError(f"epsilon={epsilon}: must be > 0 (math.inf: the pipeline without noise)")
    device, x, y, masks, runs = _on_device(x, y, masks, runs, device)
    members, started, seeds = masks[runs], time.time(), [seed + k for k in runs]
    num_classes = int(y.max()) + 1
    class_size = x.shape[0] / (2 * num_classes) if class_size is None else class_size
    factory = net_factory("convnet", width=cfg.width, channels=x.shape[1], num_classes=num_classes, im_size=x.shape[-1])
    secret_seeds = _secret_seeds(seed, runs)
    # the private training of run k, from its IN half
    if name == "dp-dm":  # release a synthetic set with DP, then train on it without noise (post-processing)
        sets = [dp_distribution_matching(x[members[i]], y[members[i]], ipc=cfg.ipc, num_classes=num_classes,
                                         class_size=class_size, target_epsilon=epsilon, delta=cfg.delta,
                                         sample_rate=cfg.sample_rate, iterations=cfg.iterations, clip=cfg.clip,
                                         lr_img=cfg.lr_img, momentum=cfg.momentum, width=cfg.width,
                                         accountant=cfg.accountant, seed=s, secret_seed=secret_seeds[i],
                                         device=device, desc=f"dp-dm run {s}")
                for i, s in enumerate(progress(seeds, desc="condense dp-dm", unit="run"))]
        ens, train_size = _train_on_own_sets(factory, [s.images for s in sets], [s.labels for s in sets], seeds,
                                             device=device, aug_seed=seed, desc="dp-dm models",
                                             config=TrainConfig(epochs=cfg.eval_epochs, augment=DEFAULT_STRATEGY))
        spent, sigma = max(s.epsilon for s in sets), sets[0].config["noise_multiplier"]
    else:  # train with DP-SGD on the IN half
        res = dpsgd_train_models(factory, x, y, seeds=seeds, members=members, dataset_size=class_size * num_classes,
                                 secret_seeds=secret_seeds, target_epsilon=epsilon,
                                 delta=cfg.delta, epochs=cfg.dpsgd_epochs, sample_rate=cfg.dpsgd_sample_rate,
                                 clip=cfg.clip, lr=cfg.dpsgd_lr, accountant=cfg.accountant, device=device,
                                 desc="dp-sgd models")
        ens, train_size, spent, sigma = res.models, members.sum(1), res.epsilon, res.noise_multiplier
    scores, logits, acc, population = _score(ens, x, y, test_x, test_y, query)  # as for every pipeline
    config = {**asdict(cfg), "target_epsilon": epsilon, "epsilon": spent, "noise_multiplier": sigma,
              "class_size": class_size}
    return PipelineRuns(name, runs, scores.cpu(), logits.cpu(), acc.cpu(),
                        torch.zeros_like(members).cpu(), train_size.cpu(), time.time() - started, config,
                        population.cpu())


def independent_masks(runs: int, n: int, *, seed: int = 0) -> torch.Tensor:
    """LiRA masks [runs, n] in two halves drawn independently (:func:`dcprivacy.mia.membership_masks`
    with seeds ``seed`` and ``seed + 1``): within a half every example is IN for exactly half its runs.

    With one balanced set of masks, the other K − 1 runs of a leave-one-out attack hold K/2 − 1 or K/2
    members of an example according to whether the target trained on it: the masks alone reveal
    membership. :func:`cross_attack` gives each half the other as shadows, whose masks say nothing
    about the target's."""
    if int(runs) != runs or runs < 4 or runs % 4:
        raise ValueError(f"runs={runs}: must be a multiple of 4 (two halves, each an even number of runs)")
    return torch.cat([membership_masks(runs // 2, n, seed=seed), membership_masks(runs // 2, n, seed=seed + 1)])


def cross_attack(runs: PipelineRuns, masks: torch.Tensor, y: torch.Tensor, name: str = "lira-online-fixed"):
    """Attack ``name`` (any of ``ATTACKS``) on K runs whose ``masks`` come from :func:`independent_masks`:
    each run of one half is a target, and the runs of the *other* half are its shadow (reference) models:
    the loss attack needs none, LiRA fits them, RMIA averages them and scores the population under both."""
    from .mia import AttackResult, lira, loss_scores, rmia
    K = masks.shape[0]
    if name not in ATTACKS:
        raise ValueError(f"attack {name!r}: allowed values are {', '.join(ATTACKS)}")
    if list(runs.runs) != list(range(K)) or K % 4:
        raise ValueError(f"cross_attack needs all K = {K} runs of independent_masks (a multiple of 4), in order; "
                         f"got runs {runs.runs}")
    members, spec = masks.cpu(), ATTACKS[name]
    halves = [list(range(K // 2)), list(range(K // 2, K))]
    if name == "loss":
        out = loss_scores(runs.logits, y.view(1, -1)).numpy()  # the target's own loss: no shadows
    elif name.startswith("rmia-"):
        z = _population(runs)
        out = np.concatenate([rmia(runs.scores[t], runs.scores[s], members[s], z[t], z[s], attack=spec[0])
                              for t, s in (halves, halves[::-1])])
    else:  # LiRA
        out = np.concatenate([lira(runs.scores[t], runs.scores[s], members[s], attack=spec[0], fixed_variance=spec[1])
                              for t, s in (halves, halves[::-1])])
    return AttackResult(f"{name} (cross)", out.ravel(), members.numpy().ravel(), runs=K)
