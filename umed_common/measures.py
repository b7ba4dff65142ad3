"""Image measures, each defined once: PSNR, SSIM, NCC, min-max normalisation and resizing (REFERENCE 1, 6).

The contract of scikit-image's `metrics`: the data range is always given, never guessed from a dtype;
the two images of a pair must have one shape; images are (..., H, W) arrays and measures return a float
for one (H, W) pair, else an array of the leading shape. Computation is in float64, except `ssim`, the
torch SSIM, which keeps its input's dtype and device so that it can serve as a differentiable loss.

SSIM is Wang et al. 2004: an 11x11 Gaussian window with sigma 1.5, K1 0.01, K2 0.03, population (not
sample) statistics, averaged over the pixels whose window lies inside the image. That equals
scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=...): skimage filters with reflect padding and then crops (window - 1) / 2 pixels per side,
which leaves exactly these windows.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_data_range(data_range: float) -> None:
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or \
            not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range {data_range!r}: must be a positive finite number (e.g. 255 for uint8)")


def check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (..., H, W) images of one shape as float64 arrays; ValueError otherwise."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs target {target.shape}")
    if pred.ndim < 2:
        raise ValueError(f"expected images (..., H, W), got shape {pred.shape}")
    return pred.astype(np.float64), target.astype(np.float64)


def _per_image(value: np.ndarray) -> np.ndarray | float:
    return float(value) if np.ndim(value) == 0 else value


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB of (..., H, W) images in [0, data_range]; inf where identical.

    No normalisation here: min-max normalise first where the convention asks for it.
    """
    _check_data_range(data_range)
    pred, target = check_pair(pred, target)
    mse = np.mean((pred - target) ** 2, axis=(-2, -1))
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(data_range**2 / mse)
    return _per_image(value)


def ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Normalised cross-correlation (Pearson's r over the pixels) of (..., H, W) images, in [-1, 1]."""
    a, b = check_pair(a, b)
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    value = (a * b).sum(axis=(-2, -1)) / np.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))
    return _per_image(value)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size, size) normalised Gaussian computed in `dtype`: the SSIM window of Wang et al. 2004."""
    coords = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM over the valid 11x11 windows: (B, C, H, W) x2 -> (B,), differentiable.

    Channels are filtered separately and averaged with the pixels. The window is built in float64 for
    float64 input (scoring), else in float32 and cast to the input's dtype.
    """
    _check_data_range(data_range)
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, "
                         f"got {x.shape[-2]}x{x.shape[-1]}")
    channels = x.shape[1]
    window_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    window = gaussian_window(dtype=window_dtype).to(x)[None, None].expand(channels, 1, -1, -1)

    def blur(t):
        return F.conv2d(t, window, groups=channels)

    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def ssim_images(pred: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray | float:
    """`ssim` in float64 of (..., H, W) arrays in [0, data_range] (H, W >= 11)."""
    pred, target = check_pair(pred, target)
    batch_shape, (height, width) = pred.shape[:-2], pred.shape[-2:]
    value = ssim(torch.from_numpy(pred.reshape(-1, 1, height, width)),
                 torch.from_numpy(target.reshape(-1, 1, height, width)), data_range)
    return _per_image(value.numpy().reshape(batch_shape))


def minmax_unit(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> each image mapped by (y - min y) / (max y - min y) to [0, 1] (REFERENCE 1).

    A constant image maps to zeros rather than dividing by zero.
    """
    if images.dim() < 2:
        raise ValueError(f"expected images (..., H, W), got shape {tuple(images.shape)}")
    low = images.amin(dim=(-2, -1), keepdim=True)
    span = images.amax(dim=(-2, -1), keepdim=True) - low
    return (images - low) / torch.where(span > 0, span, torch.ones_like(span))


def minmax_signed(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> each image min-max mapped to [-1, 1] (the tensor range upstream scored in); constant -> -1."""
    return minmax_unit(images) * 2 - 1


def minmax_to_uint8(image: np.ndarray) -> np.ndarray:
    """y' = (y - min y) / (max y - min y) * 255 (REFERENCE 1) of (..., H, W), each image rounded to uint8.

    Computed in float64; a constant image maps to zeros.
    """
    unit = minmax_unit(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64)))
    return torch.round(unit * 255.0).numpy().astype(np.uint8)


def resize_gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 -> size (rows, cols) uint8 with Pillow's bilinear filter (it antialiases when shrinking)."""
    if image.shape == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))
