"""Line integrals of attenuation through a voxel volume: exact Siddon and trilinear.

Both work in continuous voxel-index coordinates (voxel i spans i - 0.5 .. i + 0.5),
so any index -> world affine, direction cosines included, is honoured: a ray is
mapped to index space, traced there, and lengths are measured in world mm.
All rays of all requested views are processed in chunks of `chunk_elements`
(rays x crossings or rays x samples) to bound memory, on the tensors' device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .geometry import Geometry, pixel_centres, view_frames

METHODS = ("exact", "trilinear", "fast")
# Projectors that need an identity-direction grid (drr.orientation.align_to_axes gives one).
AXIS_ALIGNED_ONLY = ("fast",)


def project(mu_zyx: torch.Tensor, index_to_world, geometry: Geometry, *, method: str = "exact",
            step_mm: float | None = None, view_indices=None, downsample="auto", workers: int = 1,
            chunk_elements: int = 4_000_000, progress=None) -> torch.Tensor:
    """(Z, Y, X) mu per mm -> (V, H, W) float32 line integrals (dimensionless).

    method: 'exact' (Siddon), 'trilinear' (fixed step, default half the smallest
    voxel side) or 'fast' (see fast_projector; needs the voxel axes along the world
    axes in any order and sign, and an oblique volume resampled by drr.orientation).
    downsample and workers (threads for batches of views) apply to 'fast' only.
    """
    if method == "fast":
        from .fast_projector import project_fast
        return project_fast(mu_zyx, index_to_world, geometry, view_indices=view_indices,
                            downsample=downsample, workers=workers, progress=progress)
    if method not in METHODS:
        raise ValueError(f"unknown projector {method!r}")
    sources, ends, lengths = _rays_in_index_space(mu_zyx, index_to_world, geometry, view_indices)
    views, rows, cols = ends.shape[:3]
    sources = sources[:, None, None, :].expand(-1, rows, cols, -1).reshape(-1, 3)
    ends, lengths = ends.reshape(-1, 3), lengths.reshape(-1)
    if method == "exact":
        per_ray = sum(mu_zyx.shape) + 5
        trace = _siddon_chunk
    else:
        step_mm = step_mm or 0.5 * float(_voxel_sides_mm(index_to_world).min())
        per_ray = int(math.ceil(float(lengths.max()) / step_mm))
        trace = lambda m, s, e, l: _trilinear_chunk(m, s, e, l, step_mm)  # noqa: E731
    chunk = max(1, chunk_elements // per_ray)
    out = torch.empty(lengths.shape, dtype=torch.float32, device=mu_zyx.device)
    for start in range(0, lengths.numel(), chunk):
        stop = start + chunk
        out[start:stop] = trace(mu_zyx, sources[start:stop], ends[start:stop], lengths[start:stop])
        if progress is not None:
            progress(min(stop, lengths.numel()) / lengths.numel())
    return out.reshape(views, rows, cols)


def _voxel_sides_mm(index_to_world) -> torch.Tensor:
    return torch.as_tensor(index_to_world, dtype=torch.float64)[:3, :3].norm(dim=0)


def _rays_in_index_space(mu_zyx, index_to_world, geometry, view_indices):
    """Sources (V, 3) and pixel centres (V, H, W, 3) in (x, y, z) index space; ray lengths (V, H, W) mm."""
    device = mu_zyx.device
    frames = view_frames(geometry, view_indices, dtype=torch.float64, device=device)
    pixels = pixel_centres(frames)
    affine = torch.as_tensor(index_to_world, dtype=torch.float64, device=device)
    world_to_index = torch.linalg.inv(affine)
    to_index = lambda p: p @ world_to_index[:3, :3].T + world_to_index[:3, 3]  # noqa: E731
    lengths = (pixels - frames["source"][:, None, None, :]).norm(dim=-1)
    return (to_index(frames["source"]).float(), to_index(pixels).float(), lengths.float())


def _siddon_chunk(mu_zyx, sources, ends, lengths) -> torch.Tensor:
    """Exact radiological path (Siddon 1985) for R rays: sources, ends (R, 3) index space -> (R,)."""
    depth, height, width = mu_zyx.shape
    sizes = (width, height, depth)
    delta = ends - sources
    tiny = torch.where(delta >= 0, 1e-9, -1e-9).to(delta)
    delta = torch.where(delta.abs() < 1e-9, tiny, delta)
    crossings, enter, leave = [], [], []
    for axis, size in enumerate(sizes):
        planes = torch.arange(size + 1, device=delta.device, dtype=delta.dtype) - 0.5
        alpha = (planes[None, :] - sources[:, axis:axis + 1]) / delta[:, axis:axis + 1]
        first, last = alpha[:, 0], alpha[:, -1]
        enter.append(torch.minimum(first, last))
        leave.append(torch.maximum(first, last))
        crossings.append(alpha)
    alpha_in = torch.stack(enter).amax(0).clamp(min=0.0)
    alpha_out = torch.stack(leave).amin(0).clamp(max=1.0)
    hits = alpha_out > alpha_in
    alpha_out = torch.where(hits, alpha_out, alpha_in)
    alpha = torch.cat([alpha_in[:, None], alpha_out[:, None], *crossings], dim=1)
    alpha = torch.minimum(torch.maximum(alpha, alpha_in[:, None]), alpha_out[:, None])
    alpha, _ = torch.sort(alpha, dim=1)
    segment = alpha[:, 1:] - alpha[:, :-1]
    middle = 0.5 * (alpha[:, 1:] + alpha[:, :-1])
    flat = torch.zeros_like(middle, dtype=torch.long)
    inside = segment > 0
    for axis, (size, stride) in enumerate(zip(sizes, (1, width, width * height))):
        index = torch.floor(sources[:, axis:axis + 1] + middle * delta[:, axis:axis + 1] + 0.5).long()
        inside &= (index >= 0) & (index < size)
        flat += index.clamp(0, size - 1) * stride
    values = mu_zyx.reshape(-1)[flat]
    return (segment * values * inside).sum(dim=1) * lengths


def _trilinear_chunk(mu_zyx, sources, ends, lengths, step_mm: float) -> torch.Tensor:
    """Midpoint rule with trilinear samples, at most `step_mm` apart, between entry and exit."""
    depth, height, width = mu_zyx.shape
    sizes = torch.tensor([width, height, depth], dtype=sources.dtype, device=sources.device)
    delta = ends - sources
    safe = torch.where(delta.abs() < 1e-9, torch.full_like(delta, 1e-9), delta)
    first = (-0.5 - sources) / safe
    last = (sizes - 0.5 - sources) / safe
    alpha_in = torch.minimum(first, last).amax(1).clamp(min=0.0)
    alpha_out = torch.maximum(first, last).amin(1).clamp(max=1.0)
    inside_mm = ((alpha_out - alpha_in) * lengths).clamp(min=0.0)
    samples = torch.ceil(inside_mm / step_mm).clamp(min=1)
    most = int(samples.max())
    m = torch.arange(most, device=sources.device, dtype=sources.dtype)
    alpha = alpha_in[:, None] + (m[None, :] + 0.5) / samples[:, None] * (alpha_out - alpha_in)[:, None]
    points = sources[:, None, :] + alpha[..., None] * delta[:, None, :]
    grid = 2.0 * points / (sizes - 1).clamp(min=1) - 1.0  # align_corners=True: -1/+1 = first/last centre
    values = F.grid_sample(mu_zyx[None, None], grid[None, None], mode="bilinear",
                           padding_mode="zeros", align_corners=True)[0, 0, 0]
    values = values * (m[None, :] < samples[:, None])
    return values.sum(dim=1) * inside_mm / samples
