"""Pipelines under attack: how a training set becomes a model, K times over.

A *pipeline* maps the IN half of a pool of real examples (and a seed) to a trained model:

- ``real``: train on the IN half itself — the undefended baseline;
- ``subset``: train on ``ipc`` random IN examples per class — the naive baseline of the critique
  (as many real images as the synthetic set has);
- ``dm``, ``dm-noise``: condense the IN half by distribution matching (real or noise init), train on
  the synthetic set;
- ``dc``, ``dsa``: the same with gradient matching (noise init) and with DSA (real init).

:func:`run_pipeline` runs K of them — one per membership mask — and returns what the attacks need:
every model's scores on every pool example, its test accuracy, and which pool examples initialised
each run's synthetic set. The K models are trained with :func:`dcprivacy.train.train_models`
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

import torch

from .augment import DEFAULT_STRATEGY
from .config import MIA, progress
from .mia import logit_scaled_confidence, query_logits
from .nets import net_factory
from .train import TrainConfig, accuracy, train_models

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
        return PipelineRuns(parts[0].name, runs, cat("scores"), cat("logits"), cat("test_accuracy"),
                            cat("init_mask"), cat("train_size"), sum(p.seconds for p in parts), parts[0].config)


def _subset_mask(members: torch.Tensor, y: torch.Tensor, ipc: int, seed: int) -> torch.Tensor:
    """``ipc`` random members of each class (the naive baseline's training set)."""
    g = torch.Generator(device=members.device).manual_seed(seed)
    keys = torch.rand(members.shape, generator=g, device=members.device)
    out = torch.zeros_like(members)
    for c in range(int(y.max()) + 1):
        k = keys.masked_fill(~(members & (y == c)), 2.0)
        out.scatter_(1, k.argsort(dim=1)[:, :ipc], True)
    return out & members


def _condense_run(name: str, x: torch.Tensor, y: torch.Tensor, member: torch.Tensor, cfg: MIA, seed: int, device):
    """Condense one run's IN half; returns (images, labels, init pool indices)."""
    from .condense import distribution_matching, gradient_matching
    pos = member.nonzero().flatten()
    kw = dict(ipc=cfg.ipc, width=cfg.width, seed=seed, indices=pos, device=device, batch_real=cfg.batch_real,
              num_classes=int(y.max()) + 1)
    if name in ("dm", "dm-noise"):
        s = distribution_matching(x[pos], y[pos], init="real" if name == "dm" else "noise",
                                  iterations=cfg.dm_iterations, desc=f"{name} run {seed}", **kw)
    else:
        s = gradient_matching(x[pos], y[pos], iterations=cfg.dc_iterations, loops=cfg.dc_loops,
                              augment=DEFAULT_STRATEGY if name == "dsa" else None, desc=f"{name} run {seed}", **kw)
    return s.images, s.labels, s.init_indices


def run_pipeline(name: str, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, *, cfg: MIA = MIA(), runs: Sequence[int] | None = None, seed: int = 0,
                 device=None, query: str = "flip") -> PipelineRuns:
    """Run pipeline ``name`` for the given ``runs`` (default all K) of ``masks`` [K, pool].

    Model ``k`` gets seed ``seed + k``. All models are scored on the whole pool: logit-scaled
    confidence of every query (``"flip"``: the image and its mirror) and the plain query's logits.
    """
    if name not in PIPELINES:
        raise ValueError(f"pipeline {name!r}: allowed values are {', '.join(PIPELINES)}")
    device = torch.device(device) if device is not None else x.device
    x, y, masks = x.to(device), y.to(device), masks.to(device)
    runs = list(range(masks.shape[0])) if runs is None else list(runs)
    members = masks[runs]
    started = time.time()
    C = int(y.max()) + 1
    factory = net_factory("convnet", width=cfg.width, channels=x.shape[1], num_classes=C, im_size=x.shape[-1])
    augment = DEFAULT_STRATEGY if cfg.train_augment else None
    seeds = [seed + k for k in runs]
    init_mask = torch.zeros_like(members)
    if name in ("real", "subset"):
        train_on = members if name == "real" else _subset_mask(members, y, cfg.ipc, seed + 7919)
        epochs = cfg.epochs if name == "real" else cfg.epochs_small
        ens = train_models(factory, x, y, seeds=seeds, members=train_on, device=device, aug_seed=seed,
                           config=TrainConfig(epochs=epochs, augment=augment), desc=f"{name} models")
        train_size = train_on.sum(1)
    else:
        images, labels, blocks = [], [], []
        for i, k in enumerate(progress(runs, desc=f"condense {name}", unit="run")):
            imgs, labs, init = _condense_run(name, x, y, members[i], cfg, seed + k, device)
            images.append(imgs.to(device))
            labels.append(labs.to(device))
            init_mask[i, init.to(device)] = True
        syn_x, syn_y = torch.cat(images), torch.cat(labels)
        m = images[0].shape[0]
        block = torch.arange(len(runs) * m, device=device) // m  # model i trains on block i
        own = block.unsqueeze(0) == torch.arange(len(runs), device=device).unsqueeze(1)
        ens = train_models(factory, syn_x, syn_y, seeds=seeds, members=own, device=device, aug_seed=seed,
                           config=TrainConfig(epochs=cfg.epochs_small, augment=augment), desc=f"{name} models")
        train_size = own.sum(1)
    logits = query_logits(ens, x, augment=query)  # [runs, pool, queries, classes]
    scores = logit_scaled_confidence(logits, y.view(1, -1, 1))
    acc = accuracy(ens, test_x, test_y)
    return PipelineRuns(name, runs, scores.cpu(), logits[:, :, 0].float().cpu(), acc.cpu(), init_mask.cpu(),
                        train_size.cpu(), time.time() - started, asdict(cfg))


@dataclass
class Experiment:
    """A membership-inference experiment: a pool, K LiRA masks, and the pipelines run on them."""
    pool_idx: torch.Tensor  # dataset indices of the pool
    pool_y: torch.Tensor
    masks: torch.Tensor  # [K, pool] bool
    pipelines: dict[str, PipelineRuns]
    config: dict

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"pool_idx": self.pool_idx, "pool_y": self.pool_y, "masks": self.masks,
                    "pipelines": {k: asdict(v) for k, v in self.pipelines.items()}, "config": self.config}, path)
        return path

    @classmethod
    def load(cls, path) -> "Experiment":
        d = torch.load(path, map_location="cpu", weights_only=False)
        return cls(d["pool_idx"], d["pool_y"], d["masks"], {k: PipelineRuns(**v) for k, v in d["pipelines"].items()},
                   d["config"])


def _code_fingerprint() -> str:
    """A hash of the code an experiment's numbers depend on (stale caches are not reused)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for mod in ("pipelines", "condense", "train", "augment", "nets", "mia", "data"):
        h.update((here / f"{mod}.py").read_bytes())
    return h.hexdigest()[:16]


def run_experiment(ds, cfg: MIA, *, pipelines: Sequence[str] | None = None, seed: int = 0, device=None,
                   cache: bool = True, query: str = "flip", log: Callable[[str], None] = print) -> Experiment:
    """Draw a class-balanced pool of ``cfg.pool`` training images and K = ``cfg.runs`` LiRA masks, and
    run every pipeline on them. With ``cache``, the result is kept in the dcprivacy cache, keyed by
    the configuration and the code, so later chapters reuse the same models instead of retraining."""
    from .data import cache_dir, class_balanced_subset
    from .mia import membership_masks
    pipelines = list(cfg.pipelines if pipelines is None else pipelines)
    for p in pipelines:
        if p not in PIPELINES:
            raise ValueError(f"pipeline {p!r}: allowed values are {', '.join(PIPELINES)}")
    key = hashlib.sha256(repr((asdict(cfg), sorted(pipelines), seed, query, ds.name, _code_fingerprint()))
                         .encode()).hexdigest()[:20]
    path = cache_dir() / "experiments" / f"mia-{key}.pt"
    if cache and path.exists():
        log(f"reusing the models of an identical earlier run (cache {path.name})")
        return Experiment.load(path)
    device = torch.device(device) if device is not None else ds.train_x.device
    C = ds.num_classes
    pool_idx = class_balanced_subset(ds.train_y, cfg.pool // C, seed=seed)
    x, y = ds.train_x[pool_idx].to(device), ds.train_y[pool_idx].to(device)
    masks = membership_masks(cfg.runs, len(pool_idx), seed=seed)
    done = {}
    for p in pipelines:
        done[p] = run_pipeline(p, x, y, masks, ds.test_x, ds.test_y, cfg=cfg, seed=seed, device=device, query=query)
        log(f"{p:<9} {len(done[p].runs)} models, test accuracy {done[p].test_accuracy.mean():.3f} "
            f"± {done[p].test_accuracy.std():.3f}, {done[p].seconds:.0f} s")
    exp = Experiment(pool_idx, y.cpu(), masks, done, {"mia": asdict(cfg), "seed": seed, "query": query,
                                                      "dataset": ds.name})
    if cache:
        exp.save(path)
    return exp


ATTACKS = {  # name → (LiRA variant, fixed variance); "loss" is the loss-threshold attack
    "lira-online": ("online", False), "lira-online-fixed": ("online", True),
    "lira-offline": ("offline", False), "lira-offline-fixed": ("offline", True), "loss": (None, None),
}


def attack(runs: PipelineRuns, masks: torch.Tensor, y: torch.Tensor, name: str = "lira-online-fixed"):
    """Leave-one-out attack ``name`` (see ``ATTACKS``) on the K runs of one pipeline."""
    from .mia import leave_one_out, loss_scores
    if name not in ATTACKS:
        raise ValueError(f"attack {name!r}: allowed values are {', '.join(ATTACKS)}")
    members = masks[runs.runs]
    if name == "loss":
        return leave_one_out(loss_scores(runs.logits, y.view(1, -1)), members, attack="global", name="loss")
    variant, fixed = ATTACKS[name]
    return leave_one_out(runs.scores, members, attack=variant, fixed_variance=fixed, name=name)


def group_summary(result, group: torch.Tensor | None = None, *, bootstrap: int = 200, seed: int = 0,
                  fprs=(1e-3, 1e-2)) -> dict:
    """Metrics of an attack restricted to the members in ``group`` [runs, pool] (all non-members stay
    as negatives): e.g. members that initialised a synthetic image, against those that did not."""
    from . import metrics
    scores, labels = result.per_run()
    keep = torch.ones(labels.shape, dtype=torch.bool) if group is None else \
        (torch.as_tensor(group, dtype=torch.bool) | ~torch.as_tensor(labels, dtype=torch.bool))
    keep = keep.numpy()
    return metrics.summary(scores[keep], labels[keep], fprs=fprs, bootstrap=bootstrap, seed=seed)
