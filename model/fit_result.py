"""What single-view fitting returns, and how it reads its one X-ray: shared by both model families."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from umed_common.errors import UserError
from umed_common.images import minmax_to_uint8
from umed_common.measures import psnr, ssim


@dataclass
class FinetuneResult:
    views: np.ndarray          # (72, H, W) uint8, views[k] is DRR view k (k * 5 deg), min-max normalised
    input_view_index: int
    azimuth_deg: float         # azimuth of the input view in the model's frame (estimated or given)
    history: pd.DataFrame      # per step: iteration, loss, loss_r, loss_mse, sigma_1, sigma_2, psnr, ssim
    z: torch.Tensor | None = None
    generator: torch.nn.Module | None = None    # the fine-tuned generator (for --export-volume)
    attenuation: np.ndarray | None = None       # physical family: (D, H, W) mu per mm on the box (z, y, x)
    box_mm: float | None = None


def prepare_xray(xray: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) uint8 (any size) -> (size, size) in [-1, 1] after min-max normalisation; warns on resize."""
    xray = np.asarray(xray)
    if xray.ndim != 2:
        raise UserError(f"X-ray must be a 2-D grayscale image, got shape {xray.shape}")
    image = torch.from_numpy(minmax_to_uint8(xray).astype(np.float32) / 127.5 - 1.0)[None, None]
    if image.shape[-2:] != (size, size):
        warnings.warn(f"X-ray of {xray.shape[1]}x{xray.shape[0]} px resized to the model size {size}x{size}",
                      stacklevel=3)
        image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return image[0, 0]


def input_view_metrics(render: torch.Tensor, target_u8: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of a float (H, W) render against the uint8 X-ray, the render min-max normalised to 8 bits
    first (the paper's convention); what both families log per fitting step."""
    pred_u8 = minmax_to_uint8(render.detach().cpu().numpy())
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32))[None, None]  # noqa: E731
    return psnr(pred_u8, target_u8, data_range=255.0), float(ssim(as_tensor(pred_u8), as_tensor(target_u8), 255.0))
