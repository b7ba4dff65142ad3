"""FID and KID from feature vectors (REFERENCE 6).

FID (Heusel et al. 2017): ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)).
tr((S_a S_b)^(1/2)) is computed without complex arithmetic: as the sum of
square roots of the eigenvalues of the symmetric matrix S_a^(1/2) S_b S_a^(1/2)
(same spectrum as S_a S_b), or, when there are fewer images than dimensions,
as a nuclear norm of an image-by-image matrix (see `fid`).

KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic kernel
k(x, y) = (x.y / d + 1)^3 on random subsets of size m drawn without replacement
from each set, averaged over repeats. When m equals both set sizes every subset
is the whole set and the std is exactly 0; it is only meaningful for m < n.
Two identical sets give a KID near 0 but slightly negative, of order 1/m,
because the cross term then includes each image paired with itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RepeatedScore:
    """A metric over random subsets: one value per repeat, with the sizes used."""

    values: np.ndarray  # (repeats,)
    subset_size: int
    n_a: int
    n_b: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values))


def _check_features(a: np.ndarray, b: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) feature arrays of one D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < minimum:
        raise ValueError(f"need at least {minimum} feature vectors per set, got {len(a)} and {len(b)}")
    return a, b


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Frechet distance between N(mu_a, cov_a) and N(mu_b, cov_b); mu (D,), cov (D, D)."""
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return float(max(distance, 0.0))  # tiny negative values are round-off of a zero distance


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID of two (N, D) feature sets (sample covariances, as is customary).

    With fewer images than dimensions (the usual case: D = 2048) the D x D
    route is wasteful. Writing S = X^T X / (n - 1) for centred X (n, D), the
    nonzero eigenvalues of S_a S_b are those of (X_a X_b^T)(X_a X_b^T)^T /
    ((n_a - 1)(n_b - 1)), so tr((S_a S_b)^(1/2)) is the nuclear norm of the
    (n_a, n_b) matrix X_a X_b^T over sqrt((n_a - 1)(n_b - 1)): exact, and real.
    """
    a, b = _check_features(features_a, features_b, minimum=2)
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    scale_a, scale_b = len(a) - 1, len(b) - 1
    trace_sqrt = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    distance = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum(centred_a**2) / scale_a
                + np.sum(centred_b**2) / scale_b - 2.0 * trace_sqrt)
    return float(max(distance, 0.0))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for rows of x (M, D) and y (K, D) -> (M, K)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between equal-sized samples x, y (m, D) with the cubic kernel."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / m**2)


def subset_indices(n_a: int, n_b: int, subset_size: int, repeats: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per repeat, `subset_size` indices into each set, drawn without replacement (seeded)."""
    if not 2 <= subset_size <= min(n_a, n_b):
        raise ValueError(f"subset size {subset_size} must be in [2, {min(n_a, n_b)}]")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    rng = np.random.default_rng(seed)
    return [(rng.choice(n_a, subset_size, replace=False), rng.choice(n_b, subset_size, replace=False))
            for _ in range(repeats)]


def kid(features_a: np.ndarray, features_b: np.ndarray, subset_size: int, repeats: int = 100,
        seed: int = 0) -> RepeatedScore:
    """KID over `repeats` random subsets of `subset_size` from each (N, D) set."""
    a, b = _check_features(features_a, features_b, minimum=2)
    draws = subset_indices(len(a), len(b), subset_size, repeats, seed)
    if max(len(a), len(b)) > PRECOMPUTE_LIMIT:
        values = np.array([mmd2_unbiased(a[i], b[j]) for i, j in draws])
    else:
        values = _kid_from_full_kernels(a, b, draws)
    return RepeatedScore(values, subset_size, len(a), len(b))


PRECOMPUTE_LIMIT = 6000  # kernel matrices of up to 6000^2 float64 (288 MB) are computed once


def _kid_from_full_kernels(a: np.ndarray, b: np.ndarray, draws) -> np.ndarray:
    """Same values as mmd2_unbiased per subset, from kernels computed once for all pairs.

    Three (N, N) products replace `repeats` x three (m, m) ones: the time then
    goes to indexing, which is what keeps KID from cached features within seconds.
    """
    k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    values = []
    for i, j in draws:
        m = len(i)
        within = (k_aa[np.ix_(i, i)].sum() - k_aa[i, i].sum() + k_bb[np.ix_(j, j)].sum() - k_bb[j, j].sum())
        values.append(within / (m * (m - 1)) - 2.0 * k_ab[np.ix_(i, j)].sum() / m**2)
    return np.array(values)


def fid_repeated(features_a: np.ndarray, features_b: np.ndarray, subset_size: int, repeats: int = 10,
                 seed: int = 0) -> RepeatedScore:
    """FID over random subsets, for a spread. FID is biased upwards at small sizes, so
    the mean at subset_size < n is above the full-set value: report both."""
    a, b = _check_features(features_a, features_b, minimum=2)
    draws = subset_indices(len(a), len(b), subset_size, repeats, seed)
    values = np.array([fid(a[i], b[j]) for i, j in draws])
    return RepeatedScore(values, subset_size, len(a), len(b))


def default_subset_size(n_a: int, n_b: int, requested: int) -> int:
    """The requested size, but at most half the smaller set so subsets differ and the std means something."""
    return max(2, min(requested, min(n_a, n_b) // 2))
