import numpy as np
import pytest
import scipy.linalg
import torch

from memcontrol.metrics import fid, fid_of_images, frechet_distance
from memcontrol.metrics.features import PixelFeatures


def _features(n=60, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_fid_of_a_set_with_itself_is_zero():
    x = _features()
    assert fid(x, x) == pytest.approx(0, abs=1e-9)


def test_fid_grows_with_a_mean_shift_as_the_squared_shift():
    x = _features()
    values = [fid(x, x + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and len(set(values)) == 4
    # Same covariance: only ||mu1 - mu2||^2 = d * shift^2 remains.
    assert values[2] == pytest.approx(6 * 1.0**2, rel=1e-6)


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), eps=0) == pytest.approx(expected)


def test_frechet_distance_matches_scipy_sqrtm_for_non_commuting_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = m1 @ m1.T + np.eye(5), m2 @ m2.T + np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2, eps=0) == pytest.approx(expected, rel=1e-8)


def test_fewer_samples_than_features_still_gives_a_finite_distance():
    x, y = _features(n=3, d=20), _features(n=3, d=20, seed=1)
    assert np.isfinite(fid(x, y)) and fid(x, y) > 0
    assert fid(x, x) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid(x[:1], y)


def test_fid_of_images_runs_through_an_extractor():
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    extractor = PixelFeatures(size=4)
    assert fid_of_images(images, images, extractor) == pytest.approx(0, abs=1e-6)
    assert fid_of_images(images, (images + 0.3).clamp(0, 1), extractor) > 1
