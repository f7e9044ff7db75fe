import math

import numpy as np
import pytest
import torch

from dcprivacy import theory
from dcprivacy.config import PROFILES
from dcprivacy.plots import fit_loglog


def _data(classes=3, n=40, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(classes, n, d, generator=g, dtype=torch.float64) + 3 * torch.rand(classes, 1, d, generator=g,
                                                                                          dtype=torch.float64)


def test_linear_dm_converges_to_the_closed_form():
    real = _data()
    init = real[:, :5]
    syn = theory.linear_dm(real, init, iterations=800, k=4, lr=1.0, seed=0)
    star = theory.linear_dm_fixed_point(real, init)
    assert (syn - star).norm() < 1e-8 * (init - star).norm()
    moved = syn - init  # every synthetic sample moved by the same vector
    assert torch.allclose(moved, moved[:, :1].expand_as(moved), atol=1e-12)
    assert torch.allclose(star.mean(1), real.mean(1), atol=1e-12)


def test_linear_dm_is_deterministic_and_keeps_shapes():
    real = _data(classes=2, n=30, d=8)
    a = theory.linear_dm(real, real[:, :3], iterations=5, k=3, seed=1)
    b = theory.linear_dm(real, real[:, :3], iterations=5, k=3, seed=1)
    c = theory.linear_dm(real, real[:, :3], iterations=5, k=3, seed=2)
    assert a.shape == (2, 3, 8) and torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="lr"):
        theory.linear_dm(real, real[:, :3], lr=2.5)
    with pytest.raises(ValueError, match="dimensions"):
        theory.linear_dm(real, real[0, :3])


def test_theta_moments_and_contraction_rate():
    k, d, draws = 4, 6, 20000
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(draws, k, d, generator=g, dtype=torch.float64)
    a = theta.transpose(1, 2) @ theta
    assert torch.allclose(a.mean(0), k * torch.eye(d, dtype=torch.float64), atol=0.1)
    assert torch.allclose((a @ a).mean(0), k * (k + d + 1) * torch.eye(d, dtype=torch.float64), atol=1.5)
    # one step of linear_dm, averaged over many extractors, contracts ‖μ_T − μ_S‖² by ρ
    real = _data(classes=1, n=20, d=d)
    init = real[:, :2] + 1.0
    e0 = (real.mean(1) - init.mean(1)).pow(2).sum()
    ratios = [(real.mean(1) - theory.linear_dm(real, init, 1, k, 1.0, s).mean(1)).pow(2).sum() / e0
              for s in range(2000)]
    rho = theory.linear_dm_contraction(k, d, 1.0)
    assert abs(float(torch.stack(ratios).mean()) - rho) < 0.05 * rho


def test_removing_a_non_initialiser_moves_every_sample_by_the_same_vector():
    real = _data()
    n, m = real.shape[1], 4
    removed = torch.arange(m, n)
    shift = theory.removal_shift(real, torch.arange(m), removed)
    assert shift.shape == (3, n - m, m, real.shape[-1])
    x = real[:, removed]  # [classes, removed, d]
    loo_mean = (real.sum(1, keepdim=True) - x) / (n - 1)
    expected = ((x - loo_mean) / n).unsqueeze(2).expand_as(shift)
    assert torch.allclose(shift, expected, atol=1e-12)
    norms = shift.flatten(-2).norm(dim=-1)
    assert torch.allclose(norms, math.sqrt(m) * (x - loo_mean).norm(dim=-1) / n, atol=1e-12)


def test_removal_shift_matches_the_iterative_loop():
    real = _data(classes=2, n=25, d=10)
    n, m, sub = real.shape[1], 3, 7
    init_idx = torch.arange(m)
    removed = torch.tensor([1, 5, 9])  # an initialiser and two others
    shift = theory.removal_shift(real, init_idx, removed, substitute=sub)
    kw = dict(iterations=800, k=4, lr=1.0, seed=3)
    before = theory.linear_dm(real, real[:, init_idx], **kw)
    for i, r in enumerate(removed.tolist()):
        keep = [j for j in range(n) if j != r]
        init_after = [sub if j == r else j for j in init_idx.tolist()]
        after = theory.linear_dm(real[:, keep], real[:, init_after], **kw)
        assert torch.allclose(before - after, shift[:, i], atol=1e-8)


def test_removing_an_initialiser_moves_the_set_by_order_one():
    real = _data(classes=1, n=30, d=5)[0]
    n, m, sub, r = real.shape[0], 4, 10, 2
    shift = theory.removal_shift(real, torch.arange(m), torch.tensor([r]), substitute=sub)[0]
    x, z = real[r], real[sub]
    loo_mean = (real.sum(0) - x) / (n - 1)
    common = (x - loo_mean) / n - (x - z) / m
    expected = common.expand(m, -1).clone()
    expected[r] += x - z
    assert torch.allclose(shift, expected, atol=1e-12)
    with pytest.raises(ValueError, match="substitute"):
        theory.removal_shift(real, torch.arange(m), torch.tensor([r]))
    with pytest.raises(ValueError, match="substitute"):
        theory.removal_shift(real, torch.arange(m), torch.tensor([r]), substitute=1)


def test_gibbs_posterior_completes_the_square():
    syn = _data(classes=2, n=6, d=4)
    beta, tau = 0.7, 3.0
    mean, var = theory.gibbs_posterior(syn, beta, tau)
    # the gradient of the energy vanishes at the mean, and its Hessian is the precision
    grad = beta * (syn.shape[1] * mean - syn.sum(1)) + mean / tau ** 2
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-12)
    assert math.isclose(1 / var, beta * syn.shape[1] + 1 / tau ** 2)


def test_gaussian_kl_against_monte_carlo():
    g = torch.Generator().manual_seed(0)
    d, draws = 5, 400000
    mp, mq = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    vp, vq = 0.5, 0.8
    w = mp + math.sqrt(vp) * torch.randn(draws, d, generator=g, dtype=torch.float64)
    log_p = -0.5 * (w - mp).pow(2).sum(1) / vp - 0.5 * d * math.log(vp)
    log_q = -0.5 * (w - mq).pow(2).sum(1) / vq - 0.5 * d * math.log(vq)
    mc = (log_p - log_q).mean()
    exact = theory.gaussian_kl(mp, vp, mq, vq)
    assert abs(float(mc - exact)) < 4 * float((log_p - log_q).std()) / math.sqrt(draws)
    assert float(theory.gaussian_kl(mp, vp, mp, vp)) == 0.0


def test_langevin_samples_the_gibbs_posterior():
    syn = _data(classes=2, n=5, d=40)
    beta, tau, h_lambda = 1.0, 10.0, 0.05
    mean, var = theory.gibbs_posterior(syn, beta, tau)
    w = theory.langevin(syn, beta, tau, steps=400, chains=300, seed=0)  # small: one thread suffices
    assert w.shape == (300, 2, 40)
    sample_var = w.var(0).mean()
    assert abs(float(sample_var) / (var / (1 - h_lambda / 2)) - 1) < 0.03
    chi2 = (w.mean(0) - mean).pow(2).sum() / (var / (1 - h_lambda / 2) / 300)  # ~ χ², 80 degrees of freedom
    assert 40 < float(chi2) < 130


def test_gaussian_epsilon_matches_known_values():
    # one Gaussian release with noise multiplier σ: μ = 1/σ; exact values from the literature
    assert abs(theory.gaussian_epsilon(1.0, 1e-5) - 4.377) < 0.01
    assert abs(theory.gaussian_epsilon(0.2, 1e-5) - 0.7255) < 0.005
    assert theory.gaussian_epsilon(1e-9, 1e-5) == 0.0
    eps = theory.gaussian_epsilon(0.5, 1e-5)
    assert abs(theory.gaussian_delta(0.5, eps) - 1e-5) < 1e-9


def test_sensitivity_grid_has_the_predicted_exponents():
    real = _data(classes=2, n=400, d=16).float()
    n_grid, m_grid = (50, 100, 200, 400), (1, 2, 4, 8)
    sens, kl = theory.sensitivity_grid(real, n_grid, m_grid, removals=5, beta=1.0, tau=10.0)
    assert sens.shape == kl.shape == (4, 4, 2, 5)
    s, k = sens.mean((2, 3)).numpy(), kl.mean((2, 3)).numpy()
    assert abs(fit_loglog(n_grid, s[:, 0])[0] + 1) < 0.05
    assert abs(fit_loglog(m_grid, s[0])[0] - 0.5) < 0.01
    assert abs(fit_loglog(n_grid, k[:, 0])[0] + 2) < 0.1
    assert abs(fit_loglog(m_grid, k[0])[0] - 1) < 0.05
    with pytest.raises(ValueError, match="removals"):
        theory.sensitivity_grid(real, (10,), (8,), removals=5)


@pytest.mark.parametrize("name", list(PROFILES))
def test_theory_profiles_are_consistent(name):
    t = PROFILES[name].theory
    assert max(t.m_grid) + t.removals <= min(t.n_grid) and max(t.n_grid) <= 6000
    assert t.ipc + t.validate <= min(t.n_grid) and 0 < t.lr < 2
