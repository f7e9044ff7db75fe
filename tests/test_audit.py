"""The one-run audit (dcprivacy.audit): the bound of Steinke, Nasr & Jagielski (2023, Theorem 7), its
validity on mechanisms whose ε is known exactly, its monotonicities, the guesses, the canaries inside
DP-DM and DP-SGD, and the ``audit-bound`` command."""
import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import binom

from dcprivacy import audit as A
from dcprivacy import dp

DELTA = 1e-5
opacus = pytest.mark.skipif(importlib.util.find_spec("opacus") is None, reason='needs Opacus: pip install -e ".[dp]"')


def theorem7(m, r, v, eps, delta):
    """The statement, term by term, with plain probabilities (slow, for small r)."""
    q = math.exp(eps) / (1 + math.exp(eps))
    tail = lambda k: binom.sf(k - 1, r, q)  # P[W ≥ k]
    beta = tail(v)
    return min(1.0, beta + 2 * m * delta * max((tail(v - i) - beta) / i for i in range(1, v + 1)))


@pytest.mark.parametrize("m, r, v, eps, delta", [
    (100, 20, 15, 0.5, 0.0), (100, 20, 15, 0.5, 1e-3), (1000, 60, 55, 2.0, 1e-5), (50, 50, 50, 3.0, 1e-4),
    (10, 3, 1, 0.1, 1e-2)])
def test_p_value_is_the_theorem(m, r, v, eps, delta):
    assert A.p_value(m, r, v, eps, delta) == pytest.approx(theorem7(m, r, v, eps, delta), rel=1e-9, abs=1e-300)


def test_p_value_stays_accurate_in_the_far_tail():
    """At ε = 0 the binomial is fair and the theorem's terms are exact fractions C(r, j) / 2^r: β for 500 of
    500 right is 2^-500 (far below double precision's smallest normal difference from 1), and the δ term's
    maximum is found over all i."""
    from fractions import Fraction
    r = 500
    pmf = [Fraction(math.comb(r, j), 2 ** r) for j in range(r + 1)]
    for v in (500, 400, 300):
        beta, between, term = sum(pmf[v:]), Fraction(0), Fraction(0)
        for i in range(1, v + 1):  # between = P[v − i ≤ W < v]
            between += pmf[v - i]
            term = max(term, between / i)
        for delta in (0.0, 1e-5):
            exact = float(beta + 2 * 1000 * Fraction(delta) * term)
            assert A.p_value(1000, r, v, 0.0, delta) == pytest.approx(exact, rel=1e-9)


def test_randomized_response_certifies_at_most_its_epsilon_in_at_most_alpha_of_runs():
    """Randomized response on each canary's bit is exactly ε-DP, and the one-run audit is tight for it:
    over 4000 runs of 500 canaries (every canary guessed by its report), the bound exceeds ε in at most
    α of them, within binomial noise."""
    eps, m, runs, alpha = 1.0, 500, 4000, 0.05
    rng = np.random.default_rng(0)
    bits = rng.random((runs, m)) < 0.5
    truthful = rng.random((runs, m)) < math.exp(eps) / (1 + math.exp(eps))
    reports = np.where(truthful, bits, ~bits)
    correct = (reports == bits).sum(1)  # every canary guessed: r = m
    for delta in (0.0, DELTA):
        bounds = np.array([A.epsilon_lower(m, m, int(v), delta, alpha) for v in correct])
        rate = (bounds > eps).mean()
        assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs), rate
    assert rate > alpha / 4  # and the test is not vacuous: it is nearly tight for randomized response


def test_with_many_canaries_the_bound_approaches_the_true_epsilon():
    eps, m = 1.0, 100_000
    rng = np.random.default_rng(1)
    bits = rng.random(m) < 0.5
    reports = np.where(rng.random(m) < math.exp(eps) / (1 + math.exp(eps)), bits, ~bits)
    res = A.audit(reports.astype(float) + 1e-9 * rng.random(m), bits, grid=[(int(reports.sum()), m - int(reports.sum()))],
                  delta=1e-6)
    assert 0.93 * eps < res.epsilon <= eps + 0.02


def test_the_gaussian_mechanism_is_never_over_certified():
    """Scores N(μ·bit, 1): each canary's bit goes through a Gaussian mechanism with σ = 1/μ, whose exact ε at
    δ is known (Balle & Wang). The top-k audit must certify more than that in at most α of the runs."""
    mu, m, runs, alpha = 2.0, 400, 400, 0.05
    exact = dp.analytic_gaussian_epsilon(1 / mu, DELTA)
    rng = np.random.default_rng(2)
    bits = rng.random((runs, m)) < 0.5
    scores = mu * bits + rng.standard_normal((runs, m))
    grid = A.guess_grid(m, ((0.1, 0.0), (0.25, 0.25)))
    bounds = np.array([A.audit(s, b, grid=grid, delta=DELTA, alpha=alpha).epsilon for s, b in zip(scores, bits)])
    assert (bounds > exact).mean() <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert bounds.mean() > 0.3  # it finds the leakage, below the exact ε


def test_monotone_in_correct_guesses_delta_and_epsilon():
    for m, r in ((200, 40), (1000, 200), (5000, 500)):
        for delta in (0.0, 1e-5, 1e-4):
            assert 2 * m * delta <= 1  # the condition under which one more right guess cannot lower the bound
            bounds = [A.epsilon_lower(m, r, v, delta) for v in range(r // 2, r + 1, max(1, r // 40))]
            assert all(b2 >= b1 for b1, b2 in zip(bounds, bounds[1:])), (m, r, delta)
        for v in (int(0.7 * r), r):
            by_delta = [A.epsilon_lower(m, r, v, d) for d in (0.0, 1e-6, 1e-5, 1e-4, 1e-3)]
            assert all(b2 <= b1 for b1, b2 in zip(by_delta, by_delta[1:])), (m, r, v)
            p = [A.p_value(m, r, v, e, 1e-5) for e in np.linspace(0, 6, 61)]
            assert all(p2 >= p1 for p1, p2 in zip(p, p[1:]))  # what the bisection relies on


def test_the_bound_is_where_the_p_value_crosses_alpha():
    e = A.epsilon_lower(1000, 100, 95, DELTA, 0.05)
    assert A.p_value(1000, 100, 95, e, DELTA) <= 0.05 < A.p_value(1000, 100, 95, e + 1e-6, DELTA)
    assert A.epsilon_lower(1000, 100, 50, DELTA) == 0.0  # chance accuracy certifies nothing
    assert A.epsilon_lower(1000, 0, 0, DELTA) == 0.0
    assert A.epsilon_lower(1000, 100, 100, DELTA, 0.01) < A.epsilon_lower(1000, 100, 100, DELTA, 0.05)


@pytest.mark.parametrize("args, match", [
    ((10, 11, 5, 0.0), "guesses=11 > canaries=10"), ((10, 5, 6, 0.0), "correct=6 > guesses=5"),
    ((10, 5, 4, 1.0), r"delta=1.0: must lie in \[0, 1\)"), ((10, 5, 4, -0.1), "delta=-0.1"),
    ((0, 0, 0, 0.0), "canaries=0"), ((10, 5.5, 4, 0.0), "guesses=5.5")])
def test_bad_counts_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        A.epsilon_lower(*args)
    with pytest.raises(ValueError, match="alpha=1.5"):
        A.epsilon_lower(10, 5, 4, 0.0, 1.5)


def test_guesses_and_the_bonferroni_grid():
    s = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])
    assert A.guesses(s, 2, 1).tolist() == [0, 1, -1, 0, 1, 0]
    assert A.guesses(np.zeros(4), 1, 1).tolist() == [-1, 0, 0, 1]  # ties: by position, blind to the bits
    assert A.guess_grid(100, ((0.1, 0.0), (0.1, 0.0), (0.25, 0.25))) == [(10, 0), (25, 25)]
    included = np.array([False, True, False, False, True, True])
    res = A.audit(s, included, grid=[(2, 1), (3, 3)], delta=0.0, alpha=0.05)
    assert res.tests == 2 and [row[:3] for row in res.rows] == [(2, 1, 3), (3, 3, 4)]
    assert res.rows[0][3] == A.epsilon_lower(6, 3, 3, 0.0, 0.025)  # each pair at α / 2
    assert res.epsilon == max(row[3] for row in res.rows)
    with pytest.raises(ValueError, match="one score per canary"):
        A.audit(s, included[:3], grid=[(1, 0)], delta=0.0)


def test_inclusions_are_public_fair_coins():
    a = A.inclusions(10000, seed=3)
    assert torch.equal(a, A.inclusions(10000, seed=3)) and not torch.equal(a, A.inclusions(10000, seed=4))
    assert abs(a.float().mean().item() - 0.5) < 0.02


def test_the_simulated_white_box_audit_catches_a_tenth_of_the_noise():
    """The idealised auditor of DP-DM's schedule (q = 0.05, 100 releases, σ calibrated for ε = 2): at the
    claimed σ it certifies less than the claimed ε; with a tenth of the noise, more."""
    sigma = dp.calibrate_noise(2.0, DELTA, 0.05, 100, "prv")
    grid = ((0.05, 0.0), (0.1, 0.0), (0.25, 0.25))
    honest = A.simulate_release_audit(1000, sigma, 0.05, 100, fractions=grid, delta=DELTA, seed=0)
    broken = A.simulate_release_audit(1000, sigma / 10, 0.05, 100, fractions=grid, delta=DELTA, seed=0)
    assert honest.epsilon <= 2.0 < broken.epsilon


@pytest.fixture(scope="module")
def small_pool(fashion):
    from dcprivacy.data import class_balanced_subset
    idx = class_balanced_subset(fashion.train_y, 10, seed=0)
    return fashion.train_x[idx], fashion.train_y[idx]


class _Kept(A.EmbeddingCanaries):
    """Keeps every release it observes (the raw noisy class sums)."""
    def observe(self, release):
        self.releases = getattr(self, "releases", []) + [release.clone()]
        super().observe(release)


def _coefficients(diff, directions):
    """Least-squares coefficients of the rows of ``diff`` [T, d] on ``directions`` [k, d]."""
    return torch.linalg.lstsq(directions.T.double(), diff.T.double()).solution.T  # [T, k]


def test_embedding_canaries_enter_dp_dm_as_clipped_poisson_sampled_records(small_pool):
    """σ = 0 and the same seeds, once with the canaries in and once with every one out: the releases differ
    exactly by the sampled included canaries' clipped embeddings (norm C, along their directions, in their
    class's block), and the samples take each included canary at the mechanism's rate."""
    x, y = small_pool
    m, rate, T = 30, 0.5, 8
    kw = dict(rate=rate, clip=1.0, seed=0, secret_seed=1)
    runs = {}
    for bits in (A.inclusions(m, seed=0), torch.zeros(m, dtype=torch.bool)):
        rec = _Kept(bits, 128, 10, **kw)
        dp.dp_distribution_matching(x, y, ipc=1, num_classes=10, class_size=10, noise_multiplier=0.0,
                                    sample_rate=rate, iterations=T, width=8, seed=0, audit=rec)
        runs[bool(bits.any())] = rec
    inc, rec = runs[True].included, runs[True]
    diff = torch.stack(runs[True].releases) - torch.stack(runs[False].releases)  # [T, classes, d]
    taken = torch.zeros(T, m)
    for c in range(10):
        mine = (rec.labels == c) & inc
        rows = rec.directions[mine] * rec.clip  # what a clipped canary adds: C along its direction
        coef = _coefficients(diff[:, c], rows) if mine.any() else torch.zeros(T, 0, dtype=torch.float64)
        assert bool(((coef - coef.round()).abs() < 1e-3).all()) and set(coef.round().flatten().tolist()) <= {0.0, 1.0}
        assert torch.allclose(diff[:, c].double(), coef.round() @ rows.double(), atol=1e-4)  # and nothing else
        taken[:, mine] = coef.round().float()
    assert taken[:, ~inc].sum() == 0
    assert abs(taken[:, inc].mean().item() - rate) < 4 * math.sqrt(rate * (1 - rate) / (T * int(inc.sum())))
    proj = torch.stack(rec.projections)
    assert proj.shape == (T, m)
    assert A.audit(rec.scores(), inc, grid=[(5, 0)], delta=DELTA).correct == 5  # no noise: the top five are in


@opacus
def test_gradient_canaries_enter_dp_sgd_as_clipped_poisson_sampled_records(small_pool):
    """The first step of DP-SGD (σ = 0; same initial model and data sample with or without canaries): the
    released gradient sums differ exactly by the sampled included canaries' clipped gradients."""
    from dcprivacy.nets import net_factory
    x, y = small_pool
    factory = net_factory("convnet", width=4)
    dim = sum(p.numel() for p in factory(0).parameters())
    m, rate = 40, 0.5

    class Kept(A.GradientCanaries):
        def observe(self, params, expected_batch):
            self.sums = getattr(self, "sums", []) + [torch.cat([p.grad.reshape(-1) for p in params]) * expected_batch]
            super().observe(params, expected_batch)

    runs = {}
    for bits in (A.inclusions(m, seed=1), torch.zeros(m, dtype=torch.bool)):
        rec = Kept(bits, dim, rate=rate, clip=1.0, seed=0, secret_seed=2)
        res = dp.dpsgd_train_models(factory, x, y, seeds=[0], target_epsilon=math.inf, epochs=1, sample_rate=rate,
                                    audit=rec)
        runs[bool(bits.any())] = rec
    rec = runs[True]
    assert torch.stack(rec.projections).shape == (2, m) and res.noise_multiplier == 0.0
    diff = (rec.sums[0] - runs[False].sums[0]).unsqueeze(0)
    coef = _coefficients(diff, rec.directions[rec.included] * rec.clip)[0]
    assert torch.allclose(coef, coef.round(), atol=1e-3) and set(coef.round().tolist()) <= {0.0, 1.0}
    assert 0 < coef.round().sum() < int(rec.included.sum())  # some sampled, not all
    with pytest.raises(ValueError, match="one model"):
        dp.dpsgd_train_models(factory, x, y, seeds=[0, 1], target_epsilon=2.0, audit=rec)


def test_mislabelled_canaries_come_from_outside_the_pool_with_a_wrong_label(fashion):
    pool = torch.arange(100)
    cx, cy, idx = A.mislabelled_canaries(fashion.train_x, fashion.train_y, 50, exclude=pool, num_classes=10, seed=0)
    assert cx.shape == (50, 1, 28, 28) and not bool(torch.isin(idx, pool).any())
    assert bool((cy != fashion.train_y[idx]).all()) and bool(((cy >= 0) & (cy < 10)).all())


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "dcprivacy", "audit-bound", *args], capture_output=True, text=True)


def test_audit_bound_command():
    out = _cli("--canaries", "1000", "--guesses", "100", "--correct", "100", "--delta", "1e-5")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["epsilon_lower"] == pytest.approx(A.epsilon_lower(1000, 100, 100, 1e-5, 0.05))
    assert (res["canaries"], res["guesses"], res["correct"], res["delta"], res["alpha"]) == (1000, 100, 100, 1e-5, 0.05)
    for args, match in ((("--canaries", "10", "--guesses", "11", "--correct", "5", "--delta", "0"), "guesses=11 > canaries=10"),
                        (("--canaries", "10", "--guesses", "5", "--correct", "6", "--delta", "0"), "correct=6 > guesses=5"),
                        (("--canaries", "10", "--guesses", "5", "--correct", "4", "--delta", "1"), "delta=1.0"),
                        (("--canaries", "10", "--guesses", "5", "--correct", "4", "--delta", "0", "--alpha", "0"), "alpha=0.0"),
                        (("--canaries", "x", "--guesses", "5", "--correct", "4", "--delta", "0"), "--canaries")):
        bad = _cli(*args)
        assert bad.returncode == 2 and match in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_the_canaries_draw_from_a_stream_of_their_own():
    """Which canaries a step takes must not be coupled to which records it takes or to its noise: the
    canaries' secret stream differs from every stream the mechanisms derive from the same secret."""
    for secret in (0, 1, 12345, 2 ** 40 + 7):
        canary = A._seed(secret, A.CANARY_STREAM)
        assert canary not in {dp._subseed(secret, k) for k in range(4)}
        a = torch.Generator().manual_seed(canary)
        b = torch.Generator().manual_seed(dp._subseed(secret, 1))
        assert not torch.equal(torch.rand(64, generator=a), torch.rand(64, generator=b))
