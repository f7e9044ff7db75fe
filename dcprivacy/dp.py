"""Differential privacy for condensation: the Gaussian mechanism, accounting, DP-DM and DP-SGD.

**Neighbouring datasets** differ by adding or removing one example — image *and* label. Every
(ε, δ) in this module is with respect to that relation, for the real training pool. Public: the
architecture and every random network drawn, the number of iterations, the sampling rate, the
clipping norm, the number of classes and the declared class sizes below. Secret: the Poisson
samples and the Gaussian noise. The runs here are reproducible by ``seed`` so that the book's
numbers can be checked; the guarantee then holds only while the seed is kept secret (draw it with
``secrets.randbits(62)`` for a real release; like Opacus without ``secure_mode``, nothing here is
hardened against floating-point attacks on the noise sampler).

**DP distribution matching** (:func:`dp_distribution_matching`) touches the private data in one
place per iteration, :func:`noisy_class_sums`. Each iteration

1. draws a fresh random ConvNet from a seed — data-independent;
2. Poisson-samples the pool: each example independently with probability ``q``;
3. embeds the sampled examples, clips each embedding to L2 norm ``C``, sums them per class and
   adds N(0, σ²C²) noise to every coordinate of every class sum.

One example lies in exactly one class, and its embedding is a function of that example alone (the
ConvNet's instance norm takes statistics per image; batch norm would let one example move every
embedding of its batch, and is refused; a siamese DSA draw is data-independent and picks the
example's transformation by its own label). So adding or removing it changes one class sum by a
vector of norm at most ``C``: the concatenated class sums [u_c for every class c] have L2 sensitivity ``C``, and
step 3 is *one* Gaussian mechanism with noise multiplier σ, subsampled with rate ``q`` — the same
mechanism as one step of DP-SGD. R iterations compose adaptively (what the synthetic images do with
a release depends only on earlier releases), so the accountant is given ``(σ, q, R)``.
Everything after the release is post-processing: the noisy sum is divided by ``q·n_c`` where
``n_c`` is a *declared, public* class size (the pool's size by design, e.g. 300 per class or
FashionMNIST's 6000), never the count of the sampled batch — that count is computed from the
private data and would need its own share of the budget. The synthetic images start from Gaussian
noise, never from real images.

**Accounting** uses Opacus: the PRV accountant (the default; it returns the upper end of a
numerical error interval of width 0.01 around the true ε) or RDP (an upper bound, looser).
**DP-SGD** (:func:`dpsgd_train_models`) trains the same ConvNet with Opacus's per-example gradients,
clipping and noise as the baseline; it, too, samples at a declared rate and divides its noisy gradient
sum by a public constant (the rate times a declared set size). In both, the mechanism's coins (Poisson
samples, noise) come from a generator of their own, seeded apart from the public network seeds.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .augment import apply_transforms, parse_strategy, sample_transforms
from .condense import SyntheticSet, _net_seeds
from .config import gpu_paths, progress
from .nets import make_net

ACCOUNTANTS = ("prv", "rdp")


# --- the Gaussian mechanism --------------------------------------------------------------------------

def clip_rows(v: torch.Tensor, clip: float) -> torch.Tensor:
    """Scale each row of ``v`` [n, d] down to L2 norm at most ``clip``; shorter rows are unchanged."""
    norm = v.norm(dim=1, keepdim=True)
    return v * (clip / norm.clamp_min(1e-12)).clamp(max=1.0)


def class_sums(v: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class sums of the rows of ``v`` [n, d]: [num_classes, d] (a matmul: deterministic, no sync)."""
    onehot = (labels.unsqueeze(1) == torch.arange(num_classes, device=labels.device)).to(v.dtype)
    return onehot.T @ v


def noisy_class_sums(emb: torch.Tensor, labels: torch.Tensor, num_classes: int, *, clip: float,
                     noise_multiplier: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The mechanism: clip each embedding to norm ``clip``, sum per class, add N(0, (σ·clip)²) per coordinate.

    Adding or removing one row changes one class sum by at most ``clip`` in L2 norm, so the release
    [num_classes, d] is a Gaussian mechanism with noise multiplier σ = ``noise_multiplier``.
    """
    sums = class_sums(clip_rows(emb, clip), labels, num_classes)
    if noise_multiplier == 0:
        return sums
    noise = torch.randn(sums.shape, generator=generator, device=sums.device, dtype=sums.dtype)
    return sums + noise * (noise_multiplier * clip)


# --- accounting (Opacus) -------------------------------------------------------------------------------

def _check_accounting(sample_rate, steps, delta, accountant):
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant={accountant!r}: allowed values are {', '.join(ACCOUNTANTS)}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate={sample_rate}: must lie in (0, 1]")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps}: must be a whole number ≥ 1")
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1), typically below 1/(pool size)")


@contextlib.contextmanager
def _quiet(accountant: str):
    """Silence Opacus's harmless numerical chatter: PRV takes log(1 − q) (−∞ at q = 1) and bounds its
    domain with RDP, whose "largest alpha" warning is not about the PRV result; a σ search probes
    values it then discards. With ``accountant="rdp"`` the warning is kept: it says the bound is loose."""
    with np.errstate(divide="ignore"), warnings.catch_warnings():
        if accountant != "rdp":
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        yield


@functools.lru_cache(maxsize=256)  # pure, and PRV takes ~0.1 s: many models or cells ask the same question
def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
            accountant: str = "prv") -> float:
    """ε spent by ``steps`` Poisson-subsampled Gaussian releases (rate ``sample_rate``, noise multiplier
    σ = noise std / L2 sensitivity), at ``delta``, under add/remove-one neighbours. σ = 0 gives ∞.

    ``accountant``: ``"prv"`` (Gopi et al. 2021; numerically tight) or ``"rdp"`` (Mironov 2017; an
    upper bound, looser). For one release without subsampling (q = 1, one step) and σ = 1 at
    δ = 1e-5, the exact analytic Gaussian mechanism gives ε = 4.377, PRV 4.387, RDP 4.729.
    """
    _check_accounting(sample_rate, steps, delta, accountant)
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier={noise_multiplier}: must be ≥ 0")
    if noise_multiplier == 0:
        return math.inf
    from opacus.accountants import create_accountant
    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with _quiet(accountant):
        return float(acc.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=64)  # pure, and a search takes seconds
def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                    accountant: str = "prv") -> float:
    """The noise multiplier σ that spends at most ``target_epsilon`` (within 0.01 below it) at ``delta``
    over ``steps`` releases with Poisson rate ``sample_rate`` (Opacus's ``get_noise_multiplier``)."""
    _check_accounting(sample_rate, steps, delta, accountant)
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon={target_epsilon}: must be > 0 (math.inf: no noise, no privacy)")
    if math.isinf(target_epsilon):
        return 0.0
    from opacus.accountants.utils import get_noise_multiplier
    with _quiet("search"):
        return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=int(steps), accountant=accountant))


def analytic_gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """The exact ε of *one* Gaussian release with noise multiplier σ at ``delta`` (Balle & Wang 2018,
    Theorem 8): the smallest ε with Φ(1/(2σ) − εσ) − e^ε·Φ(−1/(2σ) − εσ) ≤ δ. No subsampling, no
    composition: the yardstick the accountants are checked against (σ = 1, δ = 1e-5: ε = 4.377)."""
    from scipy.optimize import brentq
    from scipy.stats import norm
    if not noise_multiplier > 0 or not 0 < delta < 1:
        raise ValueError(f"noise_multiplier={noise_multiplier}, delta={delta}: need σ > 0 and 0 < δ < 1")
    a, b = 1 / (2 * noise_multiplier), float(noise_multiplier)
    delta_of = lambda e: norm.cdf(a - e * b) - math.exp(e) * norm.cdf(-a - e * b)
    if delta_of(0.0) <= delta:
        return 0.0
    return float(brentq(lambda e: delta_of(e) - delta, 0.0, 1.0 + a / b + 40 / b, xtol=1e-12))


# --- what an attack may achieve against an (ε, δ)-DP model ---------------------------------------------

def tpr_bound(fpr, epsilon: float, delta: float) -> np.ndarray:
    """The largest true-positive rate any membership test can have at false-positive rate ``fpr`` against
    an (ε, δ)-DP mechanism: min(e^ε·FPR + δ, 1 − e^−ε·(1 − δ − FPR), 1) (the two inequalities of DP
    applied to the test's rejection region and to its complement)."""
    f = np.clip(np.asarray(fpr, dtype=np.float64), 0.0, 1.0)
    if math.isinf(epsilon):
        return np.ones_like(f)
    return np.clip(np.minimum(np.exp(epsilon) * f + delta, 1 - np.exp(-epsilon) * (1 - delta - f)), 0.0, 1.0)


# --- DP distribution matching ------------------------------------------------------------------------

def _subseed(seed: int, stream: int) -> int:
    """Independent seeds for the separate random streams of one run (sampling, noise, …): the same
    integer given to two generators would make them draw the very same numbers."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class DPSyntheticSet(SyntheticSet):
    """A synthetic set released with (ε, δ)-DP for add/remove-one neighbours of the real pool."""
    epsilon: float = math.inf
    delta: float = 0.0


def noise_init(num_classes: int, ipc: int, shape: Sequence[int], *, generator: torch.Generator,
               device=None) -> torch.Tensor:
    """Standard normal images [num_classes·ipc, *shape], sorted by class: the data-independent start."""
    return torch.randn((num_classes * ipc, *shape), generator=generator, device=device)


def poisson_sample(n: int, rate: float, *, generator: torch.Generator, device=None) -> torch.Tensor:
    """Poisson sampling: the positions of the examples, of ``n``, that each come in independently with
    probability ``rate`` (drawn on the host, from ``generator``, then copied to ``device``)."""
    idx = (torch.rand(n, generator=generator) < rate).nonzero().flatten()  # on the host: no sync
    if gpu_paths(device):  # an asynchronous copy from pinned memory (pinning needs CUDA; forced on a CPU: none)
        idx = (idx.pin_memory() if torch.cuda.is_available() else idx).to(device, non_blocking=True)
    return idx


def dp_dm_step(net: torch.nn.Module, xr: torch.Tensor, yr: torch.Tensor, xs: torch.Tensor,
               opt: torch.optim.Optimizer, *, num_classes: int, ipc: int, clip: float, noise_multiplier: float,
               denom: torch.Tensor, generator: torch.Generator | None = None, audit=None) -> torch.Tensor:
    """One DP-DM iteration after its draws: release the noisy clipped class sums of the sampled real
    examples ``xr``/``yr`` (the Gaussian mechanism, the only read of private data), divide them by the
    public ``denom`` = q·n_c [num_classes, 1], and take one step of ``opt`` that moves the mean clipped
    embedding of each class's ``ipc`` synthetic images ``xs`` (sorted by class) towards them. Returns the loss.
    ``audit`` (:class:`dcprivacy.audit.EmbeddingCanaries`): its canaries that the step samples join the
    sampled embeddings, and it observes the release."""
    with torch.no_grad():  # the mechanism
        emb, labels = net.embed(xr), yr
        if audit is not None:  # an audit's canary records, Poisson-sampled like the real ones
            emb, labels = (torch.cat(pair) for pair in zip((emb, labels), audit.sample()))
        release = noisy_class_sums(emb, labels, num_classes, clip=clip, noise_multiplier=noise_multiplier,
                                   generator=generator)
        if audit is not None:
            audit.observe(release)
        target = release / denom  # post-processing from here on
    mean_syn = clip_rows(net.embed(xs), clip).view(num_classes, ipc, -1).mean(1)
    loss = ((mean_syn - target) ** 2).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def dp_distribution_matching(real_x: torch.Tensor, real_y: torch.Tensor, *, ipc: int, num_classes: int,
                             class_size, target_epsilon: float | None = None, noise_multiplier: float | None = None,
                             delta: float = 1e-5, sample_rate: float = 0.05, iterations: int = 200,
                             clip: float = 1.0, lr_img: float = 1000.0, momentum: float = 0.5,
                             augment: str | None = None, arch: str = "convnet", width: int = 16,
                             depth: int = 3, accountant: str = "prv", seed: int = 0,
                             secret_seed: int | None = None, device=None, desc: str = "DP-DM",
                             audit=None) -> DPSyntheticSet:
    """Condense ``real_x``/``real_y`` into ``ipc`` images per class with (ε, δ)-DP (see the module docstring).

    ``num_classes`` and ``class_size`` are public facts about the pool, declared by the caller and
    never read from the labels. ``class_size``: the number of examples per class (an int, or one
    per class); the noisy class sums are divided by ``sample_rate · class_size``, a constant that
    does not look at the data. Give exactly one of ``target_epsilon`` (σ is calibrated with
    ``accountant``) and ``noise_multiplier`` (σ; 0 means no noise and ε = ∞). Each iteration matches
    the mean clipped embedding of each class's synthetic images to the noisy mean of its sampled
    real ones, by one SGD step (lr ``lr_img``, ``momentum``) on the images; the lr is ~1000× DM's
    because embeddings clipped to norm ``clip`` = 1 make the loss tiny (300–3000 all worked on
    FashionMNIST at ε = 1 … ∞, width 16). ``augment``: an optional DSA strategy, one siamese draw
    per class (data-independent, so free of privacy cost; it did not help here). The released ε is that of the accountant for (σ, ``sample_rate``, ``iterations``) at ``delta``.

    Randomness: ``seed`` draws what is public — the random networks, the noise init, the augmentation;
    ``secret_seed`` the mechanism's coins — the Poisson samples and the Gaussian noise — from a
    generator of their own. Default: derived from ``seed`` (reproducible, hence not secret: pass
    ``secrets.randbits(62)`` for a real release).

    ``audit``: an :class:`dcprivacy.audit.EmbeddingCanaries` whose included canaries are part of the
    private data (Poisson-sampled at the same rate, from its own secret generator) and which sees every
    release; ``None`` (default) for a release.
    """
    from . import checks
    checks.images(real_x, "real_x")
    checks.labels(real_y, "real_y", rows=real_x.shape[0])
    if num_classes < 1 or not bool(((real_y >= 0) & (real_y < num_classes)).all()):
        raise ValueError(f"num_classes={num_classes}: every label must lie in 0 … num_classes − 1")
    if ipc < 1 or iterations < 1:
        raise ValueError(f"ipc={ipc}, iterations={iterations}: both must be ≥ 1")
    if not clip > 0:
        raise ValueError(f"clip={clip}: must be > 0")
    if (target_epsilon is None) == (noise_multiplier is None):
        raise ValueError("give exactly one of target_epsilon (σ is then calibrated) and noise_multiplier")
    sizes = torch.as_tensor(class_size, dtype=torch.float32).flatten()
    if sizes.numel() == 1:
        sizes = sizes.expand(num_classes)
    if sizes.numel() != num_classes or not bool((sizes > 0).all()):
        raise ValueError(f"class_size={class_size!r}: give one positive public size, or one per class "
                         f"({num_classes}); e.g. the pool's per-class size by design")
    parse_strategy(augment)
    n, shape = real_x.shape[0], tuple(real_x.shape[1:])
    net_kw = dict(channels=shape[0], num_classes=num_classes, im_size=shape[-1], width=width)
    if arch == "convnet":
        net_kw["depth"] = depth
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in make_net(arch, **net_kw).modules()):
        raise ValueError(f"arch={arch!r} has batch normalisation: one example would move every embedding of "
                         f"its batch and the sensitivity would no longer be {clip}; use a per-example norm")
    sigma = calibrate_noise(target_epsilon, delta, sample_rate, iterations, accountant) \
        if target_epsilon is not None else float(noise_multiplier)
    eps = epsilon(sigma, sample_rate, iterations, delta, accountant)  # validates σ, q, δ, the accountant

    device = torch.device(device) if device is not None else real_x.device
    real_x, real_y = real_x.to(device), real_y.to(device)
    secret = _subseed(seed, 2) if secret_seed is None else int(secret_seed)
    gen = torch.Generator(device=device).manual_seed(_subseed(seed, 0))  # public: init, augmentation
    cpu_gen = torch.Generator().manual_seed(_subseed(seed, 1))  # public: network seeds
    noise_gen = torch.Generator(device=device).manual_seed(_subseed(secret, 0))  # secret: the Gaussian noise
    sample_gen = torch.Generator().manual_seed(_subseed(secret, 1))  # secret: the Poisson samples
    syn = noise_init(num_classes, ipc, shape, generator=gen, device=device).requires_grad_(True)
    syn_y = torch.arange(num_classes, device=device).repeat_interleave(ipc)
    denom = (sample_rate * sizes).to(device).unsqueeze(1)  # public: post-processing
    opt = torch.optim.SGD([syn], lr=lr_img, momentum=momentum)
    net_seeds = _net_seeds(cpu_gen, iterations)
    losses = torch.zeros(iterations, device=device)
    started = time.time()
    # the iterations: a public network, a secret Poisson sample, one mechanism and one step each
    for it in progress(range(iterations), desc=desc, unit="it"):
        net = make_net(arch, seed=net_seeds[it], **net_kw).to(device).requires_grad_(False)
        idx = poisson_sample(n, sample_rate, generator=sample_gen, device=device)
        xr, yr, xs = real_x[idx], real_y[idx], syn
        if augment:  # one siamese draw per class, from the public generator
            t = sample_transforms(num_classes, augment, shape[-2:], generator=gen, device=device, share=num_classes)
            xr, xs = apply_transforms(xr, t, yr), apply_transforms(xs, t, syn_y)
        losses[it] = dp_dm_step(net, xr, yr, xs, opt, num_classes=num_classes, ipc=ipc, clip=clip,
                                noise_multiplier=sigma, denom=denom, generator=noise_gen, audit=audit)
    # the release: the images, and what produced them
    config = dict(method="dp-dm", ipc=ipc, init="noise", iterations=iterations, lr_img=lr_img, momentum=momentum,
                  augment=augment, arch=arch, width=width, depth=depth, seed=seed,
                  noise_multiplier=sigma, sample_rate=sample_rate, clip=clip, class_size=sizes.tolist(),
                  delta=delta, accountant=accountant, target_epsilon=target_epsilon)
    return DPSyntheticSet(syn.detach().cpu(), syn_y.cpu(), torch.empty(0, dtype=torch.long), "dp-dm", config,
                          {"loss": losses.cpu(), "seconds": time.time() - started}, epsilon=eps, delta=delta)


# --- DP-SGD (Opacus) ---------------------------------------------------------------------------------

@dataclass
class DPSGDResult:
    """Models trained with DP-SGD; ``models`` is what :func:`dcprivacy.train.predict` takes."""
    models: "object"  # dcprivacy.train.Ensemble of plain modules (parameter names as a ConvNet's)
    epsilon: float  # spent by each model, at ``delta``, from the engine's accountant
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    accuracy: torch.Tensor | None = None  # [models] on the test set, when one was given
    config: dict | None = None


@contextlib.contextmanager
def _opacus_quiet():
    """Silence what Opacus says about choices made on purpose: secure_mode is off (runs are reproducible
    by seed), and the inputs of the per-example-gradient hooks need no gradient."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


def dpsgd_train_one(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, noise_multiplier: float,
                    sample_rate: float, epochs: int, clip: float, expected_batch: float, lr: float, momentum: float,
                    accountant: str, secret_seed: int, on_epoch: Callable[[], object] | None = None, audit=None):
    """Train ``net`` on ``x``/``y`` with DP-SGD, on the device of ``x``: ⌊1/q⌋ Poisson-sampled batches an epoch
    (q = ``sample_rate``); each step clips every example's gradient to norm ``clip``, sums them, adds
    N(0, σ²·clip²) and divides by the public ``expected_batch``. Returns the plain trained module and the
    accountant's history (σ, q, steps). ``audit`` (:class:`dcprivacy.audit.GradientCanaries`): its sampled
    canaries' gradients join every step's per-example gradients, and it observes every noisy step."""
    from opacus import GradSampleModule
    from opacus.accountants import create_accountant
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer
    loader = DPDataLoader(torch.utils.data.TensorDataset(x, y), sample_rate=sample_rate,
                          generator=torch.Generator().manual_seed(_subseed(secret_seed, 0)))  # the secret samples
    accountant_ = create_accountant(mechanism=accountant)
    with _opacus_quiet():
        model = GradSampleModule(net, loss_reduction="sum")  # per-example gradients of the summed loss
        noise_gen = torch.Generator(device=x.device).manual_seed(_subseed(secret_seed, 1))  # the secret noise
        opt = DPOptimizer(torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum), generator=noise_gen,
                          noise_multiplier=noise_multiplier, max_grad_norm=clip,
                          expected_batch_size=expected_batch, loss_reduction="mean")
        opt.attach_step_hook(accountant_.get_optimizer_hook_fn(sample_rate=sample_rate))
        model.train()
        for _ in range(epochs):
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), yb, reduction="sum").backward()
                if audit is not None:  # an audit's canary records, Poisson-sampled like the real ones
                    audit.insert(opt.params)
                opt.step()  # clip each example's gradient, sum, add the noise, divide by expected_batch, step
                if audit is not None:
                    audit.observe(opt.params, expected_batch)
            if on_epoch is not None:
                on_epoch()
    (hist,) = accountant_.history  # [(σ, q, steps)]: one kind of step, merged by Opacus
    return model.to_standard_module().eval(), hist  # the plain network, hooks and grad samples removed


def dpsgd_train_models(factory: Callable[[int], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, *,
                       seeds: Sequence[int], target_epsilon: float, delta: float = 1e-5,
                       members: torch.Tensor | None = None, dataset_size: float | None = None, epochs: int = 5,
                       sample_rate: float = 0.05, clip: float = 1.0, lr: float = 0.25, momentum: float = 0.9,
                       accountant: str = "prv", test: tuple[torch.Tensor, torch.Tensor] | None = None,
                       secret_seeds: Sequence[int] | None = None, device=None, desc: str = "DP-SGD",
                       audit=None) -> DPSGDResult:
    """Train ``len(seeds)`` models with DP-SGD (Opacus, Poisson sampling), one after another; model ``i``
    starts from ``factory(seeds[i])`` and trains on the rows of ``x`` where ``members[i]`` is True (all
    rows without ``members``). Each model is (ε, δ)-DP for add/remove-one neighbours of its own set.

    Nothing that shapes the mechanism is read from the private set: each step Poisson-samples every
    example with the given rate q = ``sample_rate``, for ⌊1/q⌋ steps an epoch; the clipped (``clip``)
    per-example gradients are summed, noised and divided by q·``dataset_size``, the expected batch of
    a *declared, public* set size — as DP-DM divides by declared class sizes. ``dataset_size``
    defaults to ``len(x)`` when ``members`` is None (the pool is the private set, its size fixed by
    design) and must be given with ``members``. σ is calibrated once so that ``epochs`` epochs spend
    at most ``target_epsilon`` at ``delta``; ``epsilon`` in the result is what the accountant records
    for (σ, q, steps), checked against the steps taken. Randomness: ``seeds`` are public (the initial
    networks); the Poisson samples and the noise come from ``secret_seeds`` (default: derived from
    ``seeds``, reproducible and so not secret — pass ``secrets.randbits(62)`` values for a real
    release). Plain SGD with momentum; no augmentation. Opacus provides the per-example gradients
    (``GradSampleModule``), the clipping and noise (``DPOptimizer``) and the Poisson loader. ``audit``: an
    :class:`dcprivacy.audit.GradientCanaries` whose included canaries join the private set of the one model
    trained (one seed).
    """
    from opacus.validators import ModuleValidator
    from .train import Ensemble, accuracy

    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant={accountant!r}: allowed values are {', '.join(ACCOUNTANTS)}")
    if not target_epsilon > 0 or not 0 < delta < 1:
        raise ValueError(f"target_epsilon={target_epsilon}, delta={delta}: need ε > 0 and 0 < δ < 1")
    if len(seeds) < 1 or epochs < 1:
        raise ValueError(f"seeds ({len(seeds)} given) and epochs={epochs}: both must be ≥ 1")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate={sample_rate}: must lie in (0, 1]")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    if members is not None and tuple(members.shape) != (len(seeds), x.shape[0]):
        raise ValueError(f"members has shape {tuple(members.shape)}, expected ({len(seeds)}, {x.shape[0]})")
    if dataset_size is None:
        if members is not None:
            raise ValueError("dataset_size: declare the public size of each private set (e.g. half the pool for "
                             "LiRA masks); counting members would read the private data")
        dataset_size = x.shape[0]
    if not dataset_size > 0:
        raise ValueError(f"dataset_size={dataset_size}: must be > 0")
    if audit is not None and len(seeds) != 1:
        raise ValueError(f"audit: canaries audit one run, one model; got {len(seeds)} seeds")
    if secret_seeds is not None and len(secret_seeds) != len(seeds):
        raise ValueError(f"secret_seeds: give one per model ({len(seeds)}), or none")
    errors = ModuleValidator.validate(factory(int(seeds[0])), strict=False)
    if errors:
        raise ValueError(f"the network cannot be trained with DP-SGD: {errors}")
    device = torch.device(device) if device is not None else x.device
    per_epoch = int(1 / sample_rate)  # Opacus's Poisson loader: ⌊1/q⌋ batches an epoch
    steps = epochs * per_epoch
    sigma = calibrate_noise(target_epsilon, delta, sample_rate, steps, accountant)
    expected_batch = sample_rate * float(dataset_size)  # public: the loss normalisation
    nets, eps = [], []
    bar = progress(total=len(seeds) * epochs, desc=desc, unit="epoch")
    for i, seed in enumerate(seeds):
        secret = _subseed(seed, 2) if secret_seeds is None else int(secret_seeds[i])
        keep = slice(None) if members is None else members[i].to(x.device)
        net, hist = dpsgd_train_one(factory(int(seed)).to(device), x[keep].to(device), y[keep].to(device),
                                    noise_multiplier=sigma, sample_rate=sample_rate, epochs=epochs, clip=clip,
                                    expected_batch=expected_batch, lr=lr, momentum=momentum, accountant=accountant,
                                    secret_seed=secret, on_epoch=lambda: bar.update(1), audit=audit)
        if hist != (sigma, sample_rate, steps):
            raise RuntimeError(f"Opacus recorded {hist}, expected {(sigma, sample_rate, steps)}")
        eps.append(epsilon(*hist, delta, accountant))  # = the accountant's ε, cached
        nets.append(net)
    bar.close()
    ens = Ensemble.stack(nets)
    acc = accuracy(ens, test[0].to(device), test[1].to(device)).cpu() if test is not None else None
    config = dict(target_epsilon=target_epsilon, delta=delta, epochs=epochs, sample_rate=sample_rate, clip=clip,
                  lr=lr, momentum=momentum, accountant=accountant, seeds=list(map(int, seeds)),
                  dataset_size=float(dataset_size))
    return DPSGDResult(ens, max(eps), delta, sigma, sample_rate, steps, acc, config)


__all__ = ["ACCOUNTANTS", "clip_rows", "class_sums", "noisy_class_sums", "epsilon", "calibrate_noise",
           "analytic_gaussian_epsilon", "tpr_bound",
           "DPSyntheticSet", "noise_init", "poisson_sample", "dp_dm_step", "dp_distribution_matching", "DPSGDResult",
           "dpsgd_train_one", "dpsgd_train_models"]
