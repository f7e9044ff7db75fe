"""``python -m dcprivacy``: the book's pipelines from a terminal, results as JSON with provenance."""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .config import PRECISIONS

SUBCOMMANDS: dict[str, tuple[str, callable, callable]] = {}


def subcommand(name: str, help: str):
    """Register ``configure(parser)`` and ``run(args)`` for a subcommand (later modules add theirs)."""
    def deco(configure):
        def wrap(run):
            SUBCOMMANDS[name] = (help, configure, run)
            return run
        return wrap
    return deco


class UsageError(ValueError):
    """A bad command line: printed as one line on stderr, exit status 2."""


# Outputs claimed by this process (``_claim``): released when the command ends, however it ends.
_CLAIMS: list = []


def _claim(args, path, record=None, *, config=None) -> None:
    """Claim ``--out`` before any work (``files.claim_output``): refuse a directory in the place of
    ``path`` or its ``record``, a target this command did not write for the same arguments (unless
    ``--force``), and a second run writing it now; the claim is held until the command ends."""
    from .files import claim_output
    from .provenance import as_json, current_profile
    _CLAIMS.append(claim_output(path, record, inputs=as_json(vars(args) if config is None else config),
                                force=getattr(args, "force", False), profile=current_profile()))


def _emit(result: dict, out: str | None, *, seed=None, config=None, started=None, device=None) -> None:
    from .provenance import write_json
    if out:
        path = write_json(out, result, seed=seed, config=config, started=started, device=device)
        print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(result, indent=2, default=str))


def _emit_pair(obj: dict, path: Path, result: dict, record_path: Path | None = None, **prov) -> None:
    """Write a result file and its JSON record as a pair, after the work (see ``files.save_with_record``)."""
    from .files import save_with_record
    from .provenance import record
    pt, js = save_with_record(obj, path, record(result, **prov), record_path)
    print(f"wrote {pt} and {js}", file=sys.stderr)
    print(json.dumps(result, indent=2, default=str))


# Upper bounds of the numeric arguments: far beyond any run of the book or the papers (20000 DM iterations,
# width 128, 256 shadow models, 1000 evaluation epochs), low enough that a typo (1e12 iterations, width 1e6)
# fails at once, before the dataset is loaded, instead of in an allocation. Seeds stay below 2**63, so that the
# seeds derived from them (seed + k for model k) stay in torch.Generator's range (below 2**64).
MAX_SEED = 2 ** 63 - 1
MAX_ITERATIONS = 10 ** 6
MAX_WIDTH = 4096
MAX_IPC = 10 ** 4  # above the largest class of either dataset (6000)
MAX_MODELS = 4096
MAX_EPOCHS = 10 ** 5
MAX_RUNS = 65536
MAX_POOL = 10 ** 7


def _int(low: int | None = None, high: int | None = None, *, even: bool = False, what: str = ""):
    """An argparse ``type``: a whole number in [``low``, ``high``] (``even``: and even)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if low is not None and v < low:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}{what}, got {v}")
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(f"must be ≤ {high}{what}, got {v}")
        if even and v % 2:
            raise argparse.ArgumentTypeError(f"must be even{what}, got {v}")
        return v
    return parse


def _float(low: float, high: float):
    """An argparse ``type``: a finite number in (``low``, ``high``]."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (low < v <= high):  # (also false for NaN)
            raise argparse.ArgumentTypeError(f"must be > {low:g} and ≤ {high:g}, got {text}")
        return v
    return parse


SEED = dict(type=_int(0, MAX_SEED), default=0, help="random seed (0 ≤ seed < 2**63)")
FORCE = dict(action="store_true", help="replace --out even if another command, or this one with other "
             "arguments, wrote it")
_DATASET_HELP = "default: $DCPRIVACY_DATASET, else fashionmnist"


@contextmanager
def _active_dataset(args):
    """A command's ``--dataset`` (default: ``DCPRIVACY_DATASET``) is the active dataset while it runs: the
    profile's sizes (``config.get_profile``) and the results' provenance follow it."""
    import os

    from .data import dataset_name
    if not hasattr(args, "dataset"):
        yield
        return
    if args.dataset is None:
        args.dataset = dataset_name()
    before = os.environ.get("DCPRIVACY_DATASET")
    os.environ["DCPRIVACY_DATASET"] = args.dataset
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DCPRIVACY_DATASET", None)
        else:
            os.environ["DCPRIVACY_DATASET"] = before


def _device(text: str | None):
    """``--device``: a torch device that exists here (default: the package's choice)."""
    from .config import default_device
    if text is None:
        return default_device()
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {text}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: no CUDA device is available here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"--device {text}: no Apple MPS device is available here; use --device cpu")
    return device


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
    p.add_argument("--dataset", choices=("fashionmnist", "cifar10"), default=None, help=_DATASET_HELP)
    p.add_argument("--method", choices=("dm", "dc", "dsa"), required=True)
    p.add_argument("--ipc", type=_int(1, MAX_IPC), default=10, help="synthetic images per class")
    p.add_argument("--iterations", type=_int(1, MAX_ITERATIONS), default=None, help="default: the active profile's")
    p.add_argument("--init", choices=("real", "noise"), default=None, help="default: the method's own")
    p.add_argument("--width", type=_int(1, MAX_WIDTH), default=None, help="ConvNet width (default: the profile's)")
    p.add_argument("--per-class-pool", type=_int(0, MAX_POOL), default=None,
                   help="condense from this many real images per class (0: all; default: the profile's)")
    p.add_argument("--seed", **SEED)
    p.add_argument("--device", default=None)
    p.add_argument("--checkpoint", default=None, help="resume from / save to this file (.pt)")
    p.add_argument("--checkpoint-every", type=_int(1, MAX_ITERATIONS), default=None, metavar="N",
                   help="with --checkpoint: save every N iterations (default: a tenth of the run) and at the end")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="dm: run the embeddings through torch.compile (default: on a CPU for width ≥ 64 and "
                        "≥ 500 iterations; see `bench condense`)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="dm: the real images' embedding in bfloat16 (auto: on a CPU with native bfloat16, width ≥ 64)")
    p.add_argument("--evaluate", type=_int(0, MAX_MODELS), default=0, metavar="MODELS",
                   help="also train this many ConvNets on the result and report test accuracy")
    p.add_argument("--out", required=True, help="where to save the synthetic set (.pt); a .json with "
                   "provenance is written beside it")
    p.add_argument("--force", **FORCE)


@subcommand("condense", "condense a dataset with DM, DC or DSA; save the synthetic set and a JSON record")(_condense_args)
def _condense(args) -> int:
    from . import condense as C
    from .config import get_profile
    from .data import class_balanced_subset, load_dataset
    from .files import check_out_path
    started = time.time()
    prof = get_profile().condense
    out = check_out_path(args.out, suffix=".pt")
    if args.checkpoint is not None:
        ckpt = check_out_path(args.checkpoint, suffix=".pt", what="--checkpoint")
        if ckpt.resolve() in (out.resolve(), out.with_suffix(".json").resolve()):
            raise UsageError(f"--checkpoint {ckpt}: must differ from --out and its .json record")
    elif args.checkpoint_every is not None:
        raise UsageError("--checkpoint-every needs --checkpoint FILE (where to save)")
    device = _device(args.device)
    _claim(args, out, out.with_suffix(".json"))
    pool = prof.per_class_pool if args.per_class_pool is None else args.per_class_pool
    if pool and pool < args.ipc:
        raise UsageError(f"--per-class-pool {pool}: must be ≥ --ipc {args.ipc} (or 0 for the whole training set)")
    width = prof.width if args.width is None else args.width
    iterations = (prof.dm_iterations if args.method == "dm" else prof.dc_iterations) \
        if args.iterations is None else args.iterations
    ds = load_dataset(args.dataset)
    idx = class_balanced_subset(ds.train_y, pool, seed=args.seed) if pool else torch.arange(len(ds.train_y))
    x, y = ds.train_x[idx].to(device), ds.train_y[idx].to(device)
    common = dict(ipc=args.ipc, width=width, seed=args.seed, indices=idx, device=device,
                  checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, batch_real=prof.batch_real,
                  iterations=iterations)
    if args.init:
        common["init"] = args.init
    if args.method == "dm":
        syn = C.distribution_matching(x, y, compile=args.compile, precision=args.precision, **common)
    else:
        loops = prof.dc_loops if prof.dc_loops is not None else None
        syn = C.gradient_matching(x, y, loops=loops, augment=C.DEFAULT_STRATEGY if args.method == "dsa" else None,
                                  **common)
    result = {"kind": "condense", "dataset": args.dataset, "method": syn.method, "ipc": args.ipc,
              "synthetic_set": str(out), "seconds": syn.history["seconds"],
              "seconds_per_iteration": syn.history["seconds"] / max(1, syn.config["iterations"]),
              "config": syn.config, "final_loss": float(syn.history["loss"][-1]) if len(syn.history["loss"]) else None,
              "normalisation": {"mean": ds.mean, "std": ds.std}}  # to show the images as pixels again
    if args.evaluate:
        result["evaluation"] = C.evaluate_synthetic(syn, ds.test_x, ds.test_y, models=args.evaluate, width=width,
                                                    seed=args.seed, device=device)
    # the set and its record, together, after all the work (a kill before leaves neither new file)
    _emit_pair(syn.to_dict(), out, result, seed=args.seed, config=vars(args), started=started, device=device)
    return 0


def _evaluate_args(p: argparse.ArgumentParser):
    p.add_argument("synthetic", help="a synthetic set saved by `condense` (.pt)")
    p.add_argument("--dataset", choices=("fashionmnist", "cifar10"), default=None, help=_DATASET_HELP)
    p.add_argument("--models", type=_int(1, MAX_MODELS), default=5)
    p.add_argument("--epochs", type=_int(1, MAX_EPOCHS), default=None, help="default: 300 for DC, 1000 with augmentation")
    p.add_argument("--width", type=_int(1, MAX_WIDTH), default=128)
    p.add_argument("--seed", **SEED)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16: mixed-precision training (auto: on a CPU with native bfloat16, width ≥ 64)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile each training step (default: on a CPU for width ≥ 64 and ≥ 300 epochs)")
    p.add_argument("--out", default=None, help="write the result as JSON with provenance here (.json)")
    p.add_argument("--force", **FORCE)


@subcommand("evaluate", "train ConvNets on a saved synthetic set with the literature's protocol")(_evaluate_args)
def _evaluate(args) -> int:
    from .condense import SyntheticSet, evaluate_synthetic
    from .data import load_dataset
    from .files import check_out_path
    started = time.time()
    device = _device(args.device)
    if args.out is not None:
        _claim(args, check_out_path(args.out, suffix=".json"))
    syn = SyntheticSet.load(args.synthetic)
    ds = load_dataset(args.dataset)
    if tuple(syn.images.shape[1:]) != tuple(ds.train_x.shape[1:]) or syn.num_classes > ds.num_classes:
        raise UsageError(f"{args.synthetic}: images {tuple(syn.images.shape[1:])} with {syn.num_classes} classes "
                         f"do not fit {args.dataset} ({tuple(ds.train_x.shape[1:])}, {ds.num_classes} classes); "
                         f"pass the --dataset it was condensed from")
    result = {"kind": "evaluate", "dataset": args.dataset, "method": syn.method, "ipc": syn.ipc,
              "synthetic_set": args.synthetic, "condense_config": syn.config,
              **evaluate_synthetic(syn, ds.test_x, ds.test_y, models=args.models, epochs=args.epochs,
                                   width=args.width, seed=args.seed, device=device, precision=args.precision,
                                   compile=args.compile)}
    _emit(result, args.out, seed=args.seed, config=vars(args), started=started, device=device)
    return 0


# --- membership inference ------------------------------------------------------------------------

def _attack_args(p: argparse.ArgumentParser):
    p.add_argument("--pipeline", required=True, choices=("real", "subset", "dm", "dm-noise", "dc", "dsa"))
    p.add_argument("--dataset", choices=("fashionmnist", "cifar10"), default=None, help=_DATASET_HELP)
    p.add_argument("--runs", type=_int(4, MAX_RUNS, even=True, what=" (each example is IN for half the runs)"),
                   default=None, help="K models (even, ≥ 4; default: the profile's)")
    p.add_argument("--pool", type=_int(2, MAX_POOL), default=None, help="pool size (default: the profile's)")
    p.add_argument("--shard", default="0/1",
                   help="i/N: run the i-th of N slices of the K runs (merge with attack-merge); 'auto': take i and "
                        "N from a Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT)")
    p.add_argument("--shared-draws", action="store_true",
                   help="dm pipelines: condense all runs in one batch sharing its random draws (faster; see MIA.shared_draws)")
    p.add_argument("--checkpoint-every", type=_int(1, MAX_ITERATIONS), default=None, metavar="N",
                   help="save each run's condensation every N iterations (default: a tenth of the run)")
    p.add_argument("--seed", **SEED)
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True, help="a folder for scores, masks and metrics; runs already finished "
                   "there are not run again")
    p.add_argument("--force", **FORCE)


def _shard(text: str, runs: int) -> tuple[int, int, list[int]]:
    import os
    if text == "auto":
        env = {k: os.environ.get(f"SLURM_ARRAY_TASK_{k}") for k in ("ID", "COUNT", "MIN")}
        if env["ID"] is None or env["COUNT"] is None:
            raise UsageError("--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set; run it "
                             "inside a Slurm job array (sbatch --array=0-N) or give --shard i/N")
        try:
            i, n = int(env["ID"]) - int(env["MIN"] or 0), int(env["COUNT"])
        except ValueError:
            raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_ID={env['ID']!r}, SLURM_ARRAY_TASK_COUNT="
                             f"{env['COUNT']!r}, SLURM_ARRAY_TASK_MIN={env['MIN']!r} are not whole numbers") from None
        text = f"{i}/{n} (from Slurm)"
    else:
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected i/N with 0 ≤ i < N, e.g. 0/4, or auto") from None
    if not (0 <= i < n <= runs):
        raise UsageError(f"--shard {text}: need 0 ≤ i < N ≤ runs ({runs}); a Slurm array needs --array=0-{runs - 1} "
                         f"or fewer tasks")
    return i, n, list(range(i * runs // n, (i + 1) * runs // n))


# What a shard or run file says about the experiment it belongs to; attack-merge compares these.
IDENTITY = ("pipeline", "dataset", "seed", "K", "pool_size", "config", "code", "query")


def _identity(args, cfg, pool_idx, masks) -> dict:
    from dataclasses import asdict

    from .pipelines import _code_fingerprint
    return {"pipeline": args.pipeline, "dataset": args.dataset, "seed": args.seed, "K": cfg.runs,
            "pool_size": len(pool_idx), "config": asdict(cfg), "code": _code_fingerprint(), "query": "flip",
            "pool_idx": pool_idx, "masks": masks}


def _differs(a: dict, b: dict) -> str | None:
    """The first field in which two self-described files disagree, as ``field (a ≠ b)``; None if none."""
    for k in (*IDENTITY, "pool_idx", "masks", "pool_y"):
        x, y = a.get(k), b.get(k)
        same = torch.equal(x, y) if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and \
            x.shape == y.shape else x == y
        if not same:
            if k == "config" and isinstance(x, dict) and isinstance(y, dict):
                keys = sorted(set(x) | set(y), key=str)
                k2 = next(k2 for k2 in keys if x.get(k2) != y.get(k2))
                return f"config.{k2} ({x.get(k2)!r} ≠ {y.get(k2)!r})"
            if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
                what = {"masks": "membership masks", "pool_y": "labels of the pool"}.get(k, "pool examples")
                return f"{k} (different {what})"
            return f"{k} ({x!r} ≠ {y!r})"
    return None


def _load_described(path: Path, kind: str, what: str) -> dict:
    from .files import FileError, expect, load
    d = expect(load(path, what=what), kind, path, what)
    if d.get("format") != kind:
        raise FileError(f"{what} {path}: written by an older dcprivacy without a description of its experiment; "
                        f"run it again")
    missing = [k for k in (*IDENTITY, "pool_idx", "masks", "runs") if k not in d]
    if missing:
        raise FileError(f"{what} {path}: missing {', '.join(missing)}; run it again")
    return d


def _run_file(folder: Path, pipeline: str, k: int) -> Path:
    return folder / "runs" / f"{pipeline}-run-{k}.pt"


def _finished_run(path: Path, ident: dict, k: int):
    """The result of run ``k`` if ``path`` holds it for this very experiment; None if absent."""
    from .pipelines import PipelineRuns
    if not path.exists():
        return None
    d = _load_described(path, "dcprivacy.attack-run", "run file")
    why = _differs(d, ident)
    if why:
        raise UsageError(f"run file {path} belongs to another experiment: {why}; remove it or choose another --out")
    runs = PipelineRuns.from_dict(d["runs"], where=f"run file {path}")
    if runs.runs != [k]:
        raise UsageError(f"run file {path} holds runs {runs.runs}, expected [{k}]; remove it")
    return runs


@subcommand("attack", "train K models of one pipeline on LiRA masks and attack them (or one shard of the K)")(_attack_args)
def _attack(args) -> int:
    from dataclasses import replace

    from .config import get_profile
    from .data import class_balanced_subset, load_dataset
    from .files import check_out_dir, claim_output, save
    from .mia import membership_masks
    from .pipelines import PipelineRuns, run_pipeline
    from .provenance import as_json, current_profile
    from .report import attack_report
    started = time.time()
    cfg = get_profile().mia
    cfg = replace(cfg, **{k: v for k, v in dict(runs=args.runs, pool=args.pool).items() if v is not None})
    if args.shared_draws:
        cfg = replace(cfg, shared_draws=True)
    if cfg.runs % 2 or cfg.runs < 4:
        raise UsageError(f"--runs {cfg.runs}: need an even number ≥ 4 (each example is IN for half the runs)")
    i, n, shard_runs = _shard(args.shard, cfg.runs)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    device = _device(args.device)
    stem = f"{args.pipeline}-shard-{i}-of-{n}"
    shard_path = Path(args.out) / f"{stem}.pt"
    record = Path(args.out) / (f"{args.pipeline}.json" if n == 1 else f"{stem}.json")
    config = {"args": vars(args), "mia": cfg}
    claim_output(shard_path, record, inputs=as_json(config), force=args.force, profile=current_profile(),
                 lock=False)  # refuse now, before the data; claimed (locked) once the folder exists
    ds = load_dataset(args.dataset)
    if cfg.pool // ds.num_classes < 2:
        raise UsageError(f"--pool {cfg.pool}: need at least 2 examples per class ({2 * ds.num_classes} for "
                         f"{args.dataset})")
    pool_idx = class_balanced_subset(ds.train_y, cfg.pool // ds.num_classes, seed=args.seed)
    pool_y = ds.train_y[pool_idx]
    masks = membership_masks(cfg.runs, len(pool_idx), seed=args.seed)
    if args.pipeline in ("dm", "dsa"):  # real initialisation: every run needs ipc members of each class
        per_class = torch.stack([(masks & (pool_y == c)).sum(1) for c in range(ds.num_classes)], 1)
        if int(per_class.min()) < cfg.ipc:
            raise UsageError(f"--pool {cfg.pool}: some run has only {int(per_class.min())} member(s) of a class, "
                             f"fewer than ipc={cfg.ipc}; use a pool of at least {4 * cfg.ipc * ds.num_classes}")
    out = check_out_dir(args.out)
    _claim(args, shard_path, record, config=config)
    ident = _identity(args, cfg, pool_idx, masks)
    n_test = cfg.test_size or len(ds.test_y)
    # Runs go one at a time on a CPU (training is a loop over models there anyway), all together on a GPU
    # (vectorized) or with shared draws; each finished group is saved, and found again after a kill.
    whole = device.type == "cuda" or (cfg.shared_draws and args.pipeline in ("dm", "dm-noise"))
    groups = [shard_runs] if whole else [[k] for k in shard_runs]
    parts = []
    for group in groups:
        found = [_finished_run(_run_file(out, args.pipeline, k), ident, k) for k in group]
        if all(f is not None for f in found):
            parts += found
            print(f"run(s) {group}: already finished in {out / 'runs'}", file=sys.stderr)
            continue
        runs = run_pipeline(args.pipeline, ds.train_x[pool_idx].to(device), pool_y.to(device), masks,
                            ds.test_x[:n_test], ds.test_y[:n_test], cfg=cfg, runs=group, seed=args.seed,
                            device=device, checkpoints=out / "runs", checkpoint_every=args.checkpoint_every)
        for j, k in enumerate(group):
            one = PipelineRuns(runs.name, [k], *(getattr(runs, f)[j:j + 1] for f in
                                                 ("scores", "logits", "test_accuracy", "init_mask", "train_size")),
                               runs.seconds / len(group), runs.config, runs.population[j:j + 1])
            save({"format": "dcprivacy.attack-run", **ident, "runs": one.to_dict()},
                 _run_file(out, args.pipeline, k))
            parts.append(one)
        for k in group:  # the runs are saved: their condensation checkpoints are no longer needed
            (out / "runs" / f"{args.pipeline}-run-{k}-condense.pt").unlink(missing_ok=True)
        (out / "runs" / f"{args.pipeline}-runs-{'-'.join(map(str, group))}-condense.pt").unlink(missing_ok=True)
    runs = PipelineRuns.merge(parts)
    shard = {"format": "dcprivacy.attack-shard", **ident, "shard": [i, n], "pool_y": pool_y, "runs": runs.to_dict()}
    result = {"kind": "attack-shard", "pipeline": args.pipeline, "dataset": args.dataset, "shard": [i, n],
              "runs": shard_runs, "seconds": runs.seconds, "test_accuracy": runs.test_accuracy.tolist()}
    if n == 1:
        result = {"kind": "attack", "pipeline": args.pipeline, "dataset": args.dataset, "runs": cfg.runs,
                  "pool": cfg.pool, **attack_report(runs, masks, pool_y, cfg, args.seed)}
    _emit_pair(shard, shard_path, result, record, seed=args.seed, config=config, started=started, device=device)
    return 0


def _merge_args(p: argparse.ArgumentParser):
    p.add_argument("folder", help="the --out folder of the shards")
    p.add_argument("--pipeline", required=True, choices=("real", "subset", "dm", "dm-noise", "dc", "dsa"))
    p.add_argument("--seed", **SEED)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor(d: dict, key: str, shape: tuple, kind: str, where: str) -> torch.Tensor:
    """``d[key]``, checked: a tensor of ``shape`` (``None``: any size ≥ 1 there) and ``kind`` (``bool``,
    ``int`` or ``float``; floats finite)."""
    from .files import FileError
    t = d.get(key)
    ok = isinstance(t, torch.Tensor) and t.dim() == len(shape) and \
        all(n == want if want is not None else n >= 1 for n, want in zip(t.shape, shape))
    ok = ok and {"bool": t.dtype == torch.bool, "float": t.is_floating_point(),
                 "int": not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool}[kind]
    if ok and kind == "float":
        ok = bool(torch.isfinite(t).all())
    if not ok:
        want = "[" + ", ".join("≥1" if n is None else str(n) for n in shape) + "]"
        got = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
        raise FileError(f"{where}: {key} must be a {'finite ' if kind == 'float' else ''}{kind} tensor of shape "
                        f"{want}, found {got}; run the shard again")
    return t


def _check_shard(d: dict, f: Path) -> tuple[int, int]:
    """The fields a shard describes its experiment with, checked against one another; its (i, N)."""
    from .data import DATASETS
    from .files import FileError
    K, P, shard = d["K"], d["pool_size"], d.get("shard")
    if not (_whole(K) and K >= 4 and K % 2 == 0 and _whole(P) and P >= 2):
        raise FileError(f"shard {f}: K={K!r}, pool_size={P!r} (need an even K ≥ 4 and a pool of at least 2)")
    if not (_whole(d["seed"]) and 0 <= d["seed"] <= MAX_SEED and isinstance(d["config"], dict)
            and d["dataset"] in DATASETS):
        raise FileError(f"shard {f}: seed, config or dataset is not what `attack` writes; run the shard again")
    if not (isinstance(shard, (list, tuple)) and len(shard) == 2 and all(map(_whole, shard))
            and 0 <= shard[0] < shard[1] <= K):
        raise FileError(f"shard {f}: shard {shard!r} is not i/N with 0 ≤ i < N ≤ K ({K})")
    _tensor(d, "masks", (K, P), "bool", f"shard {f}")
    _tensor(d, "pool_idx", (P,), "int", f"shard {f}")
    _tensor(d, "pool_y", (P,), "int", f"shard {f}")
    return shard[0], shard[1]


def _check_runs(runs, i: int, n: int, K: int, P: int, f: Path, like=None) -> None:
    """A shard's runs: exactly the ids of slice i of N of the K runs, and one row of the right shape per
    run in every tensor (the scores' and logits' last sizes those of the first shard, ``like``)."""
    from .files import FileError
    want = list(range(i * K // n, (i + 1) * K // n))
    if not (isinstance(runs.runs, list) and all(map(_whole, runs.runs)) and runs.runs == want):
        raise FileError(f"shard {f}: holds runs {runs.runs!r}, but shard {i}/{n} of K={K} runs is {want}; "
                        f"run it again")
    k, where = len(want), f"shard {f}"
    fields = vars(runs)
    q = None if like is None else like.scores.shape[2]
    c = None if like is None else like.logits.shape[2]
    _tensor(fields, "scores", (k, P, q), "float", where)
    _tensor(fields, "logits", (k, P, c), "float", where)
    _tensor(fields, "test_accuracy", (k,), "float", where)
    _tensor(fields, "init_mask", (k, P), "bool", where)
    _tensor(fields, "train_size", (k,), "int", where)
    if runs.population is None:  # RMIA's population: the test images' scores, in every shard since RMIA
        raise FileError(f"{where}: holds no population scores (written before RMIA); run the shard again")
    m = None if like is None else like.population.shape[1]
    _tensor(fields, "population", (k, m, runs.scores.shape[2]), "float", where)


@subcommand("attack-merge", "merge the shards of an attack and compute its metrics")(_merge_args)
def _attack_merge(args) -> int:
    import re
    from dataclasses import replace

    from .config import MIA
    from .data import load_dataset
    from .files import FileError, check_record
    from .pipelines import PipelineRuns
    from .report import attack_report
    started = time.time()
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder (give the --out folder of `attack`)")
    files = sorted(folder.glob(f"{args.pipeline}-shard-*-of-*.pt"))
    if not files:
        raise UsageError(f"no shards of {args.pipeline} in {folder} (expected {args.pipeline}-shard-i-of-N.pt)")
    parts, first = [], None
    for f in files:
        if f.stem.endswith("-of-1"):  # an unsharded run: its record is <pipeline>.json (checked if it has a digest)
            check_record(f, folder / f"{args.pipeline}.json", what="shard")
        d = _load_described(f, "dcprivacy.attack-shard", "shard")
        m = re.fullmatch(rf"{re.escape(args.pipeline)}-shard-(\d+)-of-(\d+)", f.stem)
        if m is None or [int(m[1]), int(m[2])] != list(d.get("shard", [])):
            raise UsageError(f"shard {f.name}: its name does not match its contents (shard {d.get('shard')})")
        i, n = _check_shard(d, f)
        if first is None:
            first = (f, d)
        else:
            why = _differs(d, first[1])
            if why:
                raise UsageError(f"shard {f.name} and shard {first[0].name} come from different experiments: {why}; "
                                 f"remove the stale one")
            if d["shard"][1] != first[1]["shard"][1]:
                raise UsageError(f"shard {f.name} splits the runs into {d['shard'][1]} but {first[0].name} into "
                                 f"{first[1]['shard'][1]}; remove the stale split")
        runs = PipelineRuns.from_dict(d["runs"], where=f"shard {f}")
        _check_runs(runs, i, n, d["K"], d["pool_size"], f, parts[0] if parts else None)
        parts.append(runs)
    d, K = first[1], first[1]["K"]
    seen = {}
    for f, p in zip(files, parts):
        for r in p.runs:
            if r in seen:
                raise UsageError(f"run {r} appears in both {seen[r]} and {f.name}; remove the duplicate shard")
            seen[r] = f.name
    missing = sorted(set(range(K)) - set(seen))
    if missing:
        n = d["shard"][1]
        need = [i for i in range(n) if any(i * K // n <= k < (i + 1) * K // n for k in missing)]
        raise UsageError(f"shards of {args.pipeline} miss run(s) {missing} of {K}: run --shard "
                         f"{', '.join(f'{i}/{n}' for i in need)} first")
    # the labels the attacks score with: the dataset's own labels of the pool, not a copy a file could alter
    train_y = load_dataset(d["dataset"]).train_y
    pool_idx = d["pool_idx"]
    if int(pool_idx.min()) < 0 or int(pool_idx.max()) >= len(train_y):
        raise FileError(f"shard {first[0]}: pool_idx points outside the {len(train_y)} training examples of "
                        f"{d['dataset']}; run the shards again")
    pool_y = train_y[pool_idx.long()]
    if not torch.equal(pool_y, d["pool_y"].to(pool_y.dtype)):
        raise FileError(f"shard {first[0]}: pool_y differs from {d['dataset']}'s labels of the pool examples "
                        f"(pool_idx) in {int((pool_y != d['pool_y']).sum())} place(s): the shard was altered or "
                        f"written from another copy of the data; run the shards again")
    if args.seed != d["seed"]:
        print(f"note: the shards were run with --seed {d['seed']}; the bootstrap uses --seed {args.seed}",
              file=sys.stderr)
    masks = d["masks"]
    runs = PipelineRuns.merge(parts)
    cfg = replace(MIA(), **{k: v for k, v in d["config"].items() if k in MIA.__dataclass_fields__})
    result = {"kind": "attack", "pipeline": args.pipeline, "dataset": d["dataset"], "runs": K,
              "pool": masks.shape[1], "shard_seed": d["seed"], "merged_from": [f.name for f in files],
              **attack_report(runs, masks, pool_y, cfg, args.seed)}
    _emit(result, str(folder / f"{args.pipeline}.json"), seed=args.seed, config={"mia": cfg}, started=started)
    return 0


# --- benchmarks ------------------------------------------------------------------------------------

BENCHMARKS = ("train", "condense", "evaluate", "shadows")


def _bench_args(p: argparse.ArgumentParser):
    p.add_argument("which", choices=BENCHMARKS, help="what to measure")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--models", type=_int(1, MAX_MODELS), default=8,
                   help="train/shadows: models trained; evaluate: models in the stacked comparison")
    p.add_argument("--width", type=_int(1, MAX_WIDTH), default=None, help="ConvNet width (default: per benchmark)")
    p.add_argument("--epochs", type=_int(1, MAX_EPOCHS), default=None,
                   help="train/shadows: epochs; evaluate: timed epochs (each beside one of the reference's)")
    p.add_argument("--iterations", type=_int(1, MAX_ITERATIONS), default=None,
                   help="condense: timed DM iterations (each beside one of the reference's)")
    p.add_argument("--no-compile", action="store_true", help="condense: skip the torch.compile variant")
    p.add_argument("--no-dc", action="store_true", help="condense: skip DC's matching step")
    p.add_argument("--per-class-pool", type=_int(0, MAX_POOL), default=None,
                   help="condense: real images per class to condense from (default 0: all, as the reference)")
    p.add_argument("--stacked", action="store_true",
                   help="evaluate: also time the models trained stacked vs one at a time (default on a GPU)")
    p.add_argument("--out", default=None, help="also write the result as JSON with provenance here (.json)")
    p.add_argument("--force", **FORCE)


@subcommand("bench", "measure the fast paths against their baselines in one run")(_bench_args)
def _bench(args) -> int:
    from . import bench
    from .files import check_out_path
    started = time.time()
    if args.device is not None:
        _device(args.device)
    if args.out is not None:
        _claim(args, check_out_path(args.out, suffix=".json"))
    kw = {k: v for k, v in dict(width=args.width, epochs=args.epochs, iterations=args.iterations).items()
          if v is not None}
    if args.which == "train":
        kw.pop("iterations", None)
        result = bench.bench_train(models=args.models, device=args.device, **kw)
    elif args.which == "condense":
        kw.pop("epochs", None)
        if args.per_class_pool is not None:
            kw["per_class_pool"] = args.per_class_pool
        result = bench.bench_condense(device=args.device, compile=not args.no_compile, dc=not args.no_dc, **kw)
    elif args.which == "evaluate":
        kw.pop("iterations", None)
        result = bench.bench_evaluate(models=args.models, device=args.device, stacked=args.stacked or None, **kw)
    else:
        kw.pop("iterations", None)
        result = bench.bench_shadows(models=args.models, device=args.device, **kw)
    _emit(result, args.out, config=vars(args), started=started, device=result.get("device"))
    return 0


# --- cost model and chapters outside Jupyter (dcprivacy.cost, dcprivacy.runner) ------------------------

def _cost_args(p: argparse.ArgumentParser):
    p.add_argument("--profile", choices=("quick", "standard", "paper"), default=None, help="default: the active one")
    p.add_argument("--device", choices=("cpu", "t4", "h200"), default="cpu", help="the device to predict for")
    p.add_argument("--out", default=None, help="also write the prediction (with --fit: the constants) as JSON "
                   "with provenance here")
    p.add_argument("--force", **FORCE)
    p.add_argument("--timings", default=None, metavar="FILE",
                   help="a whole-book run's chapter times (tools/book.sh writes _build/timings/book-<profile>-"
                        "<device>.json): shown beside the predictions; with --fit, fitted instead of the committed "
                        "record")
    p.add_argument("--fit", action="store_true", help="re-fit the device's constants to the chapter times "
                   "of the committed record results/timings/book-<profile>-<device>.json (or --timings FILE) and "
                   "write results/timings/calibration-<device>.json (then used by every prediction), or --out")


@subcommand("cost", "predict every chapter's FLOPs, steps and minutes for a profile on a device")(_cost_args)
def _cost(args) -> int:
    from . import cost
    from .config import profile_name
    from .files import check_out_path
    started = time.time()
    profile = args.profile or profile_name()
    if args.out is not None:
        _claim(args, check_out_path(args.out, suffix=".json"))
    cost.device_constants(args.device)  # a damaged calibration file: one line naming it, before any work
    measured = cost.read_timings(args.timings) if args.timings is not None else None
    if args.fit:
        if measured is None:
            measured = cost.read_timings(cost.recorded_timings_path(profile, args.device))
        fitted = cost.fit(profile, args.device, measured)
        path = args.out or str(cost.timings_dir() / f"calibration-{args.device}.json")
        _emit({"kind": "cost-calibration", **fitted}, path, config=vars(args), started=started)
        return 0
    result = cost.predict(profile, args.device)
    seen = cost.compare(measured, profile, args.device) if measured is not None else {}
    head = f"{'measured':>10}{'meas/pred':>10}" if seen else ""
    # pessim.: at cost.PESSIMISTIC_EFFICIENCY where the device's constants are assumed
    print(f"{'chapter':<26}{'TFLOP':>10}{'steps':>10}{'host s':>8}{'minutes':>9}{'in book':>9}{'pessim.':>9}{head}",
          file=sys.stderr)
    for stem, c in result["chapters"].items():
        m = seen.get(stem)
        tail = "" if not seen else f"{'–':>10}{'–':>10}" if m is None else \
            f"{m['measured_seconds'] / 60:>10.1f}{m['measured_over_predicted']:>10.2f}"
        print(f"{stem:<26}{c['flops'] / 1e12:>10.2f}{c['steps']:>10.0f}{c['host_seconds']:>8.0f}"
              f"{c['minutes']:>9.1f}{c['minutes_in_book']:>9.1f}{c['minutes_pessimistic']:>9.1f}{tail}", file=sys.stderr)
    print(f"{'total':<54}{result['total_minutes']:>9.1f}{result['total_minutes_in_book']:>9.1f}", file=sys.stderr)
    if seen:  # a report of this machine against the model (the in-book column), not a check
        result["measured"] = {"timings": str(args.timings), "chapters": seen}
    if args.out:
        from .provenance import write_json
        print(f"wrote {write_json(args.out, result, config=vars(args), started=started)}", file=sys.stderr)
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "constants"}, default=str))
    return 0


def _chapter_args(p: argparse.ArgumentParser):
    p.add_argument("chapter", help="a chapter's file stem, e.g. 02-condensation")
    p.add_argument("--profile", choices=("quick", "standard", "paper"), default=None, help="default: the active one")
    p.add_argument("--device-name", choices=("cpu", "t4", "h200"), default=None,
                   help="the cost model's device this machine is (for the measured/predicted ratio)")
    p.add_argument("--timeout", type=_float(0, 7 * 24 * 3600), default=None,
                   help="stop the chapter after this many seconds")
    p.add_argument("--out", default=None, help="write the timing as JSON with provenance here (.json)")
    p.add_argument("--force", **FORCE)


@subcommand("chapter", "run one chapter's code outside Jupyter under a profile, timed, beside the prediction")(
    _chapter_args)
def _chapter(args) -> int:
    from .config import profile_name
    from .files import check_out_path
    from .runner import chapter_path, run_chapter
    started = time.time()
    profile = args.profile or profile_name()
    chapter_path(args.chapter)  # a chapter of the book
    if args.out is not None:
        _claim(args, check_out_path(args.out, suffix=".json"))
    result = run_chapter(args.chapter, profile=profile, device_name=args.device_name, timeout=args.timeout)
    _emit(result, args.out, config=vars(args), started=started, device=None)
    return 0 if result["returncode"] == 0 else 1


def _reproduce_args(p: argparse.ArgumentParser):
    p.add_argument("--budget-minutes", type=_float(0, 7 * 24 * 60), required=True,
                   help="stop starting work that would not end by then")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--dry-run", action="store_true", help="every step at toy sizes (a rehearsal on any machine)")
    p.add_argument("--steps", default="0,1,2,3,4", help="which steps, e.g. 1,3 (default: all, in order; 4, CIFAR-10, "
                   "only where its data is on disk)")
    p.add_argument("--results", default=None, help="folder for the results (default: results/)")


@subcommand("reproduce", "the GPU reproduction (chapter timings, DM/DSA/DC at the reference's settings, the critique "
            "at scale, CIFAR-10 where its data is on disk) within a time budget")(_reproduce_args)
def _reproduce(args) -> int:
    from .reproduce import reproduce
    try:
        steps = tuple(int(s) for s in args.steps.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--steps {args.steps!r}: expected numbers from 0 to 4 separated by commas, e.g. 0,1") from None
    _device(args.device)
    record = reproduce(budget_minutes=args.budget_minutes, device=args.device, dry_run=args.dry_run,
                       results=args.results, steps=steps, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({k: v for k, v in record.items() if k != "sizes"}, indent=2, default=str))
    return 0 if all(s["status"] in ("done", "skipped") for s in record["steps"].values()) else 1


# --- the one-run audit's bound (dcprivacy.audit) ---------------------------------------------------------

def _float_arg(what: str):
    """An argparse ``type``: a finite number (the range is checked by dcprivacy.audit, in one line)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number for {what}, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number for {what}, got {text!r}")
        return v
    return parse


def _audit_bound_args(p: argparse.ArgumentParser):
    p.add_argument("--canaries", type=_int(1), required=True, help="m: canaries, each included with probability 1/2")
    p.add_argument("--guesses", type=_int(0), required=True, help="r: guesses made (k+ + k-; abstentions excluded)")
    p.add_argument("--correct", type=_int(0), required=True, help="v: guesses that were right")
    p.add_argument("--delta", type=_float_arg("--delta"), required=True, help="δ of the (ε, δ)-DP hypothesis, in [0, 1)")
    p.add_argument("--alpha", type=_float_arg("--alpha"), default=0.05, help="the level, in (0, 1) (default 0.05)")


@subcommand("audit-bound", "the ε lower bound of a one-run privacy audit (Steinke, Nasr & Jagielski 2023, "
            "Theorem 7) from m canaries, r guesses and v right ones")(_audit_bound_args)
def _audit_bound(args) -> int:
    from .audit import epsilon_lower, p_value
    eps = epsilon_lower(args.canaries, args.guesses, args.correct, args.delta, args.alpha)
    result = {"epsilon_lower": eps, "canaries": args.canaries, "guesses": args.guesses, "correct": args.correct,
              "delta": args.delta, "alpha": args.alpha,
              "p_value_at_bound": p_value(args.canaries, args.guesses, args.correct, eps, args.delta)}
    print(json.dumps(result, indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: …``), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _check_environment() -> None:
    """What the environment names, before any work: ``DCPRIVACY_DATA`` must be a folder (or not exist yet)."""
    import os
    data = os.environ.get("DCPRIVACY_DATA")
    if data:
        path = Path(data).expanduser()
        if path.exists() and not path.is_dir():
            raise UsageError(f"DCPRIVACY_DATA={data}: not a folder; point it at a folder of datasets (or unset it)")


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand. Bad arguments, unsafe or damaged files and missing data end with one line on
    stderr and exit status 2; a run that fails on the way (out of memory, a full disk, a device error:
    ``RuntimeError``, ``OSError``) with one line and exit status 1. ``DCPRIVACY_TRACEBACK=1`` shows the
    traceback instead."""
    import os

    from .data import DataCorruptError, DataNotFoundError
    parser = _Parser(
        prog="python -m dcprivacy",
        description="Does dataset condensation give privacy for free? The book's experiments from a terminal. "
                    "Sizes follow the active profile (DCPRIVACY_PROFILE=quick|standard|paper).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_, configure, _) in SUBCOMMANDS.items():
        configure(sub.add_parser(name, help=help_, description=help_))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    held = len(_CLAIMS)
    try:
        _check_environment()
        with _active_dataset(args):
            return SUBCOMMANDS[args.command][2](args)
    except (ValueError, DataNotFoundError, DataCorruptError) as e:
        if os.environ.get("DCPRIVACY_TRACEBACK"):
            raise
        print(f"python -m dcprivacy {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, MemoryError) as e:
        if os.environ.get("DCPRIVACY_TRACEBACK"):
            raise
        print(f"python -m dcprivacy {args.command}: failed: {type(e).__name__}: {_one_line(e)} "
              f"(DCPRIVACY_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1
    finally:
        while len(_CLAIMS) > held:  # this command's outputs: written or not, no longer claimed
            _CLAIMS.pop().release()


if __name__ == "__main__":
    sys.exit(main())
