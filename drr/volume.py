"""The `Volume` every reader returns, its checks, and its SimpleITK view.

A `Volume` is HU on a (Z, Y, X) grid plus the index -> world (LPS, mm) map:
world = origin + direction @ (index_xyz * spacing_xyz). Direction cosines are
kept as read; `drr.orientation` turns them into what a projector needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from umed_common.errors import UserError


@dataclass
class Volume:
    """hu: (Z, Y, X) float32 HU; spacing/origin in x, y, z order (mm); direction (3, 3)
    whose columns are the world directions of the index axes x, y, z."""

    hu: np.ndarray
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    source: str = ""
    sad_mm: float | None = None
    sid_mm: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.hu.shape
        return (x, y, z)

    def index_to_world(self) -> np.ndarray:
        """(4, 4) affine from (x, y, z) voxel index to world mm."""
        affine = np.eye(4)
        affine[:3, :3] = np.asarray(self.direction) @ np.diag(self.spacing_xyz)
        affine[:3, 3] = self.origin_xyz
        return affine

    def centre_mm(self) -> tuple[float, float, float]:
        """Isocentre convention of MedNeRF: the world position of index (size - 1) / 2.

        The midpoint of the first and last voxel centres, so it does not depend on
        the order or sign of the voxel axes.
        """
        half = (np.array(self.shape_xyz) - 1) / 2.0
        return tuple(float(v) for v in self.index_to_world() @ np.append(half, 1.0))[:3]


def check_volume(volume: Volume) -> Volume:
    """Reject volumes that cannot give a DRR; NaN voxels become air with a warning."""
    name = volume.source
    if min(volume.hu.shape) < 2:
        raise UserError(f"{name}: shape {volume.shape_xyz} is not a 3D volume (a 2D image?)")
    if min(volume.spacing_xyz) <= 0:
        raise UserError(f"{name}: non-positive voxel spacing {volume.spacing_xyz}")
    _check_direction(volume)
    low, high = float(volume.hu.min()), float(volume.hu.max())
    if not (np.isfinite(low) and np.isfinite(high)):  # NaN and inf show in the extremes: one pass when none
        finite = np.isfinite(volume.hu)
        if not finite.any():
            raise UserError(f"{name}: contains no finite values (all NaN/inf)")
        volume.hu = np.where(finite, volume.hu, -1000.0).astype(np.float32)
        volume.warnings.append(f"{int((~finite).sum())} non-finite voxels treated as air")
        low, high = float(volume.hu.min()), float(volume.hu.max())
    if low == high:
        raise UserError(f"{name}: constant volume (every voxel is {low:g}), nothing to project")
    return volume


def _check_direction(volume: Volume) -> None:
    """Direction columns must be unit vectors spanning 3D; a sheared grid (gantry tilt)
    is allowed, a flat or degenerate one has no DRR."""
    direction = np.asarray(volume.direction, dtype=np.float64)
    if direction.shape != (3, 3) or not np.isfinite(direction).all():
        raise UserError(f"{volume.source}: direction cosines are not a finite 3x3 matrix")
    # 1e-3: header round-off (float32 NIfTI, 6-digit DICOM strings) is far below it;
    # |det| 0.1: axes at least ~6 deg from coplanar (a 60 deg gantry tilt has 0.5).
    if not np.allclose(np.linalg.norm(direction, axis=0), 1.0, atol=1e-3) or abs(np.linalg.det(direction)) < 0.1:
        raise UserError(f"{volume.source}: direction cosines {np.round(direction, 4).tolist()} "
                        "are not unit vectors spanning 3D")


def from_sitk(image: sitk.Image, source: str = "") -> Volume:
    """A 3D scalar SimpleITK image as a Volume (HU as float32), direction as stored."""
    hu = sitk.GetArrayViewFromImage(image).astype(np.float32)  # one copy, out of the image's buffer
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Volume(hu, tuple(image.GetSpacing()), tuple(image.GetOrigin()), direction, source)


def to_sitk(volume: Volume) -> sitk.Image:
    """The volume as a float32 SimpleITK image with the same index -> world map."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.hu, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in volume.spacing_xyz))
    image.SetOrigin(tuple(float(o) for o in volume.origin_xyz))
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    return image
