import numpy as np
import pytest
import torch

from dcprivacy import sensitivity as S
from dcprivacy.condense import distribution_matching
from dcprivacy.theory import removal_shift


def _class(n=60, size=8, seed=0):
    """One class of small random 'images' [n, 1, size, size]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g) + torch.rand(1, 1, size, size, generator=g)


def test_linear_extractor_reproduces_the_closed_form():
    x = _class(n=60, size=8)
    d, k, m = 64, 32, 3
    removed = [0, 10, 11]  # 0 initialises S
    r = S.removal_shifts(x, (20, 40, 60), m, removed, iterations=100, arch="linear", width=k,
                         lr_img=m / (4 * (k + d)), seed=0)
    closed = torch.stack([removal_shift(x[:n].flatten(1).double(), torch.arange(m), torch.tensor(removed),
                                        substitute=r.config["substitute"]).flatten(-2).norm(dim=-1)
                          for n in (20, 40, 60)])
    assert torch.allclose(r.set_shift[-1].double(), closed, rtol=1e-3)


def test_control_is_exact_and_first_step_is_order_one_over_n():
    x = _class(n=120, size=8)
    n_grid = (30, 60, 120)
    r = S.removal_shifts(x, n_grid, 2, [0, 5, 6, 7], iterations=(0, 1, 4), arch="mlp", width=16, depth=2, seed=1)
    assert r.shift.shape == (3, 3, 4, 2) and r.control.shape == (3, 3, 2)
    assert r.control.abs().max() == 0  # the same run twice is the same to the bit
    assert r.shift[0, :, 1:].abs().max() == 0  # iteration 0: only the initialiser's slot differs
    sub = r.config["substitute"]
    assert torch.allclose(r.shift[0, :, 0, 0], (x[0] - x[sub]).norm().expand(3))
    assert torch.all(r.shift[0, :, 0, 1] == 0)
    slopes = S.loglog_slopes(n_grid, r.set_shift[1, :, 1:].numpy())  # one step: ∝ (ψ(x') − mean ψ(T'))/n
    assert np.all(np.abs(slopes + 1) < 0.15), slopes
    assert r.images.shape == (3, 3, 2, 1, 8, 8)


def test_equal_norm_perturbation_is_the_removal_for_linear_dm():
    """Linear DM run to its fixed point moves every image by the change of the real mean: removing x_r and
    pushing x_r by ξ (‖ξ‖ = ‖x_r − mean(T ∖ {x_r})‖) move the set equally far, each along its own
    change."""
    x = _class(n=60, size=8)
    d, k, m = 64, 32, 3
    removed = [0, 10, 11]  # 0 initialises S: no perturbed run for it
    r = S.removal_shifts(x, (20, 40, 60), m, removed, perturb=True, iterations=(0, 3, 100), arch="linear", width=k,
                         lr_img=m / (4 * (k + d)), seed=0)
    assert torch.isnan(r.perturbed[:, :, 0]).all() and torch.isnan(r.perturbation_norm[:, 0]).all()
    assert r.perturbed[0, :, 1:].abs().max() == 0  # iteration 0: the initial images are not perturbed
    for g, n in enumerate((20, 40, 60)):
        loo = (x[:n].sum(0) - x[[10, 11]]) / (n - 1)
        assert torch.allclose(r.perturbation_norm[g, 1:], (x[[10, 11]] - loo).flatten(1).norm(dim=1), rtol=1e-5)
    assert torch.allclose(r.perturbed_set_shift[-1, :, 1:], r.set_shift[-1, :, 1:], rtol=1e-3)
    assert torch.allclose(r.alignment[-1, :, 1:], torch.ones(3, 2), atol=1e-3)
    assert torch.allclose(r.perturbed_alignment[-1, :, 1:], torch.ones(3, 2), atol=1e-3)
    plain = S.removal_shifts(x, (20, 40, 60), m, removed, iterations=(0, 3), arch="linear", width=k,
                             lr_img=m / (4 * (k + d)), seed=0)
    assert torch.equal(plain.shift, r.shift[:2]) and plain.perturbed is None  # the extra runs change nothing else
    with pytest.raises(ValueError, match="perturb=True"):
        plain.perturbed_set_shift


def test_equal_norm_perturbations_have_the_removal_norm():
    x = _class(n=50, size=8)
    moved = S.equal_norm_perturbations(x, (20, 50), torch.tensor([3, 4]), seed=5)
    assert moved.shape == (2, 2, 1, 8, 8)
    for g, n in enumerate((20, 50)):
        loo = (x[:n].sum(0) - x[[3, 4]]) / (n - 1)
        assert torch.allclose((moved[g] - x[[3, 4]]).flatten(1).norm(dim=1), (x[[3, 4]] - loo).flatten(1).norm(dim=1))
    u = (moved - x[[3, 4]]).flatten(2)
    cos = torch.nn.functional.cosine_similarity(u[0], u[1], dim=-1)
    assert torch.allclose(cos, torch.ones(2))  # one direction per r, the same for every n
    assert torch.equal(moved, S.equal_norm_perturbations(x, (20, 50), torch.tensor([3, 4]), seed=5))
    assert not torch.equal(moved, S.equal_norm_perturbations(x, (20, 50), torch.tensor([3, 4]), seed=6))


def test_one_class_alone_equals_that_class_within_many():
    """DM's classes do not interact: class 0 condensed alone is class 0 of a joint run (same draws)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 1, 16, 16, generator=g)
    y = torch.arange(2).repeat_interleave(20)
    kw = dict(ipc=2, iterations=5, batch_real=None, augment=None, arch="convnet", width=4, depth=2, seed=3)
    joint = distribution_matching(x, y, init=torch.tensor([0, 1, 20, 21]), **kw)
    alone = distribution_matching(x[:20], y[:20], init=torch.tensor([0, 1]), **kw)
    assert torch.allclose(joint.images[:2], alone.images, atol=1e-5)


def test_mlp_depth_reaches_the_extractor():
    x = _class(n=20, size=8)
    y = torch.zeros(20, dtype=torch.long)
    kw = dict(ipc=1, init=torch.tensor([0]), iterations=2, batch_real=None, augment=None, arch="mlp", width=8)
    a = distribution_matching(x, y, depth=1, **kw).images
    b = distribution_matching(x, y, depth=3, **kw).images
    assert not torch.allclose(a, b)


def test_removal_shifts_rejects_bad_positions():
    x = _class(n=30)
    with pytest.raises(ValueError, match="below min"):
        S.removal_shifts(x, (10, 20), 2, [15], iterations=1, arch="mlp", width=4)
    with pytest.raises(ValueError, match="exceeds"):
        S.removal_shifts(x, (10, 40), 2, [5], iterations=1, arch="mlp", width=4)
    with pytest.raises(ValueError, match="substitute"):
        S.removal_shifts(x, (10, 20), 2, [0, 5], substitute=1, iterations=1, arch="mlp", width=4)


def test_slopes_and_intervals():
    n = np.array([10, 20, 40, 80])
    values = np.stack([3 / n, 5 * n ** -0.5], axis=1)
    assert np.allclose(S.loglog_slopes(n, values), [-1, -0.5])
    mean, lo, hi = S.mean_ci(np.arange(100), bootstrap=500)
    assert lo < mean == 49.5 < hi
    rng = np.random.default_rng(0)
    d, lo, hi = S.standardized_shift(rng.normal(2, 1, 400), rng.normal(0, 1, 400), bootstrap=500)
    assert lo < d < hi and abs(d - 2) < 0.3
    d0, lo0, hi0 = S.standardized_shift(rng.normal(0, 1, 400), rng.normal(0, 1, 400), bootstrap=500)
    assert lo0 < 0 < hi0
    with pytest.raises(ValueError):
        S.standardized_shift([1.0], [2.0])


def test_unit_intervals_and_verdicts():
    mean, lo, hi = S.unit_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and np.isclose(hi - mean, 3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="two independent units"):
        S.unit_ci([1.0])
    rng = np.random.default_rng(0)
    assert S.compare_units(rng.normal(1.0, 0.1, 6), margin=0.2).verdict == "larger"
    assert S.compare_units(rng.normal(-1.0, 0.1, 6), margin=0.2).verdict == "smaller"
    eq = S.compare_units([0.01, -0.02, 0.015, -0.01, 0.0, 0.005], margin=0.2)
    assert eq.verdict == "equivalent" and eq.equivalent
    assert -0.2 < eq.low < eq.tost_low < eq.tost_high < eq.high < 0.2  # the 90% interval sits inside the 95% one
    wide = S.compare_units([0.5, -0.6, 0.4, -0.3], margin=0.2)
    assert wide.verdict == "not distinguishable" and not wide.equivalent and wide.detectable > 0.2
    # the detectable difference: a true difference of that size is found about `power` of the time
    hits = np.mean([S.compare_units(rng.normal(wide.detectable, np.std([0.5, -0.6, 0.4, -0.3], ddof=1), 4),
                                    margin=0.2).verdict == "larger" for _ in range(400)])
    assert 0.65 < hits < 0.92, hits
    with pytest.raises(ValueError, match="margin"):
        S.compare_units([0.1, 0.2], margin=0)
