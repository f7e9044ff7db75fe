"""``python -m dcprivacy``: the book's pipelines from a terminal, results as JSON with provenance."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

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
