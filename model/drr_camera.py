"""The physical camera: the rays of the DRRs themselves (cone beam, SAD/SID in mm, view k at k * step).

The model's frame is the patient frame of `drr.geometry` with the isocentre at the origin (LPS, mm).
An attenuation volume occupies the axis-aligned box [-box/2, box/2]^3 mm, sampled on a (D, H, W) = (z, y, x)
grid; `grid_sample` coordinates are the box-normalised positions (align_corners=False, so -1/+1 are the
box faces). Images come out in the projector's orientation; the MedNeRF release flips them left-right
(`drr.writer.mednerf_uint8`), which `to_release_orientation` applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from drr.geometry import Geometry, pixel_centres, preset_geometry, view_frames


@dataclass(frozen=True)
class DrrCamera:
    """A DRR geometry at one image size plus the box the attenuation volume fills."""

    geometry: Geometry
    box_mm: float

    @property
    def size(self) -> int:
        return self.geometry.detector_rows

    def at_size(self, size: int) -> "DrrCamera":
        return DrrCamera(replace(self.geometry, detector_rows=size, detector_cols=size), self.box_mm)


def camera_from_preset(preset: str, size: int, box_mm: float, views: int = 72, angle_step_deg: float = 5.0,
                       sad_mm: float | None = None, sid_mm: float | None = None) -> DrrCamera:
    """MedNeRF's recipe (`chest` 500 mm or `knee` 350 mm detector), isocentre at the origin."""
    geometry = preset_geometry(preset, (0.0, 0.0, 0.0), sad_mm=sad_mm, sid_mm=sid_mm, detector_rows=size,
                               detector_cols=size, views=views, angle_step_deg=angle_step_deg)
    return DrrCamera(geometry, box_mm)


def ray_samples(camera: DrrCamera, views, n_samples: int) -> tuple[torch.Tensor, float]:
    """Sample positions along every pixel's ray, box-normalised, and the step between them in mm.

    views: sequence of view indices (V). Returns ((V, H, W, S, 3) float32 in (x, y, z) grid_sample order,
    step_mm). Samples are midpoints of S equal bins over the chord of the box's circumscribed sphere, so every
    ray covers the whole box and one step length serves all rays.
    """
    frames = view_frames(camera.geometry, list(views), dtype=torch.float64)
    pixels = pixel_centres(frames)
    source = frames["source"][:, None, None, :]
    direction = pixels - source
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = camera.box_mm * math.sqrt(3.0) / 2.0
    step = 2.0 * radius / n_samples
    depth = camera.geometry.source_to_isocenter_mm - radius + (torch.arange(n_samples, dtype=torch.float64) + 0.5) * step
    # Each ray is set up in float64, its samples are laid out in float32: the (V, H, W, S, 3) samples are a
    # render's bulk, float64 there cost a 72-view render several seconds, and the float32 result differs from
    # the float64 one rounded by a few ulp.
    half = camera.box_mm / 2.0
    start, direction = (source / half).float(), (direction / half).float()
    return torch.addcmul(start[..., None, :], direction[..., None, :], depth.float()[:, None]), step


def samples_of(volume: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """The volume (D, H, W) at the ray samples (V, H, W, S, 3) from `ray_samples` (trilinear, zero outside the
    box) -> (V, H, W, S)."""
    views, height, width, n, _ = samples.shape
    values = F.grid_sample(volume[None, None], samples.reshape(1, views, height * width, n, 3), mode="bilinear",
                           padding_mode="zeros", align_corners=False)
    return values.reshape(views, height, width, n)


def line_integrals(volume: torch.Tensor, samples: torch.Tensor, step_mm: float) -> torch.Tensor:
    """Line integral of attenuation per pixel (midpoint rule, trilinear volume).

    volume (D, H, W) attenuation per mm >= 0 on the box grid; samples (V, H, W, S, 3) from `ray_samples`.
    Returns (V, H, W) dimensionless integrals (zero outside the box).
    """
    return samples_of(volume, samples).sum(dim=-1) * step_mm


def detector_positions(camera: DrrCamera, view: int, points: torch.Tensor) -> torch.Tensor:
    """Where points project on the detector of one view, in grid_sample coordinates of that image.

    points (..., 3) box-normalised. Returns (..., 2) (column, row) with -1/+1 at the first/last pixel centres
    (align_corners=True). Central projection from the view's source onto its detector plane.
    """
    frames = {k: v.float() for k, v in view_frames(camera.geometry, [view], dtype=torch.float64).items()}
    source, centre = frames["source"][0], frames["detector_centre"][0]
    axis = centre - source
    sid = axis.norm()
    geometry = camera.geometry
    col_unit = geometry.detector_width_mm / geometry.detector_cols * ((geometry.detector_cols - 1) / 2)
    row_unit = geometry.detector_height_mm / geometry.detector_rows * ((geometry.detector_rows - 1) / 2)
    # The hit point h = s + r (SID / (r . a)) with r = x - s; its detector coordinates (h - c) . e are
    # (s - c) . e + (r . e) SID / (r . a): one (3, 3) product per point gives r . a, r . e_col and r . e_row.
    basis = torch.stack([axis / sid, frames["col_axis"][0] / col_unit, frames["row_axis"][0] / row_unit], dim=1)
    offset = (source - centre) @ basis
    along = torch.addmm(-(source @ basis), points.reshape(-1, 3), basis * (camera.box_mm / 2.0))
    return (along[:, 1:] * (sid / along[:, :1]) + offset[1:]).reshape(*points.shape[:-1], 2)


def to_release_orientation(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W) projector orientation <-> MedNeRF release orientation (a left-right flip, its own inverse)."""
    return images.flip(-1)
