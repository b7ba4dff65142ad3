"""The learned density/attenuation of one z on a regular grid, written as NIfTI (--export-volume)."""
from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from umed_common.atomic import atomic_path

from .encoding import positional_encoding
from .generator import Generator


def field_extent(generator: Generator) -> float:
    """Half-width of the cube the cameras see: max radius * tan(fov / 2)."""
    cam = generator.cfg.camera
    return max(cam.radius) * math.tan(math.radians(cam.fov_deg) / 2)


@torch.no_grad()
def density_grid(generator: Generator, z: torch.Tensor, size: int = 64, chunk: int = 65536) -> np.ndarray:
    """(size, size, size) float32 relu(density) at voxel centres of [-e, e]^3, indexed [x, y, z]."""
    extent = field_extent(generator)
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 * extent - extent
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    out = []
    for start in range(0, points.shape[0], chunk):
        block = points[start:start + chunk].to(z.device)
        encoded = positional_encoding(block, generator.cfg.field.pos_freqs)[None, :, None, :]
        raw, _ = generator.field(encoded, None, z)
        out.append(torch.relu(raw).reshape(-1).cpu())
    return torch.cat(out).reshape(size, size, size).numpy().astype(np.float32)


def write_volume_nifti(path: str | Path, volume: np.ndarray, extent: float) -> None:
    """Write (X, Y, Z) with an affine placing voxel centres in model units (origin at the centre)."""
    size = volume.shape[0]
    spacing = 2 * extent / size
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -extent + spacing / 2
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(nib.Nifti1Image(volume, affine), str(tmp))


def write_attenuation_nifti(path: str | Path, attenuation_zyx: np.ndarray, box_mm: float) -> None:
    """(D, H, W) = (z, y, x) mu per mm in the LPS patient frame of the DRR geometry (isocentre at the
    origin), filling a cube of side box_mm -> NIfTI in mm (RAS affine: x and y negated)."""
    depth, height, width = attenuation_zyx.shape
    spacing = np.array([box_mm / width, box_mm / height, box_mm / depth])
    lps_centre_of_first = -box_mm / 2 + spacing / 2
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = lps_centre_of_first * np.array([-1.0, -1.0, 1.0])
    volume = np.ascontiguousarray(np.transpose(attenuation_zyx, (2, 1, 0)).astype(np.float32))
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(nib.Nifti1Image(volume, affine), str(tmp))
