"""The GPU reproduction: the book's costliest experiments at the literature's sizes, within a time budget.

``python -m dcprivacy reproduce --budget-minutes M [--device cuda] [--dry-run]`` (or ``bash tools/gpu/run.sh``)
runs, in order of value, and writes each result as JSON with provenance the moment it exists — so a run
cut short keeps everything finished before the cut:

0. the ``standard`` profile of the chapters the cost model predicts to be the costliest (at least 2 and
   4), each run outside Jupyter (:mod:`dcprivacy.runner`), timed beside the prediction for this device;
   the measured/predicted ratio recalibrates the GPU constants and the T4 estimates
   (``<results>/gpu/chapters/``);
1. DM from real images on FashionMNIST at the reference's settings (ConvNet width 128, 256 real images per
   class and iteration, lr 1, DSA, the full training set) for 1, 10 and 50 images per class, each evaluated
   by the literature's protocol (``models`` ConvNets × 1000 epochs with DSA) (``<results>/condensation/``,
   which chapter 2's table of published accuracies reads);
2. DSA and DC at 1 and 10 images per class with the reference's loops, as many of the reference's 1000
   iterations as the budget allows (the number run is recorded) (``<results>/condensation/``);
3. the critique at scale: K runs of ``real``, ``subset`` and ``dm`` (width 128, DM ≥ 1000 iterations) on a
   pool of FashionMNIST images, LiRA online and offline, initialisers against the other members
   (``<results>/gpu/critique/``).

Every step is priced by :mod:`dcprivacy.cost` before it starts: a step that would not fit in what is left
of the budget is truncated (fewer iterations, recorded) or skipped (with the reason, in
``<results>/gpu/run.json``). ``--dry-run`` runs every step at toy sizes on any device (what the tests do).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REFERENCE_DM_ITERATIONS = 20000
REFERENCE_DC_ITERATIONS = 1000


@dataclass(frozen=True)
class Sizes:
    """What each step runs (the real run, or the dry run's toy sizes)."""
    chapters_min: tuple[str, ...] = ("02-condensation", "04-membership-inference")
    chapters_top: int = 3  # also the next costliest chapters, up to this many in all
    chapter_profile: str = "standard"
    dm_ipcs: tuple[int, ...] = (1, 10, 50)
    dm_iterations: int = REFERENCE_DM_ITERATIONS
    gm_ipcs: tuple[int, ...] = (1, 10)
    gm_iterations: int = REFERENCE_DC_ITERATIONS
    width: int = 128
    batch_real: int = 256
    per_class_pool: int = 0  # 0: the full training set
    eval_models: int = 5
    eval_epochs: int | None = None  # None: the literature's (1000 with DSA, 300 for DC)
    critique_runs: int = 16
    critique_pool: int = 10000
    critique_dm_iterations: int = 1000
    critique_ipc: int = 10
    critique_epochs: int = 60
    critique_epochs_small: int = 300
    bootstrap: int = 1000
    min_dm_iterations: int = 100  # fewer would not be worth recording
    min_gm_iterations: int = 10


DRY_RUN = Sizes(chapters_min=("03-linear-bound",), chapters_top=1, chapter_profile="quick", dm_ipcs=(1, 2),
                dm_iterations=3, gm_ipcs=(1,), gm_iterations=2, width=4, batch_real=8, per_class_pool=20,
                eval_models=1, eval_epochs=2, critique_runs=4, critique_pool=100, critique_dm_iterations=2, critique_ipc=1,
                critique_epochs=1, critique_epochs_small=1, bootstrap=10, min_dm_iterations=1, min_gm_iterations=1)


class Budget:
    """Minutes left, and the share of them each remaining step may take."""

    def __init__(self, minutes: float, shares: dict[str, float]):
        self.end = time.time() + 60 * minutes
        self.shares = dict(shares)

    def left(self) -> float:
        return max(0.0, (self.end - time.time()) / 60)

    def allowance(self, step: str) -> float:
        """This step's share of the minutes left (the shares of the steps not yet run)."""
        share = self.shares.pop(step)
        return self.left() * share / (share + sum(self.shares.values()))


def _device_key(device) -> str:
    from .timings import device_key
    import torch
    if torch.device(device).type != "cuda":
        return "cpu"
    key = device_key()
    return key if key in ("t4", "h200") else "t4"  # an unknown GPU: priced as the slower one


def _write(path: Path, result: dict, **prov) -> Path:
    from .provenance import write_json
    return write_json(path, result, **prov)


# --- step 0 -----------------------------------------------------------------------------------------------

def step_chapters(sizes: Sizes, budget: float, key: str, out: Path, log) -> dict:
    from . import cost
    from .runner import run_chapter
    pred = cost.predict(sizes.chapter_profile, key)["chapters"]
    order = list(sizes.chapters_min) + [s for s in sorted(pred, key=lambda s: -pred[s]["minutes"])
                                        if s not in sizes.chapters_min]
    chosen = order[:max(sizes.chapters_top, len(sizes.chapters_min))]
    end = time.time() + 60 * budget
    done, skipped = {}, {}
    for stem in chosen:
        left = (end - time.time()) / 60
        if pred[stem]["minutes"] > left:
            skipped[stem] = f"predicted {pred[stem]['minutes']:.1f} min > {left:.1f} min left for this step"
            log(f"step 0: skip {stem}: {skipped[stem]}")
            continue
        started = time.time()
        r = run_chapter(stem, profile=sizes.chapter_profile, device_name=key,
                        timeout=max(60.0, 60 * left))  # a chapter far slower than predicted is cut off
        _write(out / "gpu" / "chapters" / f"{stem}-{sizes.chapter_profile}-{key}.json", r, started=started,
               config={"step": 0, "chapter": stem, "profile": sizes.chapter_profile})
        done[stem] = r
        log(f"step 0: {stem} ({sizes.chapter_profile}) rc {r['returncode']} in {r['seconds']:.0f} s, predicted "
            f"{60 * r['predicted_minutes_on_device']:.0f} s")
    ok = {s: r for s, r in done.items() if r["returncode"] == 0}
    ratios = {s: r["measured_over_predicted"] for s, r in ok.items()}
    result = {"kind": "cost-recalibration", "device": key, "profile": sizes.chapter_profile, "ratios": ratios,
              "skipped": skipped, "failed": sorted(set(done) - set(ok))}
    if ratios:
        factor = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
        t4 = cost.predict(sizes.chapter_profile, "t4")["chapters"]
        result.update(factor=factor, note=(
            "measured/predicted on this device, geometric mean over the chapters run; the T4 estimates below "
            "are the cost model's T4 minutes × this factor (assumes the model errs alike on both GPUs)"),
            t4_minutes_recalibrated={s: c["minutes"] * factor for s, c in t4.items()})
    _write(out / "gpu" / "chapters" / f"recalibration-{key}.json", result, config={"step": 0})
    return result


# --- steps 1 and 2 ----------------------------------------------------------------------------------------

def _condense_and_evaluate(method: str, ipc: int, iterations: int, reference: int, sizes: Sizes, device, out: Path,
                           ds, log) -> dict:
    from . import condense as C
    from .data import class_balanced_subset
    started = time.time()
    idx = class_balanced_subset(ds.train_y, sizes.per_class_pool, seed=0) if sizes.per_class_pool else None
    x = ds.train_x if idx is None else ds.train_x[idx]
    y = ds.train_y if idx is None else ds.train_y[idx]
    x, y = x.to(device), y.to(device)
    common = dict(ipc=ipc, width=sizes.width, seed=0, device=device, batch_real=sizes.batch_real, indices=idx)
    if method == "dm":
        syn = C.distribution_matching(x, y, init="real", iterations=iterations, desc=f"DM ipc {ipc}", **common)
    else:
        syn = C.gradient_matching(x, y, iterations=iterations, loops=None,  # the reference's loops for this ipc
                                  augment=C.DEFAULT_STRATEGY if method == "dsa" else None,
                                  desc=f"{method.upper()} ipc {ipc}", **common)
    seconds_condense = time.time() - started
    ev = C.evaluate_synthetic(syn, ds.test_x, ds.test_y, models=sizes.eval_models, epochs=sizes.eval_epochs,
                              width=sizes.width, seed=0, device=device, desc=f"evaluate {method} {ipc}")
    path = out / "condensation" / f"{method}-fashionmnist-ipc{ipc}.pt"
    syn.save(path)
    result = {"kind": "condense", "dataset": "fashionmnist", "method": syn.method, "ipc": ipc,
              "synthetic_set": path.name, "iterations": iterations, "reference_iterations": reference,
              "seconds": seconds_condense, "seconds_evaluate": time.time() - started - seconds_condense,
              "config": syn.config, "evaluation": ev,
              "published_accuracy": C.PUBLISHED_ACCURACY.get((method, "fashionmnist", ipc))}
    _write(path.with_suffix(".json"), result, seed=0, started=started, device=device,
           config={"step": "reproduce", "sizes": asdict(sizes)})
    log(f"{method} ipc {ipc}: {iterations}/{reference} iterations, accuracy {100 * ev['accuracy_mean']:.1f} ± "
        f"{100 * ev['accuracy_std']:.1f}% ({ev['models']} models × {ev['epochs']} epochs), "
        f"published {result['published_accuracy']}")
    return result


def _fit_iterations(per_iteration_s: float, fixed_s: float, minutes: float, reference: int, minimum: int) -> int:
    """As many iterations (≤ ``reference``) as fit in ``minutes`` after ``fixed_s`` seconds; 0 when fewer
    than ``minimum`` would."""
    n = int((60 * minutes - fixed_s) / max(per_iteration_s, 1e-9))
    n = min(reference, n)
    return n if n >= minimum else 0


def step_condense(kind: str, sizes: Sizes, budget: float, key: str, device, out: Path, ds, log) -> dict:
    """Step 1 (``kind="dm"``) or 2 (``"gm"``: DSA, then DC), each (method, ipc) with an equal share of ``budget``."""
    from . import cost
    dev = cost.device_constants(key)
    jobs = [("dm", k) for k in sizes.dm_ipcs] if kind == "dm" else \
        [(m, k) for k in sizes.gm_ipcs for m in ("dsa", "dc")]
    end = time.time() + 60 * budget
    results, skipped = {}, {}
    pool = (sizes.per_class_pool or cost.TRAIN_PER_CLASS)
    real = min(sizes.batch_real, pool)
    for i, (method, ipc) in enumerate(jobs):
        share = (end - time.time()) / 60 / (len(jobs) - i)
        epochs = sizes.eval_epochs or (300 if method == "dc" else 1000)
        fixed = cost.evaluate(cost.NUM_CLASSES * ipc, epochs, sizes.eval_models, width=sizes.width,
                              gpu_paths=dev.gpu_paths).seconds(dev)
        if method == "dm":
            per_it = cost.dm(ipc, 1, real, width=sizes.width).seconds(dev)
            its = _fit_iterations(per_it, fixed, share, sizes.dm_iterations, sizes.min_dm_iterations)
            reference = REFERENCE_DM_ITERATIONS
        else:
            per_it = cost.gradient_matching(ipc, 1, None, real, width=sizes.width, gpu_paths=dev.gpu_paths).seconds(dev)
            its = _fit_iterations(per_it, fixed, share, sizes.gm_iterations, sizes.min_gm_iterations)
            reference = REFERENCE_DC_ITERATIONS
        name = f"{method}-ipc{ipc}"
        if its == 0:
            skipped[name] = (f"{share:.1f} min left for it: evaluation alone is predicted at {fixed / 60:.1f} min, "
                             f"one iteration at {per_it:.1f} s")
            log(f"skip {name}: {skipped[name]}")
            continue
        results[name] = _condense_and_evaluate(method, ipc, its, reference, sizes, device, out, ds, log)
    return {"done": {k: {"iterations": r["iterations"], "accuracy_mean": r["evaluation"]["accuracy_mean"]}
                     for k, r in results.items()}, "skipped": skipped}


# --- step 3 -----------------------------------------------------------------------------------------------

def step_critique(sizes: Sizes, budget: float, key: str, device, out: Path, ds, log) -> dict:
    from . import cost
    from .config import MIA
    from .data import class_balanced_subset
    from .mia import membership_masks
    from .pipelines import run_pipeline
    from .report import attack_report
    dev = cost.device_constants(key)
    cfg = MIA(pool=sizes.critique_pool, runs=sizes.critique_runs, epochs=sizes.critique_epochs,
              epochs_small=sizes.critique_epochs_small, batch_size=128, width=sizes.width, ipc=sizes.critique_ipc,
              dm_iterations=sizes.critique_dm_iterations, batch_real=sizes.batch_real, pipelines=("real", "subset", "dm"),
              bootstrap=sizes.bootstrap, test_size=0)
    predicted = {p: cost.mia_pipeline(p, cfg, gpu_paths=dev.gpu_paths).seconds(dev) / 60 for p in cfg.pipelines}
    if predicted["dm"] > budget:  # DM alone holds the result (initialisers vs the other members): keep K, fewer
        its = max(sizes.min_dm_iterations, int(cfg.dm_iterations * budget / predicted["dm"]))  # iterations (recorded)
        cfg = replace(cfg, dm_iterations=min(cfg.dm_iterations, its))
        predicted = {p: cost.mia_pipeline(p, cfg, gpu_paths=dev.gpu_paths).seconds(dev) / 60 for p in cfg.pipelines}
    pool_idx = class_balanced_subset(ds.train_y, cfg.pool // ds.num_classes, seed=0)
    masks = membership_masks(cfg.runs, len(pool_idx), seed=0)
    x, y = ds.train_x[pool_idx].to(device), ds.train_y[pool_idx].to(device)
    end = time.time() + 60 * budget
    done, skipped = {}, {}
    for p in ("dm", "real", "subset"):  # DM first: its initialisers are the result; the baselines as time allows
        left = (end - time.time()) / 60
        if predicted[p] > left:
            skipped[p] = f"predicted {predicted[p]:.1f} min > {left:.1f} min left"
            log(f"step 3: skip {p}: {skipped[p]}")
            continue
        started = time.time()
        runs = run_pipeline(p, x, y, masks, ds.test_x, ds.test_y, cfg=cfg, seed=0, device=device)
        report = attack_report(runs, masks, ds.train_y[pool_idx], cfg, 0)
        result = {"kind": "critique-at-scale", "pipeline": p, "dataset": "fashionmnist", "runs": cfg.runs,
                  "pool": cfg.pool, "width": cfg.width, "dm_iterations": cfg.dm_iterations,
                  "predicted_minutes": predicted[p], "seconds": runs.seconds, **report}
        _write(out / "gpu" / "critique" / f"{p}.json", result, seed=0, started=started, device=device,
               config={"step": 3, "mia": cfg})
        done[p] = {"seconds": runs.seconds, "test_accuracy_mean": report["test_accuracy_mean"]}
        log(f"step 3: {p}: {cfg.runs} runs in {runs.seconds:.0f} s (predicted {60 * predicted[p]:.0f} s)")
    return {"done": done, "skipped": skipped, "mia": asdict(cfg)}


# --- the whole run ----------------------------------------------------------------------------------------

SHARES = {"step0": 0.4, "step1": 0.25, "step2": 0.1, "step3": 0.25}  # of the minutes left when each starts


def reproduce(*, budget_minutes: float, device="cuda", dry_run: bool = False, results: str | Path | None = None,
              steps=(0, 1, 2, 3), log=print) -> dict:
    """Run the steps in order within ``budget_minutes``; returns (and writes to ``<results>/gpu/run.json``)
    what each step did, skipped or truncated, and the minutes it took."""
    import torch
    from .data import load_dataset
    from .provenance import results_dir
    if budget_minutes <= 0:
        raise ValueError(f"budget_minutes={budget_minutes}: must be > 0")
    bad = set(steps) - {0, 1, 2, 3}
    if bad:
        raise ValueError(f"steps {sorted(bad)}: allowed values are 0, 1, 2, 3")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; use --device cpu (with --dry-run for a rehearsal)")
    sizes = DRY_RUN if dry_run else Sizes()
    out = Path(results) if results else results_dir()
    key = _device_key(device)
    budget = Budget(budget_minutes, {f"step{s}": SHARES[f"step{s}"] for s in steps})
    record = {"kind": "gpu-reproduction", "device": key, "budget_minutes": budget_minutes, "dry_run": dry_run,
              "sizes": asdict(sizes), "steps": {}}
    started = time.time()
    path = out / "gpu" / ("run-dry.json" if dry_run else "run.json")

    def run(step: int, fn):
        t0 = time.time()
        allowance = budget.allowance(f"step{step}")
        log(f"step {step}: {allowance:.1f} of {budget.left():.1f} minutes left")
        try:
            res = fn(allowance)
            status = "done"
        except Exception as e:  # keep going: a later step may still fit and succeed
            res, status = {"error": f"{type(e).__name__}: {e}"}, "failed"
            log(f"step {step} failed: {res['error']}")
        record["steps"][str(step)] = {"status": status, "minutes": (time.time() - t0) / 60,
                                      "allowance_minutes": allowance, **res}
        _write(path, record, started=started, device=device, config={"budget_minutes": budget_minutes})

    ds = None
    if 0 in steps:
        run(0, lambda m: step_chapters(sizes, m, "cpu" if dry_run and key == "cpu" else key, out, log))
    if {1, 2, 3} & set(steps):
        ds = load_dataset("fashionmnist")
    if 1 in steps:
        run(1, lambda m: step_condense("dm", sizes, m, key, device, out, ds, log))
    if 2 in steps:
        run(2, lambda m: step_condense("gm", sizes, m, key, device, out, ds, log))
    if 3 in steps:
        run(3, lambda m: step_critique(sizes, m, key, device, out, ds, log))
    record["minutes"] = (time.time() - started) / 60
    _write(path, record, started=started, device=device, config={"budget_minutes": budget_minutes})
    return record


__all__ = ["reproduce", "Sizes", "DRY_RUN", "REFERENCE_DM_ITERATIONS", "REFERENCE_DC_ITERATIONS"]
