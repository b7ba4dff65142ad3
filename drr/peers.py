"""The PyPI projectors a user might pick instead of ours, fed the same rays and the same mu.

DiffDRR (Siddon renderer) and nanodrr (ray marching with `grid_sample`, or its fused
kernel on CUDA) are optional (`pip install umednerf[peers-bench]`). Their pose and
detector conventions differ from Plastimatch's; to compare projectors and not
conventions, each gets our rays directly: the source and the detector pixel centres of
drr.geometry (world mm) and our mu per mm (drr.attenuation), so every tool integrates
the same function along the same lines. Only the projector of each peer runs; their
own HU -> mu and pose -> ray code does not.

Both return (V, H, W) float32 line integrals like drr.projector.project.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch

from .geometry import Geometry, pixel_centres, view_frames

PEERS = ("diffdrr", "nanodrr")
# nanodrr's own default is 500 samples per ray; 128 is what a speed-minded user would try.
NANODRR_SAMPLES = (128, 500)


def installed(peer: str) -> bool:
    return importlib.util.find_spec(peer) is not None


def _world_rays(geometry: Geometry, views: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources (B, 1, 3) and pixel centres (B, H * W, 3), world mm, float64."""
    frames = view_frames(geometry, views, dtype=torch.float64, device=device)
    targets = pixel_centres(frames).reshape(len(views), -1, 3)
    return frames["source"][:, None, :], targets


def _to_index(points: torch.Tensor, index_to_world) -> torch.Tensor:
    world_to_index = torch.linalg.inv(torch.as_tensor(index_to_world, dtype=torch.float64, device=points.device))
    return points @ world_to_index[:3, :3].T + world_to_index[:3, 3]


@torch.no_grad()
def project_diffdrr(mu_zyx: torch.Tensor, index_to_world, geometry: Geometry, views_per_call: int = 1) -> torch.Tensor:
    """(Z, Y, X) mu per mm -> (V, H, W) with DiffDRR's Siddon renderer (mu_zyx's device).

    DiffDRR samples the volume in (X, Y, Z) order with voxel i spanning i - 0.5 .. i + 0.5
    (voxel_shift 0.5, as ours); its image starts as the ray lengths in mm. Its memory grows
    with rays x planes, hence few views per call.
    """
    from diffdrr.renderers import Siddon

    renderer = Siddon(voxel_shift=0.5)
    volume_xyz = mu_zyx.permute(2, 1, 0).contiguous()
    out = []
    for first in range(0, geometry.views, views_per_call):
        views = list(range(first, min(first + views_per_call, geometry.views)))
        sources, targets = _world_rays(geometry, views, mu_zyx.device)
        lengths = (targets - sources).norm(dim=-1)[:, None, :].float()  # (B, 1, N)
        source_index = _to_index(sources, index_to_world).float().expand(-1, targets.shape[1], -1)
        image = renderer(volume_xyz, source_index, _to_index(targets, index_to_world).float(), lengths)
        out.append(image.reshape(len(views), geometry.detector_rows, geometry.detector_cols))
    return torch.cat(out).float()


@torch.no_grad()
def project_nanodrr(mu_zyx: torch.Tensor, index_to_world, geometry: Geometry, n_samples: int = 500,
                    views_per_call: int = 4) -> torch.Tensor:
    """(Z, Y, X) mu per mm -> (V, H, W) with nanodrr's `render` (backend 'auto': its fused
    kernel on CUDA, `grid_sample` on the CPU), `n_samples` per ray inside the volume.

    rt_inv is the identity, so the rays we hand it are world coordinates; its memory grows
    with views x samples x pixels, hence a few views per call.
    """
    from nanodrr.data import Subject
    from nanodrr.drr import render

    device = mu_zyx.device
    affine = torch.as_tensor(np.asarray(index_to_world), dtype=torch.float64)
    image = mu_zyx.float()[None, None]
    subject = Subject(image, torch.zeros_like(image), affine.float(), affine.inverse().float(),
                      Subject._make_voxel_to_grid(image.shape), affine[:3, 3].float(), max_label=0,
                      convert_to_mu=False).to(device)
    out = []
    for first in range(0, geometry.views, views_per_call):
        views = list(range(first, min(first + views_per_call, geometry.views)))
        sources, targets = _world_rays(geometry, views, device)
        count = len(views)
        identity = torch.eye(4, device=device).expand(count, 4, 4)
        image = render(subject, torch.eye(3, device=device).expand(count, 3, 3), identity,
                       torch.full((count,), geometry.source_to_detector_mm, device=device),
                       geometry.detector_rows, geometry.detector_cols, n_samples=n_samples,
                       src=sources.float(), tgt=targets.float())
        out.append(image[:, 0])
    return torch.cat(out).float()
