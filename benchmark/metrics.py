"""Scoring conventions of the tables: PSNR and SSIM on min-max normalised images (REFERENCE 1 and 6).

Two conventions:
- "paper": both images min-max normalised to 0..255 and rounded to 8 bits,
  data range 255 (what the paper states).
- "mednerf": both images min-max normalised to [-1, 1] as floats, data range 2
  (the tensor range upstream scored in). PSNR is invariant to that common
  affine map (only 8-bit rounding differs); SSIM is not, because its luminance
  term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) sees signed means, so
  SSIM in this convention is typically lower on dark images.

The measures themselves (PSNR, SSIM, min-max) are `umed_common.measures`.
"""
from __future__ import annotations

import numpy as np
import torch

from umed_common.measures import minmax_signed, minmax_to_uint8, psnr, ssim_images

CONVENTIONS = ("paper", "mednerf")
DATA_RANGES = {"paper": 255.0, "mednerf": 2.0}


def data_range_of(convention: str) -> float:
    """255 for "paper", 2 for "mednerf"; ValueError for another name."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    return DATA_RANGES[convention]


def normalise(image: np.ndarray, convention: str = "paper") -> tuple[np.ndarray, float]:
    """Min-max normalise one image (H, W) for scoring; returns (float64 image, data range)."""
    data_range = data_range_of(convention)
    image = np.asarray(image, dtype=np.float64)
    if convention == "paper":
        return minmax_to_uint8(image).astype(np.float64), data_range
    return minmax_signed(torch.from_numpy(np.ascontiguousarray(image))).numpy(), data_range


def score_views(pred: np.ndarray, target: np.ndarray, convention: str = "paper") -> dict[str, np.ndarray]:
    """PSNR and SSIM per view of (V, H, W) renders against (V, H, W) ground truth.

    Each image is min-max normalised on its own (the paper's output convention)
    before scoring. Returns {"psnr": (V,), "ssim": (V,)}.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected two (V, H, W) stacks of one shape, got {pred.shape} and {target.shape}")
    pairs = [(normalise(p, convention), normalise(t, convention)) for p, t in zip(pred, target)]
    data_range = data_range_of(convention)
    pred_n = np.stack([p for (p, _), _ in pairs])
    target_n = np.stack([t for _, (t, _) in pairs])
    return {"psnr": np.atleast_1d(psnr(pred_n, target_n, data_range)),
            "ssim": np.atleast_1d(ssim_images(pred_n, target_n, data_range))}
