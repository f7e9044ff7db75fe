import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from dcprivacy import visual as V


def _images(n, seed=0, channels=1, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g)


def test_pairwise_l2_matches_the_definition_and_is_exact_on_copies():
    a, b = _images(5), _images(7, seed=1)
    d = V.pairwise_l2(a, b, chunk=3)
    ref = torch.tensor([[float((p - q).double().norm()) for q in b] for p in a], dtype=torch.float64)
    assert d.shape == (5, 7) and torch.allclose(d, ref)
    assert torch.all(V.pairwise_l2(b, b).diagonal() == 0)
    with pytest.raises(ValueError):
        V.pairwise_l2(a, _images(2, size=8))


def test_nearest_l2_finds_the_perturbed_original():
    refs = _images(50)
    queries = refs[[3, 17, 42]] + 0.01 * _images(3, seed=2)
    dist, idx = V.nearest_l2(queries, refs, k=2)
    assert idx[:, 0].tolist() == [3, 17, 42]
    assert torch.all(dist[:, 0] <= dist[:, 1])
    with pytest.raises(ValueError):
        V.nearest_l2(queries, refs, k=51)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_is_scikit_image_with_wang_settings(channels):
    a, b = _images(4, channels=channels), _images(4, seed=3, channels=channels)
    got = V.ssim_pairs(a, b)
    ref = [structural_similarity(p.permute(1, 2, 0).double().numpy(), q.permute(1, 2, 0).double().numpy(),
                                 data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False) for p, q in zip(a, b)]
    assert np.allclose(got, ref)
    assert np.allclose(V.ssim_pairs(a, a), 1.0)


def test_ssim_to_and_nearest_ssim():
    refs = _images(30)
    queries = refs[[4, 9]] + 0.02 * _images(2, seed=4)
    s = V.ssim_to(queries, refs, torch.tensor([[4, 5], [9, 0]]))
    assert s.shape == (2, 2) and s[0, 0] > s[0, 1] and s[1, 0] > s[1, 1]
    best, idx = V.nearest_ssim(queries, refs, candidates=3)
    assert idx.tolist() == [4, 9] and np.all(best > 0.9)
    ex_best, ex_idx = V.exhaustive_nearest_ssim(queries, refs)
    assert ex_idx.tolist() == [4, 9] and np.allclose(ex_best, best)
    # an image outside the L2 candidates is considered when included
    far = torch.tensor([7, 8])
    _, idx_inc = V.nearest_ssim(refs[[7, 8]], refs, candidates=1, include=far)
    assert idx_inc.tolist() == [7, 8]


def test_init_match_rate():
    assert V.init_match_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])) == 0.5
    with pytest.raises(ValueError):
        V.init_match_rate(torch.tensor([1, 2]), torch.tensor([1]))
