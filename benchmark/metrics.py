"""PSNR and SSIM on min-max normalised images (REFERENCE 1 and 6).

Two conventions:
- "paper": both images min-max normalised to 0..255 and rounded to 8 bits,
  data range 255 (what the paper states).
- "mednerf": both images min-max normalised to [-1, 1] as floats, data range 2
  (the tensor range upstream scored in). PSNR is invariant to that common
  affine map (only 8-bit rounding differs); SSIM is not, because its luminance
  term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) sees signed means, so
  SSIM in this convention is typically lower on dark images.

SSIM is Wang et al. 2004: an 11x11 Gaussian window with sigma 1.5, K1 0.01,
K2 0.03, population (not sample) statistics, averaged over the pixels whose
window lies inside the image. That equals scikit-image's
structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from umed_common.images import minmax_to_uint8

CONVENTIONS = ("paper", "mednerf")
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def normalise(image: np.ndarray, convention: str = "paper") -> tuple[np.ndarray, float]:
    """Min-max normalise one image (H, W) for scoring; returns (float64 image, data range)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    image = np.asarray(image, dtype=np.float64)
    if convention == "paper":
        return minmax_to_uint8(image).astype(np.float64), 255.0
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.full(image.shape, -1.0), 2.0
    return (image - low) / (high - low) * 2.0 - 1.0, 2.0


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs target {target.shape}")
    if pred.ndim < 2:
        raise ValueError(f"expected images (..., H, W), got shape {pred.shape}")
    return pred.astype(np.float64), target.astype(np.float64)


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 255.0) -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB of (..., H, W) images; inf where they are identical.

    No normalisation here: pass images already in [0, data_range] (see `normalise`).
    Returns a float for (H, W) input, else an array of shape (...).
    """
    pred, target = _check_pair(pred, target)
    mse = np.mean((pred - target) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(data_range**2 / mse)
    return float(value) if np.ndim(value) == 0 else value


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, shape (size,), float64."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _blur_valid(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter with no padding: (N, 1, H, W) -> (N, 1, H-10, W-10)."""
    size = taps.numel()
    images = F.conv2d(images, taps.view(1, 1, size, 1))
    return F.conv2d(images, taps.view(1, 1, 1, size))


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 255.0) -> np.ndarray | float:
    """Mean structural similarity of (..., H, W) images (H, W >= 11).

    Only 'valid' windows are used: skimage filters with reflect padding and then
    crops (window - 1) / 2 pixels per side, which leaves exactly these windows.
    Returns a float for (H, W) input, else an array of shape (...).
    """
    pred, target = _check_pair(pred, target)
    batch_shape, (height, width) = pred.shape[:-2], pred.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {height}x{width}")
    x = torch.from_numpy(pred.reshape(-1, 1, height, width))
    y = torch.from_numpy(target.reshape(-1, 1, height, width))
    taps = gaussian_window()
    mu_x, mu_y = _blur_valid(x, taps), _blur_valid(y, taps)
    var_x = _blur_valid(x * x, taps) - mu_x**2
    var_y = _blur_valid(y * y, taps) - mu_y**2
    cov_xy = _blur_valid(x * y, taps) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    value = ssim_map.mean(dim=(-3, -2, -1)).numpy().reshape(batch_shape)
    return float(value) if value.ndim == 0 else value


def score_views(pred: np.ndarray, target: np.ndarray, convention: str = "paper") -> dict[str, np.ndarray]:
    """PSNR and SSIM per view of (V, H, W) renders against (V, H, W) ground truth.

    Each image is min-max normalised on its own (the paper's output convention)
    before scoring. Returns {"psnr": (V,), "ssim": (V,)}.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected two (V, H, W) stacks of one shape, got {pred.shape} and {target.shape}")
    pairs = [(normalise(p, convention), normalise(t, convention)) for p, t in zip(pred, target)]
    data_range = 255.0 if convention == "paper" else 2.0
    pred_n = np.stack([p for (p, _), _ in pairs])
    target_n = np.stack([t for _, (t, _) in pairs])
    return {"psnr": np.atleast_1d(psnr(pred_n, target_n, data_range)),
            "ssim": np.atleast_1d(ssim(pred_n, target_n, data_range))}
