"""Frechet distance between feature sets (FID when the features are Inception's; the paper uses a
chest X-ray DenseNet-121). Computed in float64 with a symmetric eigen-decomposition rather than
``scipy.linalg.sqrtm``: the same value, but no complex round-off on near-singular covariances.
"""

from __future__ import annotations

import numpy as np
import torch

from memcontrol.metrics.features import FeatureExtractor

# Added to covariance diagonals: with fewer samples than features a covariance is singular, and the
# square root of a product of singular matrices is numerically fragile.
COVARIANCE_EPS = 1e-6


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features, float64."""
    x = features.detach().cpu().double().numpy()
    if len(x) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(x)}")
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = COVARIANCE_EPS
) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians.

    tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), and the latter matrix is symmetric PSD, so both
    roots come from ``eigh``.
    """
    identity = np.eye(len(mu1))
    sigma1, sigma2 = sigma1 + eps * identity, sigma2 + eps * identity
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    cross = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * cross
    return float(max(distance, 0.0))


def fid(features_a: torch.Tensor, features_b: torch.Tensor, eps: float = COVARIANCE_EPS) -> float:
    """Frechet distance between the Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b), eps=eps)


def fid_of_images(
    real: torch.Tensor, generated: torch.Tensor, extractor: FeatureExtractor, batch_size: int = 64
) -> float:
    """FID between two image sets (N, 3, H, W) in [0, 1] in ``extractor``'s feature space."""
    return fid(extractor(real, batch_size), extractor(generated, batch_size))
