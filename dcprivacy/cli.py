"""``python -m dcprivacy``: the book's pipelines from a terminal, results as JSON with provenance."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

SUBCOMMANDS: dict[str, tuple[str, callable, callable]] = {}


def subcommand(name: str, help: str):
    """Register ``configure(parser)`` and ``run(args)`` for a subcommand (later modules add theirs)."""
    def deco(configure):
        def wrap(run):
            SUBCOMMANDS[name] = (help, configure, run)
            return run
        return wrap
    return deco


def _emit(result: dict, out: str | None, *, seed=None, config=None, started=None, device=None) -> None:
    from .provenance import write_json
    if out:
        path = write_json(out, result, seed=seed, config=config, started=started, device=device)
        print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result, indent=2, default=str))


# --- data ------------------------------------------------------------------------------------------

def _data_args(p: argparse.ArgumentParser):
    p.add_argument("--download", action="store_true",
                   help="download what is missing through torchvision (needs the internet)")


@subcommand("data", "report where each dataset was found, or how to get it")(_data_args)
def _data(args) -> int:
    from .data import DATASETS, DataNotFoundError, describe_sources, locate
    if args.download:
        for name in DATASETS:
            try:
                print(f"{name}: {locate(name, download=True)[1]}")
            except DataNotFoundError as e:
                print(f"{name}: {e}", file=sys.stderr)
    rows = describe_sources()
    for row in rows:
        mark = "found" if row["found"] else "MISSING"
        print(f"{row['dataset']:<13} {mark}: {row['where']}")
    return 0 if any(r["found"] for r in rows) else 1


# --- profiles --------------------------------------------------------------------------------------

@subcommand("profile", "show the active profile (or --name NAME) as JSON")(
    lambda p: p.add_argument("--name", choices=("quick", "standard", "paper"), default=None))
def _profile(args) -> int:
    from .config import get_profile, profile_name
    prof = get_profile(args.name)
    print(json.dumps({"active": profile_name(), **prof.as_dict()}, indent=2))
    return 0


# --- condensation ----------------------------------------------------------------------------------

def _condense_args(p: argparse.ArgumentParser):
    p.add_argument("--dataset", choices=("fashionmnist", "cifar10"), default="fashionmnist")
    p.add_argument("--method", choices=("dm", "dc", "dsa"), required=True)
    p.add_argument("--ipc", type=int, default=10, help="synthetic images per class")
    p.add_argument("--iterations", type=int, default=None, help="default: the active profile's")
    p.add_argument("--init", choices=("real", "noise"), default=None, help="default: the method's own")
    p.add_argument("--width", type=int, default=None, help="ConvNet width (default: the profile's)")
    p.add_argument("--per-class-pool", type=int, default=None,
                   help="condense from this many real images per class (0: all; default: the profile's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--checkpoint", default=None, help="resume from / save to this file")
    p.add_argument("--compile", action="store_true",
                   help="dm: run the embedding through torch.compile (pays off on long runs: see `bench condense`)")
    p.add_argument("--evaluate", type=int, default=0, metavar="MODELS",
                   help="also train this many ConvNets on the result and report test accuracy")
    p.add_argument("--out", required=True, help="where to save the synthetic set (.pt); a .json with "
                   "provenance is written beside it")


@subcommand("condense", "condense a dataset with DM, DC or DSA; save the synthetic set and a JSON record")(_condense_args)
def _condense(args) -> int:
    from . import condense as C
    from .config import default_device, get_profile
    from .data import class_balanced_subset, load_dataset
    started = time.time()
    prof = get_profile().condense
    device = args.device or default_device()
    ds = load_dataset(args.dataset)
    pool = prof.per_class_pool if args.per_class_pool is None else args.per_class_pool
    idx = class_balanced_subset(ds.train_y, pool, seed=args.seed) if pool else torch.arange(len(ds.train_y))
    x, y = ds.train_x[idx].to(device), ds.train_y[idx].to(device)
    width = args.width or prof.width
    common = dict(ipc=args.ipc, width=width, seed=args.seed, indices=idx, device=device,
                  checkpoint=args.checkpoint, batch_real=prof.batch_real)
    if args.init:
        common["init"] = args.init
    if args.method == "dm":
        syn = C.distribution_matching(x, y, iterations=args.iterations or prof.dm_iterations, compile=args.compile,
                                      **common)
    else:
        loops = prof.dc_loops if prof.dc_loops is not None else None
        syn = C.gradient_matching(x, y, iterations=args.iterations or prof.dc_iterations, loops=loops,
                                  augment=C.DEFAULT_STRATEGY if args.method == "dsa" else None, **common)
    out = Path(args.out)
    syn.save(out)
    result = {"kind": "condense", "dataset": args.dataset, "method": syn.method, "ipc": args.ipc,
              "synthetic_set": str(out), "seconds": syn.history["seconds"],
              "seconds_per_iteration": syn.history["seconds"] / max(1, syn.config["iterations"]),
              "config": syn.config, "final_loss": float(syn.history["loss"][-1]) if len(syn.history["loss"]) else None}
    if args.evaluate:
        result["evaluation"] = C.evaluate_synthetic(syn, ds.test_x, ds.test_y, models=args.evaluate, width=width,
                                                    seed=args.seed, device=device)
    _emit(result, str(out.with_suffix(".json")), seed=args.seed, config=vars(args), started=started, device=device)
    return 0


def _evaluate_args(p: argparse.ArgumentParser):
    p.add_argument("synthetic", help="a synthetic set saved by `condense` (.pt)")
    p.add_argument("--dataset", choices=("fashionmnist", "cifar10"), default="fashionmnist")
    p.add_argument("--models", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None, help="default: 300 for DC, 1000 with augmentation")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the result as JSON with provenance here")


@subcommand("evaluate", "train ConvNets on a saved synthetic set with the literature's protocol")(_evaluate_args)
def _evaluate(args) -> int:
    from .condense import SyntheticSet, evaluate_synthetic
    from .config import default_device
    from .data import load_dataset
    started = time.time()
    syn = SyntheticSet.load(args.synthetic)
    ds = load_dataset(args.dataset)
    device = args.device or default_device()
    result = {"kind": "evaluate", "dataset": args.dataset, "method": syn.method, "ipc": syn.ipc,
              "synthetic_set": args.synthetic, "condense_config": syn.config,
              **evaluate_synthetic(syn, ds.test_x, ds.test_y, models=args.models, epochs=args.epochs,
                                   width=args.width, seed=args.seed, device=device)}
    _emit(result, args.out, seed=args.seed, config=vars(args), started=started, device=device)
    return 0


# --- membership inference ------------------------------------------------------------------------

def _attack_args(p: argparse.ArgumentParser):
    p.add_argument("--pipeline", required=True, choices=("real", "subset", "dm", "dm-noise", "dc", "dsa"))
    p.add_argument("--dataset", choices=("fashionmnist", "cifar10"), default="fashionmnist")
    p.add_argument("--runs", type=int, default=None, help="K models (even; default: the profile's)")
    p.add_argument("--pool", type=int, default=None, help="pool size (default: the profile's)")
    p.add_argument("--shard", default="0/1", help="i/N: run the i-th of N slices of the K runs (merge with attack-merge)")
    p.add_argument("--shared-draws", action="store_true",
                   help="dm pipelines: condense all runs in one batch sharing its random draws (faster; see MIA.shared_draws)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True, help="a folder for scores, masks and metrics")


def _shard(text: str, runs: int) -> tuple[int, int, list[int]]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard {text!r}: expected i/N with 0 ≤ i < N, e.g. 0/4")
    if not (0 <= i < n <= runs):
        raise SystemExit(f"--shard {text!r}: need 0 ≤ i < N ≤ runs ({runs})")
    return i, n, list(range(i * runs // n, (i + 1) * runs // n))


def _attack_report(runs, masks, y, cfg, seed) -> dict:
    from .pipelines import ATTACKS, attack, group_summary
    out = {"test_accuracy_mean": runs.test_accuracy.mean().item(), "test_accuracy_std": runs.test_accuracy.std().item(),
           "train_size_mean": runs.train_size.float().mean().item(), "attacks": {}}
    members = masks[runs.runs]
    for name in ATTACKS:
        res = attack(runs, masks, y, name)
        entry = {"all": group_summary(res, bootstrap=cfg.bootstrap, seed=seed)}
        if runs.init_mask.any() and (members & ~runs.init_mask).any():  # (a subset may hold every member)
            entry["init_members"] = group_summary(res, runs.init_mask, bootstrap=cfg.bootstrap, seed=seed)
            entry["other_members"] = group_summary(res, members & ~runs.init_mask, bootstrap=cfg.bootstrap, seed=seed)
        out["attacks"][name] = entry
    return out


@subcommand("attack", "train K models of one pipeline on LiRA masks and attack them (or one shard of the K)")(_attack_args)
def _attack(args) -> int:
    from dataclasses import replace

    from .config import default_device, get_profile
    from .data import class_balanced_subset, load_dataset
    from .mia import membership_masks
    from .pipelines import run_pipeline
    started = time.time()
    cfg = get_profile().mia
    cfg = replace(cfg, **{k: v for k, v in dict(runs=args.runs, pool=args.pool).items() if v is not None})
    if args.shared_draws:
        cfg = replace(cfg, shared_draws=True)
    if cfg.runs % 2 or cfg.runs < 4:
        raise SystemExit(f"--runs {cfg.runs}: need an even number ≥ 4 (each example is IN for half the runs)")
    i, n, shard_runs = _shard(args.shard, cfg.runs)
    device = args.device or default_device()
    ds = load_dataset(args.dataset)
    pool_idx = class_balanced_subset(ds.train_y, cfg.pool // ds.num_classes, seed=args.seed)
    masks = membership_masks(cfg.runs, len(pool_idx), seed=args.seed)
    n_test = cfg.test_size or len(ds.test_y)
    runs = run_pipeline(args.pipeline, ds.train_x[pool_idx].to(device), ds.train_y[pool_idx].to(device), masks,
                        ds.test_x[:n_test], ds.test_y[:n_test], cfg=cfg, runs=shard_runs, seed=args.seed,
                        device=device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.pipeline}-shard-{i}-of-{n}"
    torch.save({"runs": runs, "masks": masks, "pool_idx": pool_idx, "pool_y": ds.train_y[pool_idx]}, out / f"{stem}.pt")
    result = {"kind": "attack-shard", "pipeline": args.pipeline, "dataset": args.dataset, "shard": [i, n],
              "runs": shard_runs, "seconds": runs.seconds, "test_accuracy": runs.test_accuracy.tolist()}
    if n == 1:
        result = {"kind": "attack", "pipeline": args.pipeline, "dataset": args.dataset, "runs": cfg.runs,
                  "pool": cfg.pool, **_attack_report(runs, masks, ds.train_y[pool_idx], cfg, args.seed)}
        stem = args.pipeline
    _emit(result, str(out / f"{stem}.json"), seed=args.seed, config={"args": vars(args), "mia": cfg},
          started=started, device=device)
    return 0


def _merge_args(p: argparse.ArgumentParser):
    p.add_argument("folder", help="the --out folder of the shards")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--seed", type=int, default=0)


@subcommand("attack-merge", "merge the shards of an attack and compute its metrics")(_merge_args)
def _attack_merge(args) -> int:
    from dataclasses import replace

    from .config import MIA
    from .pipelines import PipelineRuns
    started = time.time()
    folder = Path(args.folder)
    files = sorted(folder.glob(f"{args.pipeline}-shard-*-of-*.pt"))
    if not files:
        raise SystemExit(f"no shards of {args.pipeline} in {folder} (expected {args.pipeline}-shard-i-of-N.pt)")
    parts = [torch.load(f, map_location="cpu", weights_only=False) for f in files]
    n = {int(f.stem.rsplit("-of-", 1)[1]) for f in files}
    masks = parts[0]["masks"]
    runs = PipelineRuns.merge([p["runs"] for p in parts])
    if len(n) != 1 or sorted(runs.runs) != list(range(masks.shape[0])):
        raise SystemExit(f"shards of {args.pipeline} cover runs {sorted(runs.runs)} of {masks.shape[0]}: "
                         f"run the missing ones first")
    cfg = replace(MIA(), **{k: v for k, v in runs.config.items() if k in MIA.__dataclass_fields__})
    result = {"kind": "attack", "pipeline": args.pipeline, "runs": masks.shape[0], "pool": masks.shape[1],
              "merged_from": [f.name for f in files],
              **_attack_report(runs, masks, parts[0]["pool_y"], cfg, args.seed)}
    _emit(result, str(folder / f"{args.pipeline}.json"), seed=args.seed, config={"mia": cfg}, started=started)
    return 0


# --- benchmarks ------------------------------------------------------------------------------------

BENCHMARKS = ("train", "condense", "shadows")


def _bench_args(p: argparse.ArgumentParser):
    p.add_argument("which", choices=BENCHMARKS, help="what to measure")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--models", type=int, default=8, help="train/shadows: models trained")
    p.add_argument("--width", type=int, default=None, help="ConvNet width (default: per benchmark)")
    p.add_argument("--epochs", type=int, default=None, help="train/shadows: epochs")
    p.add_argument("--iterations", type=int, default=None, help="condense: timed iterations")
    p.add_argument("--no-compile", action="store_true", help="condense: skip the torch.compile variant")
    p.add_argument("--out", default=None, help="also write the result as JSON with provenance here")


@subcommand("bench", "measure the fast paths against their baselines in one run")(_bench_args)
def _bench(args) -> int:
    from . import bench
    started = time.time()
    kw = {k: v for k, v in dict(width=args.width, epochs=args.epochs, iterations=args.iterations).items()
          if v is not None}
    if args.which == "train":
        kw.pop("iterations", None)
        result = bench.bench_train(models=args.models, device=args.device, **kw)
    elif args.which == "condense":
        kw.pop("epochs", None)
        result = bench.bench_condense(device=args.device, compile=not args.no_compile, **kw)
    else:
        kw.pop("iterations", None)
        result = bench.bench_shadows(models=args.models, device=args.device, **kw)
    _emit(result, args.out, config=vars(args), started=started, device=result.get("device"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dcprivacy",
        description="Does dataset condensation give privacy for free? The book's experiments from a terminal. "
                    "Sizes follow the active profile (DCPRIVACY_PROFILE=quick|standard|paper).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, configure, _) in SUBCOMMANDS.items():
        configure(sub.add_parser(name, help=help_, description=help_))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return SUBCOMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
