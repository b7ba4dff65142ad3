"""Where rays go and where samples sit on them: the coarse-to-fine patch sampler and stratified samples."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import CameraConfig, PatchConfig


def min_patch_scale(cfg: PatchConfig, iteration: int) -> float:
    """s_min = min(0.9, max(0.25, exp(-0.0075 * floor(it / 1000)))) with the configured constants."""
    decayed = math.exp(-cfg.scale_decay * (iteration // cfg.scale_decay_every))
    return min(cfg.max_scale_min, max(cfg.min_scale, decayed))


def sample_patch_grids(cfg: PatchConfig, batch: int, iteration: int,
                       generator: torch.Generator) -> torch.Tensor:
    """Normalised patch coordinates in [-1, 1] (grid_sample convention, align_corners=True).

    A P x P grid spans `scale` of the image with scale ~ U[s_min, 1] and a random shift that keeps
    it inside the image. Returns (B, P, P, 2) as (x, y); x to the right, y down.
    """
    s_min = min_patch_scale(cfg, iteration)
    scale = s_min + torch.rand(batch, 1, 1, 1, generator=generator) * (1.0 - s_min)
    shift = (torch.rand(batch, 1, 1, 2, generator=generator) * 2.0 - 1.0) * (1.0 - scale)
    lin = torch.linspace(-1.0, 1.0, cfg.size)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    base = torch.stack([gx, gy], dim=-1).unsqueeze(0)             # (1, P, P, 2)
    return base * scale + shift


def full_image_grid(size: int) -> torch.Tensor:
    """(1, size, size, 2) grid hitting every pixel centre exactly."""
    lin = torch.linspace(-1.0, 1.0, size)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([gx, gy], dim=-1).unsqueeze(0)


def grid_to_pixels(grid: torch.Tensor, image_size: int) -> torch.Tensor:
    """Normalised (..., 2) in [-1, 1] -> continuous pixel positions in [0, size - 1]."""
    return (grid + 1.0) * 0.5 * (image_size - 1)


def sample_real_patches(images: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Bilinear real patches at the same grid as the fake rays: (B, C, H, W), (B, P, P, 2) -> (B, C, P, P)."""
    return F.grid_sample(images, grids.to(images.dtype), mode="bilinear", align_corners=True)


def ray_depth_bounds(cfg: CameraConfig, radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-camera near/far (B,): from `depth_in_front` before the origin to `depth_behind` after it."""
    return radius - cfg.depth_in_front, radius + cfg.depth_behind


def stratified_depths(near: torch.Tensor, far: torch.Tensor, n_rays: int, n_samples: int,
                      jitter: torch.Tensor | None) -> torch.Tensor:
    """Stratified depths along rays: one sample in each of `n_samples` equal bins of [near, far].

    near, far: (B,); jitter: (B, R, S) uniform in [0, 1) placing each sample in its bin, or None
    for bin midpoints (evaluation). Returns (B, R, S). Depth is measured along the direction
    (x, y, -1), i.e. along the optical axis.
    """
    bins = torch.linspace(0.0, 1.0, n_samples + 1, dtype=near.dtype, device=near.device)
    lower, width = bins[:-1], bins[1:] - bins[:-1]
    if jitter is None:
        jitter = torch.full((near.shape[0], n_rays, n_samples), 0.5, dtype=near.dtype, device=near.device)
    t = lower + jitter.to(near.device, near.dtype) * width
    return near[:, None, None] + t * (far - near)[:, None, None]
