"""The linear-extractor analysis of distribution matching (DM): closed forms and sensitivities.

With a linear extractor ψ_θ(x) = θx, DM sees the data only through class means, so where it
converges and how far its output moves when one real sample is removed have closed forms. This
module holds the iterative algorithm, those closed forms, the leave-one-out measurements built on
them, and a model trained with noise whose parameter distribution is Gaussian (so divergences
between neighbouring datasets are exact).

Shapes: real samples ``[..., n, d]``, synthetic sets ``[..., m, d]``; leading dimensions (classes,
or many datasets at once) are carried along.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from scipy.optimize import brentq
from scipy.special import log_ndtr, ndtr


def linear_dm(real: torch.Tensor, init: torch.Tensor, iterations: int = 1000, k: int = 64,
              lr: float = 1.0, seed: int = 0, callback: Callable | None = None) -> torch.Tensor:
    """Distribution matching with a random linear extractor, drawn afresh every iteration.

    Each iteration draws θ ∈ R^{k×d} with i.i.d. N(0, 1) entries (one θ for all classes, as DM
    draws one network) and takes a gradient step on the synthetic samples for ‖θμ_T − θμ_S‖²,
    summed over the leading dimensions. ψ is linear, so the mean of the real embeddings is the
    embedding of the real mean, computed once. A sample's gradient is −(2/m)·θᵀθ(μ_T − μ_S), of
    size ~(k + d)/m, so the step is ``lr · m / (2(k + d))``: ``lr`` is dimensionless, converges
    below 2(k + d)/(k + d + 1) ≈ 2 and is fastest near 1. Returns the synthetic set, shaped like
    ``init``; ``callback(t, syn)`` sees it after iteration t.
    """
    if real.shape[-1] != init.shape[-1] or real.shape[:-2] != init.shape[:-2]:
        raise ValueError(f"real {tuple(real.shape)} and init {tuple(init.shape)}: leading and last "
                         f"dimensions must agree ([..., n, d] and [..., m, d])")
    m, d = init.shape[-2:]
    if iterations < 0 or k < 1 or not 0 < lr < 2 * (k + d) / (k + d + 1):
        raise ValueError(f"iterations={iterations}, k={k}, lr={lr}: need iterations ≥ 0, k ≥ 1 "
                         f"and 0 < lr < 2(k + d)/(k + d + 1), where the loop converges")
    g = torch.Generator(device=real.device).manual_seed(seed)
    target = real.mean(-2)
    syn = init.detach().clone().requires_grad_(True)
    step = lr * m / (2 * (k + d))
    for t in range(iterations):
        theta = torch.randn(k, d, generator=g, device=real.device, dtype=real.dtype)
        loss = ((target - syn.mean(-2)) @ theta.T).pow(2).sum()
        grad, = torch.autograd.grad(loss, syn)
        with torch.no_grad():
            syn -= step * grad
        if callback is not None:
            callback(t + 1, syn.detach())
    return syn.detach()


def linear_dm_contraction(k: int, d: int, lr: float = 1.0) -> float:
    """ρ with E‖μ_T − μ_{S^{t+1}}‖² = ρ ‖μ_T − μ_{S^t}‖²: linear_dm's mean-square rate."""
    eta = lr / (k + d)
    return 1 - 2 * eta * k + eta ** 2 * k * (k + d + 1)


def _shift_to(init: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``init`` with every sample moved by the same vector, so that its mean becomes ``mean``."""
    return init + (mean - init.mean(-2)).unsqueeze(-2)


def linear_dm_fixed_point(real: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """Where :func:`linear_dm` converges: s_j* = s_j⁰ + (μ_T − μ_{S⁰}) for every sample."""
    return _shift_to(init, real.mean(-2))


def removal_shift(real: torch.Tensor, init_idx: torch.Tensor, removed: torch.Tensor,
                  substitute: int | None = None) -> torch.Tensor:
    """S*(T) − S*(T ∖ {x_r}) for every index r in ``removed`` at once: ``[..., R, m, d]``.

    ``real`` [..., n, d] is T (per class); ``init_idx`` [m] are the samples that initialise S.
    Removing a non-initialiser leaves the initialisation as it is. An initialiser cannot
    initialise S on a set it is not in: its slot is filled by ``real[substitute]``, a
    non-initialiser. Closed form (:func:`linear_dm_fixed_point`) on the leave-one-out means:
    no copy of T is made.
    """
    n = real.shape[-2]
    init = real[..., init_idx, :]  # [..., m, d]
    mean = real.mean(-2)  # [..., d]
    loo_mean = (n * mean.unsqueeze(-2) - real[..., removed, :]) / (n - 1)  # [..., R, d]
    loo_init = init.unsqueeze(-3).expand(*init.shape[:-2], len(removed), *init.shape[-2:])
    hit = (removed[:, None] == init_idx[None, :]).unsqueeze(-1)  # [R, m, 1]: x_r initialised j
    if hit.any():
        if substitute is None or bool((init_idx == substitute).any()):
            raise ValueError("removed holds initialisers: pass substitute=, the index of a sample "
                             "that does not initialise S, to take their slot in the initialisation")
        z = real[..., substitute, :][..., None, None, :]
        loo_init = torch.where(hit.to(real.device), z, loo_init)
    return _shift_to(init, mean).unsqueeze(-3) - _shift_to(loo_init, loo_mean)


def gibbs_posterior(syn: torch.Tensor, beta: float = 1.0,
                    tau: float = 10.0) -> tuple[torch.Tensor, float]:
    """A prototype w ∈ R^d trained with noise on the synthetic samples of its class.

    p(w | S) ∝ N(w; 0, τ²I) · exp(−β Σ_j ‖w − s_j‖² / 2) is Gaussian, with precision
    λ = 1/τ² + βm and mean β Σ_j s_j / λ. ``syn`` [..., m, d] → (mean [..., d], variance 1/λ,
    the same in every direction).
    """
    precision = 1 / tau ** 2 + beta * syn.shape[-2]
    return beta * syn.sum(-2) / precision, 1 / precision


def langevin(syn: torch.Tensor, beta: float = 1.0, tau: float = 10.0, steps: int = 300,
             step_size: float | None = None, chains: int = 64, seed: int = 0) -> torch.Tensor:
    """Train the prototype of :func:`gibbs_posterior` by noisy gradient descent (Langevin dynamics).

    w ← w − h ∇U(w) + √(2h) ξ with U(w) = β Σ_j ‖w − s_j‖²/2 + ‖w‖²/(2τ²), from w = 0, for
    ``chains`` independent runs; returns their final w, ``[chains, ..., d]``. The law of w tends
    to the Gibbs posterior, its variance inflated by the step's known bias 1/(1 − hλ/2)
    (λ: the posterior precision). ``step_size`` h defaults to 0.05/λ.
    """
    g = torch.Generator(device=syn.device).manual_seed(seed)
    m = syn.shape[-2]
    precision = 1 / tau ** 2 + beta * m
    h = 0.05 / precision if step_size is None else step_size
    total = syn.sum(-2)
    w = torch.zeros(chains, *total.shape, device=syn.device, dtype=syn.dtype)
    for _ in range(steps):
        grad = precision * w - beta * total  # ∇U(w)
        noise = torch.randn(w.shape, generator=g, device=w.device, dtype=w.dtype)
        w = w - h * grad + math.sqrt(2 * h) * noise
    return w


def gaussian_kl(mean_p: torch.Tensor, var_p: float, mean_q: torch.Tensor,
                var_q: float) -> torch.Tensor:
    """KL(N(mean_p, var_p·I) ‖ N(mean_q, var_q·I)), over the last dimension."""
    d, r = mean_p.shape[-1], var_p / var_q
    return 0.5 * ((mean_p - mean_q).pow(2).sum(-1) / var_q + d * (r - 1 - math.log(r)))


def gaussian_delta(inv_sigma: float, eps: float) -> float:
    """δ(ε) between N(0, 1) and N(1/σ, 1), 1/σ = ``inv_sigma``: the exact privacy profile of a Gaussian
    mechanism with noise multiplier σ (sensitivity 1/σ noise standard deviations — Gaussian DP's μ, which
    the book writes 1/σ; Balle & Wang 2018): Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ)."""
    if inv_sigma <= 0:
        return 0.0
    a, b = inv_sigma / 2, eps / inv_sigma
    return float(ndtr(a - b) - math.exp(eps + log_ndtr(-a - b)))


def gaussian_epsilon(inv_sigma: float, delta: float) -> float:
    """The smallest ε with :func:`gaussian_delta` (1/σ, ε) ≤ δ."""
    if gaussian_delta(inv_sigma, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gaussian_delta(inv_sigma, hi) > delta:
        hi *= 2
    return brentq(lambda e: gaussian_delta(inv_sigma, e) - delta, 0.0, hi, xtol=1e-10)


def sensitivity_grid(real: torch.Tensor, n_grid: Sequence[int], m_grid: Sequence[int],
                     removals: int = 20, beta: float = 1.0, tau: float = 10.0,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """How far one real sample moves linear DM's output, and the model trained on it, over n and m.

    ``real`` [classes, N, d]: the samples of every class, each in random order. T_n is the first n samples
    of each class and S is initialised from its first m. The same ``removals`` random
    non-initialisers x' (drawn from the smallest T_n) are removed at every (n, m), so along each
    axis only n or m changes. Returns ‖S*(T) − S*(T ∖ {x'})‖ and the KL between the
    :func:`gibbs_posterior` trained on the two sets, each ``[len(n_grid), len(m_grid), classes, removals]``.
    """
    n_min, m_max = min(n_grid), max(m_grid)
    if m_max + removals > n_min or max(n_grid) > real.shape[-2]:
        raise ValueError(f"n_grid={tuple(n_grid)}, m_grid={tuple(m_grid)}, removals={removals}: need "
                         f"max(m) + removals ≤ min(n) and max(n) ≤ {real.shape[-2]} samples per class")
    g = torch.Generator().manual_seed(seed)
    removed = m_max + torch.randperm(n_min - m_max, generator=g)[:removals]
    shape = (len(n_grid), len(m_grid), real.shape[0], removals)
    sens, kl = torch.empty(shape, dtype=real.dtype), torch.empty(shape, dtype=real.dtype)
    for i, n in enumerate(n_grid):
        for j, m in enumerate(m_grid):
            before = linear_dm_fixed_point(real[:, :n], real[:, :m]).unsqueeze(1)  # [classes, 1, m, d]
            shift = removal_shift(real[:, :n], torch.arange(m), removed)  # [classes, R, m, d]
            sens[i, j] = shift.flatten(-2).norm(dim=-1).cpu()
            p = gibbs_posterior(before, beta, tau)
            q = gibbs_posterior(before - shift, beta, tau)
            kl[i, j] = gaussian_kl(*p, *q).cpu()
    return sens, kl
