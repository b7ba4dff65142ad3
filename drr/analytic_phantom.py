"""A chest-like phantom of ellipsoids: voxelised on a CT's grid, and its exact DRR.

Accuracy judge for the projectors at realistic size (bench_speed): the truth is
the analytic line integral through the ellipsoids (densities add where they
overlap), optionally averaged over each detector pixel with sub x sub rays;
every projector sees the same voxelised volume, so the gap between projectors'
errors is theirs, not the voxelisation's.

Voxelisation is partial-volume: a voxel's filled fraction is 0.5 + d / w, clipped
to [0, 1], with d the signed distance of its centre to the surface and w the
voxel's width along the surface normal (sum |n_i| * spacing_i): the box-filtered
surface, exact for a plane, so the volume is what a CT with that grid would see
of smooth organs, not a staircase.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attenuation import WATER_MU_PER_MM
from .geometry import Geometry, pixel_centres, view_frames


@dataclass(frozen=True)
class Blob:
    """Ellipsoid: centre and semi-axes (mm, relative to the volume centre), turn about z, added mu per mm."""

    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    mu_per_mm: float
    turn_deg: float = 0.0

    def rotation(self) -> np.ndarray:
        """(3, 3) local -> world."""
        a = np.radians(self.turn_deg)
        return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


WATER = WATER_MU_PER_MM
# Body, lungs (air-like: water minus 80 %), heart, spine, sternum, ribs cut as
# short bars, and small nodules that a pixel barely resolves. All final densities stay
# within the HU window [-800, 1000] where the HU -> mu map is linear.
CHEST_BLOBS = (
    Blob((0.0, 0.0, 0.0), (150.0, 105.0, 150.0), WATER),
    Blob((-62.0, 5.0, 15.0), (48.0, 62.0, 105.0), -0.75 * WATER, 8.0),
    Blob((64.0, 5.0, 15.0), (45.0, 60.0, 100.0), -0.75 * WATER, -6.0),
    Blob((12.0, -28.0, -25.0), (42.0, 35.0, 45.0), 0.05 * WATER, 25.0),
    Blob((0.0, 72.0, 0.0), (14.0, 14.0, 160.0), 0.9 * WATER),
    Blob((0.0, -96.0, 10.0), (9.0, 5.0, 80.0), 0.8 * WATER),
    *(Blob((side * 110.0, 20.0 * k - 40.0, z), (30.0, 3.5, 5.0), 0.9 * WATER, side * (25.0 + 6 * k))
      for side in (-1, 1) for k in range(4) for z in (-90.0, -30.0, 30.0, 90.0)),
    Blob((-55.0, -20.0, 60.0), (4.0, 4.0, 4.0), 0.7 * WATER),
    Blob((50.0, 30.0, -40.0), (2.5, 2.5, 2.5), 0.7 * WATER),
    Blob((70.0, -15.0, 70.0), (6.0, 3.0, 8.0), 0.7 * WATER, 40.0),
)


def voxelise(blobs, shape_zyx, spacing_xyz, centre_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(Z, Y, X) float32 mu per mm of the blobs on an axis-aligned grid centred at `centre_mm`."""
    spacing = np.asarray(spacing_xyz, dtype=np.float64)
    axes = [(np.arange(n) - (n - 1) / 2) * s + c for n, s, c in zip(shape_zyx[::-1], spacing, centre_mm)]
    mu = np.zeros(shape_zyx, dtype=np.float32)
    for blob in blobs:
        box = _bounding_slices(blob, axes, spacing, centre_mm)
        if box is None:
            continue
        x, y, z = np.meshgrid(axes[0][box[2]], axes[1][box[1]], axes[2][box[0]], indexing="xy")
        points = np.stack([x.transpose(2, 0, 1), y.transpose(2, 0, 1), z.transpose(2, 0, 1)], axis=-1)
        mu[box] += blob.mu_per_mm * _filled_fraction(blob, points - np.add(blob.centre_mm, centre_mm), spacing)
    return mu


def _bounding_slices(blob: Blob, axes, spacing, centre_mm):
    """(z, y, x) slices of the voxels within one voxel of the blob's bounding box, or None."""
    reach = np.abs(blob.rotation()) @ np.asarray(blob.semi_axes_mm) + spacing
    centre = np.add(blob.centre_mm, centre_mm)
    slices = []
    for axis in (2, 1, 0):
        inside = np.nonzero(np.abs(axes[axis] - centre[axis]) <= reach[axis])[0]
        if inside.size == 0:
            return None
        slices.append(slice(inside[0], inside[-1] + 1))
    return tuple(slices)


def _filled_fraction(blob: Blob, offsets_mm: np.ndarray, spacing) -> np.ndarray:
    """(..., 3) offsets from the blob centre -> (...) filled fraction of each voxel."""
    local = offsets_mm @ blob.rotation()  # world -> local: R^T p, row vectors
    semi = np.asarray(blob.semi_axes_mm)
    rho = np.sqrt(((local / semi) ** 2).sum(-1))
    gradient_local = local / semi ** 2
    gradient = gradient_local @ blob.rotation().T  # back to world axes for the voxel width
    norm = np.maximum(np.linalg.norm(gradient, axis=-1), 1e-12)
    distance_mm = (1 - rho) * rho / norm  # first-order signed distance (inside positive)
    width_mm = (np.abs(gradient) / norm[..., None]) @ spacing
    return np.clip(0.5 + distance_mm / width_mm, 0.0, 1.0).astype(np.float32)


def analytic_drr(blobs, geometry: Geometry, centre_mm=(0.0, 0.0, 0.0), sub: int = 1) -> np.ndarray:
    """(V, H, W) exact line integrals through the blobs; sub > 1 averages sub x sub rays per pixel."""
    frames = view_frames(geometry)
    source = frames["source"].numpy()[:, None, None, :]
    pixels = pixel_centres(frames).numpy()
    col_mm = geometry.detector_width_mm / geometry.detector_cols
    row_mm = geometry.detector_height_mm / geometry.detector_rows
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    total = np.zeros(pixels.shape[:3])
    for du in offsets:
        for dv in offsets:
            shifted = (pixels + du * col_mm * frames["col_axis"].numpy()[:, None, None, :]
                       + dv * row_mm * frames["row_axis"].numpy()[:, None, None, :])
            total += sum(_chord_integral(blob, source - np.add(blob.centre_mm, centre_mm),
                                         shifted - np.add(blob.centre_mm, centre_mm)) for blob in blobs)
    return (total / sub ** 2).astype(np.float32)


def _chord_integral(blob: Blob, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """mu x chord length of the segments start -> end (..., 3) through the blob centred at 0."""
    semi = np.asarray(blob.semi_axes_mm)
    p = (start @ blob.rotation()) / semi
    d = ((end - start) @ blob.rotation()) / semi
    a = (d ** 2).sum(-1)
    b = 2 * (p * d).sum(-1)
    c = (p ** 2).sum(-1) - 1
    root = np.sqrt(np.clip(b ** 2 - 4 * a * c, 0, None))
    t_in = np.clip((-b - root) / (2 * a), 0, 1)
    t_out = np.clip((-b + root) / (2 * a), 0, 1)
    return blob.mu_per_mm * (t_out - t_in) * np.linalg.norm(end - start, axis=-1)
