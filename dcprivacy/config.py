"""Profiles: how big every experiment of the book is, and on what device it runs.

The same chapter runs in minutes on a laptop CPU (``quick``), within a Colab session on its GPU
(``standard``) and at the papers' sizes on a large GPU (``paper``). Chapters never edit sizes by
hand: they read them from the active profile, chosen by the ``DCPRIVACY_PROFILE`` environment
variable, else ``standard`` when CUDA is available and ``quick`` when it is not.

A profile is sized for a dataset: :func:`get_profile` returns it for the active one
(:func:`dcprivacy.data.dataset_name`, ``DCPRIVACY_DATASET``), with that dataset's sizes where they differ
from FashionMNIST's (``DATASET_SIZES``: CIFAR-10 has 5000 training images per class, not 6000), and records
the dataset in ``Profile.dataset``.
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
    """Chapter 3: linear distribution matching on flattened FashionMNIST, and a model trained with noise."""
    n_grid: tuple[int, ...] = (375, 750, 1500, 3000, 6000)  # real samples per class (6000: all of them)
    m_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # synthetic samples per class
    removals: int = 10  # random non-initialisers removed, per class and grid point
    ipc: int = 10  # m of the single-size experiments (convergence, initialisers, ε)
    k: int = 64  # rows of the random linear extractor
    iterations: int = 300  # of the iterative linear DM loop
    lr: float = 1.0  # dimensionless step of linear DM (converges below ≈2, fastest near 1)
    validate: int = 3  # removals per class re-run through the iterative loop
    beta: float = 1.0  # inverse temperature of the noisy model
    tau: float = 10.0  # prior standard deviation of the noisy model
    langevin_steps: int = 300  # at langevin's default step 0.05/λ: burn-in error 0.95^300 ≈ 2e-7
    chains: int = 32  # independent Langevin runs
    delta: float = 1e-5


@dataclass(frozen=True)
class Condense:
    """Chapter 2: DM, DC and DSA on FashionMNIST, and their evaluation."""
    per_class_pool: int = 500  # real images per class to condense from (0: the full training set)
    ipc: tuple[int, ...] = (1, 10)
    width: int = 16
    depth: int = 3
    batch_real: int = 32
    dm_iterations: int = 200
    dc_iterations: int = 20
    dc_loops: tuple[int, int] | None = (5, 5)  # (outer, inner); None: the reference's per-ipc values
    dc_init: str = "real"  # the reference's DC starts from noise, which needs far more iterations
    eval_models: int = 3
    eval_epochs_dm: int = 100  # DM/DSA: trained with augmentation
    eval_epochs_dc: int = 100
    eval_epochs_whole: int = 10  # the reference point: ConvNets trained on the whole pool
    snapshots: tuple[int, ...] = (0, 50, 200)
    margin: float = 0.005  # DM and DC at 10 images per class must beat random real images by this much


@dataclass(frozen=True)
class MIA:
    """Chapters 4–5: membership inference against the pipelines (see dcprivacy.pipelines)."""
    pool: int = 1000  # examples in the attack pool, class-balanced; each run trains on a random half
    runs: int = 16  # K: models per pipeline (each the target once, the others its shadows)
    epochs: int = 30  # training epochs on the IN half (pipeline "real")
    epochs_small: int = 50  # training epochs on small sets (subset, synthetic)
    batch_size: int = 64  # of the models under attack (small batches: many steps per pass over the data)
    width: int = 16
    ipc: int = 10
    dm_iterations: int = 60
    batch_real: int = 32
    dc_iterations: int = 10
    dc_loops: tuple[int, int] | None = (5, 5)
    train_augment: bool = False  # DSA augmentation while training the models under attack (one recipe for all)
    # DM pipelines: condense all K runs in one batch that shares every random draw (networks, real batches,
    # augmentation, noise init): one real forward serves every run. Faster, but the runs then differ only in
    # their members — as if the attacker knew the condensation's randomness (see chapter 4's exercise).
    shared_draws: bool = False
    pipelines: tuple[str, ...] = ("real", "subset", "dm", "dm-noise")
    bootstrap: int = 200
    test_size: int = 2000  # test images for each model's accuracy (0: the whole test set)
    # chapter 5's privacy–utility frontier: the naive baseline with these many real images per class (each
    # size: `runs` models, `epochs_small` epochs on 10·size images; the size `ipc` is the baseline itself)
    subset_sizes: tuple[int, ...] = (1, 2, 5, 10, 20)


@dataclass(frozen=True)
class Nonlinear:
    """Chapter 6: how far DM's synthetic set moves when one real sample is removed, with ReLU extractors."""
    n_grid: tuple[int, ...] = (50, 100, 200, 400)  # real samples per class
    m_grid: tuple[int, ...] = (1, 4, 16)  # synthetic images per class
    iterations: tuple[int, ...] = (1, 3, 10, 30)  # DM runs to the last; the sets are compared at each
    removals: int = 2  # non-initialisers removed per repeat (and one initialiser), each also perturbed instead
    repeats: int = 4  # the independent units: each another class, sample order and network seed
    lr_img: float = 1.0  # the reference's step on the images (momentum 0.5)
    lr_sweep: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)  # steps of the ConvNet at the smallest m (every repeat)
    margin: float = 1.25  # equivalence margin of the removal/control shift ratio (a factor either way)
    mlp: tuple[int, int] = (16, 2)  # (width, depth) of the MLP extractor
    convnet: tuple[int, int] = (8, 3)  # (width, depth) of the ConvNet extractor
    widths: tuple[int, ...] = (8, 16)  # width sweep (each extractor at its depth), at m = sweep_m
    depths: tuple[int, ...] = (1, 2, 3)  # depth sweep (each extractor at its width)
    sweep_m: int = 4
    linear_k: int = 256  # rows of the linear extractor of the control experiment
    pool: int = 100  # real images per class in the trained-models experiment
    model_ipc: int = 4
    targets: int = 2  # initialisers, and as many non-initialisers, removed one at a time
    model: tuple[str, int, int] = ("mlp", 64, 2)  # (arch, width, depth) of the models trained on the sets
    train_seeds: int = 16  # models per synthetic set (the same seeds for every set)
    train_epochs: int = 100
    bootstrap: int = 2000


@dataclass(frozen=True)
class Visual:
    """Chapter 7: do condensed images look like the images that made them?"""
    classes: int = 4  # the first classes of FashionMNIST (DM treats classes independently)
    per_class_pool: int = 100  # real images per class to condense from (0: all of them)
    ipc: int = 10
    width: int = 8
    depth: int = 3
    batch_real: int = 32
    dm_iterations: int = 100
    dm_snapshots: tuple[int, ...] = (0, 10, 30, 100)
    dc_iterations: int = 10
    dc_loops: tuple[int, int] | None = (5, 5)  # (outer, inner); None: the reference's per-ipc values
    dc_snapshots: tuple[int, ...] = (0, 3, 10)
    candidates: int = 10  # nearest neighbours in pixel L2 that SSIM re-ranks
    others: int = 20  # random other real images of its class per synthetic image (SSIM baseline)
    exact_check: int = 8  # synthetic images whose SSIM neighbour is also searched exhaustively
    shown: int = 6  # synthetic images per figure grid


@dataclass(frozen=True)
class DP:
    """Chapter 8: differentially private DM against DP-SGD (see dcprivacy.dp)."""
    epsilons: tuple[float, ...] = (1.0, 2.0, 8.0)  # the accuracy sweep (the paper profile adds 4)
    delta: float = 1e-5
    accountant: str = "prv"  # "prv" (tight) or "rdp" (an upper bound)
    per_class_pool: int = 300  # real images per class (0: all); this public size divides DP-DM's noisy sums
    ipc: int = 10
    width: int = 16  # ConvNet width: DP-DM's random networks and DP-SGD's models (noise grows with √width)
    iterations: int = 100  # DP-DM iterations = Gaussian releases (quick: as many as DP-SGD's steps)
    sample_rate: float = 0.05  # Poisson rate q of DP-DM (≈ 15 real images per class and iteration here)
    clip: float = 1.0  # L2 bound of each real embedding (DP-DM) and per-example gradient (DP-SGD)
    lr_img: float = 1000.0  # clipped embeddings make DM's loss tiny: 300–3000 all worked at ε = 1 … ∞
    momentum: float = 0.5
    dpsgd_epochs: int = 5
    dpsgd_sample_rate: float = 0.05
    dpsgd_lr: float = 0.25  # SGD, momentum 0.9 (0.1–0.5 within 5 points at ε = 1 and 8)
    eval_epochs: int = 100  # training on a released DP-DM set (post-processing)
    eval_models: int = 2  # models trained on each DP-DM set of the ε sweep
    seeds: int = 3  # seeds of the accuracy comparison at attack_epsilon (DP-SGD, DM, random images; seed 0: the sweep's)
    attack_epsilon: float = 2.0  # the ε of the models LiRA attacks: e^ε·FPR + δ still bounds TPR below 1
    attack_runs: int = 8  # K models per private pipeline (LiRA leave-one-out: each the target once)
    attack_pool: int = 1000  # class-balanced; each run's private set is a random half
    attack_test: int = 2000  # test images that measure the attacked models' accuracy (0: all)
    # the one-run audit (dcprivacy.audit): one run per pipeline on the attack pool, with two sets of canaries
    audit_canaries: int = 1000  # white box: canary records (fixed clipped embedding / gradient), every release seen
    audit_image_canaries: int = 200  # black box: mislabelled training images, the released model(s) seen
    audit_models: int = 1  # ConvNets trained on each audited DP-DM release, for the black box
    audit_guesses: tuple[tuple[float, float], ...] = ((0.05, 0.0), (0.1, 0.0), (0.1, 0.1), (0.25, 0.25))  # (k₊, k₋)/m
    audit_alpha: float = 0.05  # the audit's level, Bonferroni over audit_guesses
    audit_noise_divisor: float = 10.0  # the broken DP-DM adds σ / this while claiming the ε of σ
    audit_power_canaries: tuple[int, ...] = (1000, 10000, 100000)  # canary counts of the simulated power curves


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    dataset: str = "fashionmnist"  # the dataset these sizes are for (get_profile sets it)
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
        # Sized with the cost model (python -m dcprivacy cost --profile standard --device t4): every chapter,
        # opened alone on a fresh runtime (chapters 5 and 8 then re-create chapter 4's experiment), is
        # predicted within its 20 minutes on a T4 even at the pessimistic efficiency (convolutions at 15% of
        # the peak, not the assumed 25%: cost.PESSIMISTIC_EFFICIENCY, tests/test_standard_budget.py).
        tour=Tour(per_class=(1, 10, 50, 100, 500), models=5, epochs=200, width=64),
        theory=Theory(n_grid=(187, 375, 750, 1500, 3000, 6000), m_grid=(1, 2, 4, 8, 16, 32, 64),
                      removals=50, k=256, iterations=1000, validate=10, langevin_steps=2000, chains=256),
        # The reference's ConvNet and DC/DSA loops (10, 50) at ipc 10, on the full training set, but 128 real
        # images per class and step (of 256: half DM's cost, whose real side dominates), 500 DM and 10 DC/DSA
        # iterations (of 20000 and 1000), DC from real images (from noise it needs the reference's 1000), and
        # evaluation by 3 models × 300 epochs (of 5–20 × 1000; the whole-pool reference point: 2 epochs): the
        # gains over the random start appear within the first few hundred DM iterations and the first DC ones.
        condense=Condense(per_class_pool=0, ipc=(1, 10, 50), width=128, batch_real=128,
                          dm_iterations=500, dc_iterations=10, dc_loops=None, dc_init="real", eval_models=3,
                          margin=0.02,
                          eval_epochs_dm=300, eval_epochs_dc=300, eval_epochs_whole=2, snapshots=(0, 50, 200, 500)),
        # K = 16 (the LiRA reference's count), a pool of 4000, 300 DM iterations of 64 real images per class:
        # initialisers are 1 in 20 members (ipc 10 of 200 per class), K · 100 = 1600 initialiser scores per pipeline
        # bound their TPR tightly. Chapters 5 and 8 re-create this experiment on a fresh runtime, which is what
        # sizes it (chapter 8 alone ≤ 20 T4 minutes at the pessimistic efficiency). DC and DSA pipelines (hours at
        # K = 16) are left to the paper profile and tools/gpu.
        mia=MIA(pool=4000, runs=16, epochs=60, epochs_small=300, batch_size=128, width=64, dm_iterations=300,
                batch_real=64, pipelines=("real", "subset", "dm", "dm-noise"), bootstrap=500, test_size=0,
                subset_sizes=(1, 2, 5, 10, 20, 50)),
        nonlinear=Nonlinear(n_grid=(100, 200, 400, 800, 1600), m_grid=(1, 4, 16, 64),
                            iterations=(1, 10, 100, 500), removals=3, repeats=6, mlp=(128, 2), convnet=(32, 3),
                            widths=(16, 32, 64, 128), depths=(1, 2, 3, 4), pool=500, model_ipc=10, targets=4,
                            model=("convnet", 32, 3), train_seeds=64, train_epochs=300),
        # 500 real images per class and 10 exhaustive-SSIM checks: scikit-image SSIM runs on the host, one pair at a time
        visual=Visual(classes=10, per_class_pool=500, width=64, batch_real=128, dm_iterations=1000,
                      dm_snapshots=(0, 10, 100, 1000), dc_iterations=100, dc_loops=(10, 10),
                      dc_snapshots=(0, 10, 100), candidates=20, others=50, exact_check=10),
        # a pool of 1000 per class (DP-DM's noisy sums divided by 1000, not 6000: noise 6× larger than on the
        # whole set, still below the signal at ε = 1 over 1000 releases), K = 16 attacked models on a pool of 2000
        dp=DP(per_class_pool=1000, width=32, iterations=1000, sample_rate=0.05, dpsgd_epochs=10,
              dpsgd_sample_rate=0.02, eval_epochs=200, attack_runs=16, attack_pool=2000, attack_test=0,
              audit_canaries=2000, audit_image_canaries=500, audit_power_canaries=(2000, 20000)),
    ),
    "paper": Profile(
        "paper", "the papers' sizes: a large GPU and hours",
        tour=Tour(per_class=(1, 10, 50, 100, 500, 1000, 6000), models=10, epochs=300, width=128),
        theory=Theory(n_grid=(375, 750, 1500, 3000, 6000), m_grid=(1, 2, 4, 8, 16, 32, 64, 128),
                      removals=100, ipc=50, k=2048, iterations=20000, validate=20, langevin_steps=5000,
                      chains=1024),
        condense=Condense(per_class_pool=0, ipc=(1, 10, 50), width=128, batch_real=256,
                          dm_iterations=20000, dc_iterations=1000, dc_loops=None, dc_init="noise", eval_models=20,
                          margin=0.02,
                          eval_epochs_dm=1000, eval_epochs_dc=300, snapshots=(0, 1000, 5000, 20000)),
        mia=MIA(pool=60000, runs=64, epochs=100, epochs_small=1000, batch_size=256, width=128, ipc=50,
                dm_iterations=20000,
                batch_real=256, dc_iterations=1000, dc_loops=None,
                pipelines=("real", "subset", "dm", "dm-noise", "dc", "dsa"), bootstrap=1000, test_size=0,
                subset_sizes=(1, 2, 5, 10, 20, 50, 100)),
        nonlinear=Nonlinear(n_grid=(100, 200, 400, 800, 1600, 3200, 6000), m_grid=(1, 4, 16, 64),
                            iterations=(1, 10, 100, 1000, 5000), removals=10, repeats=10, mlp=(512, 2),
                            convnet=(128, 3), widths=(32, 64, 128, 256, 512), depths=(1, 2, 3, 4), pool=1000,
                            model_ipc=10, targets=10, model=("convnet", 128, 3), train_seeds=256,
                            train_epochs=1000),
        visual=Visual(classes=10, per_class_pool=0, width=128, batch_real=256, dm_iterations=20000,
                      dm_snapshots=(0, 100, 1000, 20000), dc_iterations=1000, dc_loops=None,
                      dc_snapshots=(0, 100, 1000), candidates=50, others=100, exact_check=50),
        dp=DP(epsilons=(1.0, 2.0, 4.0, 8.0), per_class_pool=0, width=128, iterations=10000, sample_rate=0.01,
              dpsgd_epochs=50,
              dpsgd_sample_rate=0.01, eval_epochs=1000, attack_runs=64, attack_pool=20000, attack_test=0,
              seeds=5, audit_canaries=10000, audit_image_canaries=1000, audit_models=3,
              audit_power_canaries=(10000, 100000)),
    ),
}


# Where a dataset needs other sizes than FashionMNIST's, per (profile, dataset): {section: {field: value}}.
# CIFAR-10 has 5000 training images per class (FashionMNIST 6000): grids that went up to "all of them" stop at 5000.
# Its images cost a ConvNet a little more than FashionMNIST's (3 input channels instead of 1 change only the first
# convolution; both are 32×32 maps inside) and its pixel-space work (SSIM, nearest neighbours, chapter 3's linear
# algebra) grows with d = 3072 (784). `standard` is sized so that every chapter, opened alone on a fresh T4
# runtime, is predicted within 20 minutes even at the pessimistic efficiency (cost.PESSIMISTIC_EFFICIENCY: 15% of
# peak for the ConvNets instead of 25%; `python -m dcprivacy cost --profile standard --device t4` with
# DCPRIVACY_DATASET=cifar10, tested in tests/test_standard_budget.py): fewer DM iterations and evaluation epochs in
# chapter 2, half the DC/DSA iterations and a quarter of the exhaustive SSIM checks in chapter 7; the attacks of
# chapters 4, 5 and 8 keep FashionMNIST's sizes (K = 16, pools of 4000 and 2000), which leaves chapter 8 the
# closest to its budget.
DATASET_SIZES: dict[tuple[str, str], dict[str, dict]] = {
    # quick: each chapter within its 2-core budget (cost.BUDGET_MINUTES), as FashionMNIST's: fewer epochs and DM
    # iterations for the attacked models (the first convolution's 3 channels cost the narrow nets the most), 6 of
    # the 16 model seeds and 60 of the 100 epochs in chapter 6 (its MLP's first layer sees 3072 inputs), a smaller
    # pool and fewer SSIM pairs in 7
    ("quick", "cifar10"): {
        "theory": dict(n_grid=(312, 625, 1250, 2500, 5000)),
        "mia": dict(epochs=24, epochs_small=40, dm_iterations=40),
        "nonlinear": dict(train_seeds=6, train_epochs=60),
        "visual": dict(per_class_pool=50, candidates=8, others=10, exact_check=4),
    },
    ("standard", "cifar10"): {
        "theory": dict(n_grid=(156, 312, 625, 1250, 2500, 5000)),
        "condense": dict(dm_iterations=300, eval_epochs_dm=200, eval_epochs_dc=200, snapshots=(0, 50, 100, 300)),
        "visual": dict(dc_iterations=50, dc_snapshots=(0, 10, 50), exact_check=4),
    },
    ("paper", "cifar10"): {
        "tour": dict(per_class=(1, 10, 50, 100, 500, 1000, 5000)),
        "theory": dict(n_grid=(312, 625, 1250, 2500, 5000)),
        "mia": dict(pool=50000),
        "nonlinear": dict(n_grid=(100, 200, 400, 800, 1600, 3200, 5000)),
    },
}


def for_dataset(profile: Profile, dataset: str) -> Profile:
    """``profile`` sized for ``dataset`` (``DATASET_SIZES``), with ``Profile.dataset`` set."""
    sizes = DATASET_SIZES.get((profile.name, dataset), {})
    return replace(profile, dataset=dataset, **{section: replace(getattr(profile, section), **fields)
                                                for section, fields in sizes.items()})


def profile_name() -> str:
    """The active profile's name: ``DCPRIVACY_PROFILE``, else by whether CUDA is available."""
    name = os.environ.get("DCPRIVACY_PROFILE", "").strip().lower()
    if not name:
        return "standard" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise ValueError(f"DCPRIVACY_PROFILE={name!r}: allowed values are {', '.join(PROFILE_NAMES)}")
    return name


def get_profile(name: str | None = None, dataset: str | None = None) -> Profile:
    """The named profile, or the active one, sized for ``dataset`` (default: the active dataset,
    ``DCPRIVACY_DATASET``; see :func:`for_dataset`)."""
    from .data import _check_name, dataset_name
    name = profile_name() if name is None else name
    if name not in PROFILES:
        raise ValueError(f"profile {name!r}: allowed values are {', '.join(PROFILE_NAMES)}")
    return for_dataset(PROFILES[name], dataset_name() if dataset is None else _check_name(dataset))


def default_device() -> torch.device:
    """CUDA when present (``DCPRIVACY_DEVICE`` overrides), else the CPU."""
    env = os.environ.get("DCPRIVACY_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def gpu_paths(device: torch.device | str | None) -> bool:
    """Whether to take the code paths the package takes on a GPU (stacked training and prediction, vmap
    gradient matching, one-pass DM embeddings in NCHW, pinned host-to-device copies): on a CUDA device, or
    anywhere with ``DCPRIVACY_FORCE_GPU_PATHS=1`` — how the tests run every such path on a CPU, so that
    none of them meets its first input on a reader's GPU. Each path also has its own keyword argument."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    return device.type == "cuda" or os.environ.get("DCPRIVACY_FORCE_GPU_PATHS", "").strip() == "1"


PRECISIONS = ("auto", "fp32", "bf16")
_exact = False  # set by exact_arithmetic(): no reduced precision anywhere in this process


def fast_dtype(device: torch.device | str | None, width: int, precision: str | None = "auto") -> torch.dtype | None:
    """The reduced precision in which the package may run a ConvNet's arithmetic, or ``None`` for float32:
    DM's gradient-free real side (:func:`dcprivacy.condense.real_embedding`) and the mixed-precision training
    of :func:`dcprivacy.condense.evaluate_synthetic`.

    ``precision``: ``"fp32"`` (never), ``"bf16"`` (always), ``"auto"`` (default; the environment variable
    ``DCPRIVACY_PRECISION`` overrides it): bfloat16 on a CPU whose oneDNN has native bfloat16 arithmetic
    (AVX512-BF16 or AMX), for networks at least 64 channels wide — there bfloat16 convolutions measured
    about twice as fast as float32 (``python -m dcprivacy bench condense``), while narrower ones gained
    nothing — and never after :func:`exact_arithmetic`. On a GPU ``"auto"`` is float32 (and the GPU's own
    TF32 convolutions, unless :func:`exact_arithmetic` turned them off)."""
    if precision in (None, "auto"):
        precision = os.environ.get("DCPRIVACY_PRECISION", "auto").strip() or "auto"
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed values are {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    device = torch.device(device) if device is not None else torch.device("cpu")
    native = device.type == "cpu" and torch.backends.mkldnn.is_available() and _mkldnn_bf16()
    return torch.bfloat16 if native and width >= 64 and not _exact else None


def compile_pays(device: torch.device | str | None, width: int, steps: int, at_least: int) -> bool:
    """Whether the package compiles a ConvNet's step by default (``compile=None``): on a CPU (not the GPU
    paths), for networks at least 64 channels wide and runs of at least ``at_least`` steps, where fusing
    normalisation, ReLU and pooling (and bfloat16 casts) is faster per step and the compilation (seconds on
    a warm cache, more on a cold one) is repaid (``bench condense`` and ``bench evaluate`` record both)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    return device.type == "cpu" and not gpu_paths(device) and width >= 64 and steps >= at_least


def _mkldnn_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def exact_arithmetic() -> dict:
    """Full fp32 precision and deterministic cuDNN, for chapters whose claims are differences of size 1/n:
    no TF32 in matrix products or convolutions (Ampere and later GPUs use it by default for convolutions;
    it keeps 10 mantissa bits), cuDNN's deterministic algorithms and no autotuning. Harmless on a CPU.
    No reduced precision either (:func:`fast_dtype` returns float32 from now on). Returns the settings now
    in force."""
    global _exact
    _exact = True
    torch.set_float32_matmul_precision("highest")
    try:  # the API of PyTorch ≥ 2.9
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    except AttributeError:
        torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(), "cudnn_deterministic": True,
            "cudnn_benchmark": False, "tf32": False}


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


__all__ = ["Profile", "PROFILES", "PROFILE_NAMES", "get_profile", "profile_name", "for_dataset", "DATASET_SIZES", "default_device",
           "gpu_paths", "fast_dtype", "compile_pays", "PRECISIONS", "exact_arithmetic", "progress", "replace", "Tour", "Theory", "Condense", "MIA", "Nonlinear", "Visual", "DP"]
