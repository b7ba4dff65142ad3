import numpy as np
import pytest
import torch
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.kid import poly_mmd

from benchmark import fid_kid
from benchmark.fid_kid import fid, frechet_distance, kid, mmd2_unbiased, subset_indices


def torchmetrics_fid(a, b):
    stats = [torch.tensor(x) for x in (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))]
    return _compute_fid(*stats).item()


@pytest.mark.parametrize("n_a,n_b,dim", [(300, 280, 64), (40, 45, 256)])
def test_fid_matches_torchmetrics(n_a, n_b, dim):
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(n_a, dim)))
    b = np.abs(rng.normal(0.1, 1.2, size=(n_b, dim)))
    assert fid(a, b) == pytest.approx(torchmetrics_fid(a, b), rel=1e-6)
    # The covariance route and the image-by-image route agree on the same data.
    route = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert fid(a, b) == pytest.approx(route, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    a = np.abs(np.random.default_rng(1).normal(size=(50, 128)))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)
    assert fid(a, a + 1.0) == pytest.approx(128.0, rel=1e-9)  # a pure shift: ||mu_a - mu_b||^2


@pytest.mark.parametrize("precompute", [True, False])
def test_kid_matches_torchmetrics_per_subset(precompute, monkeypatch):
    if not precompute:
        monkeypatch.setattr(fid_kid, "PRECOMPUTE_LIMIT", 0)
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(120, 32)), rng.normal(0.3, 1.0, size=(100, 32))
    score = kid(a, b, subset_size=40, repeats=6, seed=7)
    for value, (i, j) in zip(score.values, subset_indices(120, 100, 40, 6, seed=7)):
        reference = poly_mmd(torch.tensor(a[i]), torch.tensor(b[j])).item()
        assert value == pytest.approx(reference, rel=1e-6)
    assert score.mean > 0 and (score.n_a, score.n_b, score.subset_size) == (120, 100, 40)


def test_kid_std_is_zero_only_when_every_subset_is_the_whole_set():
    a = np.abs(np.random.default_rng(3).normal(size=(60, 16)))
    whole = kid(a, a, subset_size=60, repeats=5)
    assert whole.std < 1e-12 * abs(whole.mean)  # every subset is the whole set: only summation order varies
    assert whole.mean == pytest.approx(mmd2_unbiased(a, a), rel=1e-12)
    sub = kid(a, a, subset_size=20, repeats=5)
    assert sub.std > 0.0


def test_kid_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(4)
    pool = np.abs(rng.normal(size=(400, 32)))
    same = kid(pool[:200], pool[200:], subset_size=100, repeats=30)
    shifted = kid(pool[:200], pool[200:] + 0.5, subset_size=100, repeats=30)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert shifted.mean > 20 * abs(same.mean) and shifted.mean > 3 * shifted.std


def test_bad_subsets_and_shapes_raise():
    a = np.zeros((10, 4))
    with pytest.raises(ValueError, match="subset size"):
        kid(a, a, subset_size=11)
    with pytest.raises(ValueError, match="feature arrays"):
        fid(a, np.zeros((10, 5)))
    assert fid_kid.default_subset_size(1000, 284, 1000) == 142
