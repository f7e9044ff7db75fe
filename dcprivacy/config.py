"""Profiles: how big every experiment of the book is, and on what device it runs.

The same chapter runs in minutes on a laptop CPU (``quick``), within a Colab session on its GPU
(``standard``) and at the papers' sizes on a large GPU (``paper``). Chapters never edit sizes by
hand: they read them from the active profile, chosen by the ``DCPRIVACY_PROFILE`` environment
variable, else ``standard`` when CUDA is available and ``quick`` when it is not.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

import torch

PROFILE_NAMES = ("quick", "standard", "paper")


@dataclass(frozen=True)
class Tour:
    """Chapter 1: ConvNets trained on class-balanced real subsets of growing size."""
    per_class: tuple[int, ...] = (1, 5, 10, 50)
    models: int = 4
    epochs: int = 60
    width: int = 16


@dataclass(frozen=True)
class Theory:
    """Chapter 2: linear distribution matching on flattened FashionMNIST."""
    n_grid: tuple[int, ...] = (250, 500, 1000, 2000, 4000)  # real samples per class
    m_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # synthetic samples per class
    removals: int = 20  # random non-init samples removed per grid point
    k: int = 64  # rows of the random linear extractor
    iterations: int = 2000  # of the iterative linear DM loop
    lr: float = 0.1


@dataclass(frozen=True)
class Condense:
    """Chapter 3: DM, DC and DSA on FashionMNIST, and their evaluation."""
    per_class_pool: int = 500  # real images per class to condense from (0: the full training set)
    ipc: tuple[int, ...] = (1, 10)
    width: int = 32
    depth: int = 3
    batch_real: int = 64
    dm_iterations: int = 300
    dc_iterations: int = 20
    dc_loops: tuple[int, int] | None = (5, 5)  # (outer, inner); None: the reference's per-ipc values
    eval_models: int = 3
    eval_epochs_dm: int = 150  # DM/DSA: trained with augmentation
    eval_epochs_dc: int = 150
    snapshots: tuple[int, ...] = (0, 50, 300)


@dataclass(frozen=True)
class MIA:
    """Chapters 4–5: membership inference against the pipelines."""
    pool: int = 2000  # examples in the attack pool (half IN per run)
    runs: int = 16  # K: models per pipeline (each the target once, the others its shadows)
    epochs: int = 30  # training epochs of the models under attack
    width: int = 32
    ipc: int = 10
    dm_iterations: int = 200
    batch_real: int = 64
    dc_iterations: int = 10
    pipelines: tuple[str, ...] = ("real", "subset", "dm", "dm-noise", "dsa")
    bootstrap: int = 200


@dataclass(frozen=True)
class Nonlinear:
    """Chapter 6: how far DM's synthetic set moves when one real sample is removed."""
    n_grid: tuple[int, ...] = (100, 200, 400, 800)
    m_grid: tuple[int, ...] = (1, 4, 16)
    widths: tuple[int, ...] = (32, 128)
    depths: tuple[int, ...] = (1, 3)
    repeats: int = 4
    iterations: int = 100
    train_seeds: int = 16


@dataclass(frozen=True)
class Visual:
    """Chapter 7: do condensed images look like the images that made them?"""
    per_class_pool: int = 300
    ipc: int = 10
    dm_iterations: int = 300
    dc_iterations: int = 20
    snapshots: tuple[int, ...] = (0, 100, 300)


@dataclass(frozen=True)
class DP:
    """Chapter 8: differentially private DM against DP-SGD."""
    epsilons: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    delta: float = 1e-5
    per_class_pool: int = 300
    ipc: int = 10
    iterations: int = 200
    sample_rate: float = 0.1
    clip: float = 1.0
    dpsgd_epochs: int = 5
    eval_epochs: int = 100
    attack_runs: int = 16
    attack_pool: int = 1000


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    tour: Tour = field(default_factory=Tour)
    theory: Theory = field(default_factory=Theory)
    condense: Condense = field(default_factory=Condense)
    mia: MIA = field(default_factory=MIA)
    nonlinear: Nonlinear = field(default_factory=Nonlinear)
    visual: Visual = field(default_factory=Visual)
    dp: DP = field(default_factory=DP)

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick", "2 CPU cores (CI, laptops): small subsets and narrow nets, the whole book in minutes"),
    "standard": Profile(
        "standard", "one Colab-class GPU (T4, 16 GB): each chapter in at most 20 minutes",
        tour=Tour(per_class=(1, 10, 50, 100, 500), models=8, epochs=300, width=128),
        theory=Theory(n_grid=(250, 500, 1000, 2000, 4000, 6000), m_grid=(1, 2, 4, 8, 16, 32, 64),
                      removals=50, k=256, iterations=5000),
        condense=Condense(per_class_pool=0, ipc=(1, 10, 50), width=128, batch_real=256,
                          dm_iterations=2000, dc_iterations=200, dc_loops=None, eval_models=5,
                          eval_epochs_dm=1000, eval_epochs_dc=300, snapshots=(0, 100, 500, 2000)),
        mia=MIA(pool=10000, runs=32, epochs=60, width=64, dm_iterations=1000, batch_real=128,
                dc_iterations=100, bootstrap=500),
        nonlinear=Nonlinear(n_grid=(100, 200, 400, 800, 1600, 3200), m_grid=(1, 4, 16, 64),
                            widths=(32, 128, 512), depths=(1, 2, 3), repeats=8, iterations=500,
                            train_seeds=64),
        visual=Visual(per_class_pool=0, dm_iterations=2000, dc_iterations=200, snapshots=(0, 200, 1000, 2000)),
        dp=DP(per_class_pool=0, iterations=2000, sample_rate=0.02, dpsgd_epochs=20, eval_epochs=300,
              attack_runs=32, attack_pool=5000),
    ),
    "paper": Profile(
        "paper", "the papers' sizes: a large GPU and hours",
        tour=Tour(per_class=(1, 10, 50, 100, 500, 1000, 6000), models=10, epochs=300, width=128),
        theory=Theory(n_grid=(250, 500, 1000, 2000, 4000, 6000), m_grid=(1, 2, 4, 8, 16, 32, 64, 128),
                      removals=200, k=2048, iterations=20000),
        condense=Condense(per_class_pool=0, ipc=(1, 10, 50), width=128, batch_real=256,
                          dm_iterations=20000, dc_iterations=1000, dc_loops=None, eval_models=20,
                          eval_epochs_dm=1000, eval_epochs_dc=300, snapshots=(0, 1000, 5000, 20000)),
        mia=MIA(pool=60000, runs=64, epochs=100, width=128, ipc=50, dm_iterations=20000, batch_real=256,
                dc_iterations=1000, bootstrap=1000),
        nonlinear=Nonlinear(n_grid=(100, 200, 400, 800, 1600, 3200, 6000), m_grid=(1, 4, 16, 64),
                            widths=(32, 128, 512, 2048), depths=(1, 2, 3, 4), repeats=16,
                            iterations=2000, train_seeds=256),
        visual=Visual(per_class_pool=0, dm_iterations=20000, dc_iterations=1000,
                      snapshots=(0, 1000, 5000, 20000)),
        dp=DP(per_class_pool=0, iterations=10000, sample_rate=0.01, dpsgd_epochs=50, eval_epochs=1000,
              attack_runs=64, attack_pool=20000),
    ),
}


def profile_name() -> str:
    """The active profile's name: ``DCPRIVACY_PROFILE``, else by whether CUDA is available."""
    name = os.environ.get("DCPRIVACY_PROFILE", "").strip().lower()
    if not name:
        return "standard" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(f"DCPRIVACY_PROFILE={name!r}: allowed values are {', '.join(PROFILE_NAMES)}")
    return name


def get_profile(name: str | None = None) -> Profile:
    """The named profile, or the active one."""
    name = profile_name() if name is None else name
    if name not in PROFILES:
        raise ValueError(f"profile {name!r}: allowed values are {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


def default_device() -> torch.device:
    """CUDA when present (``DCPRIVACY_DEVICE`` overrides), else the CPU."""
    env = os.environ.get("DCPRIVACY_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress(iterable=None, **kwargs):
    """A tqdm progress bar, silenced by ``DCPRIVACY_PROGRESS=0`` (how the book's pages are executed)."""
    if os.environ.get("DCPRIVACY_PROGRESS", "1") == "0":
        kwargs["disable"] = True
    try:
        import ipywidgets  # noqa: F401  (notebook widgets when available, e.g. on Colab)
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, **kwargs)


__all__ = ["Profile", "PROFILES", "PROFILE_NAMES", "get_profile", "profile_name", "default_device",
           "progress", "replace", "Tour", "Theory", "Condense", "MIA", "Nonlinear", "Visual", "DP"]
