"""Circular cone-beam geometry about the patient's vertical (DICOM z) axis.

Conventions reproduce Plastimatch `drr` (measured against its output, see
tests/drr/test_plastimatch_agreement.py) and hence MedNeRF's release:

- world coordinates are DICOM patient coordinates (LPS, mm);
- at gantry angle theta the source sits at iso + SAD * (cos theta, -sin theta, 0);
  view k is at start + k * step degrees (MedNeRF: 0, 5, ..., 355);
- detector columns run along (sin theta, cos theta, 0) and rows run towards -z
  (feet), so row 0 is the head end; pixel centres are symmetric about the
  detector centre, (n - 1) / 2.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from umed_common.errors import UserError

DEFAULT_SAD_MM = 541.0
DEFAULT_SID_MM = 949.0
PRESET_DETECTOR_MM = {"chest": 500.0, "knee": 350.0}
# Least distance between the source and the volume's box. A source inside the box sees half the
# anatomy behind it, and one grazing it magnifies the nearest voxels without bound: neither is a
# radiograph (issue 13: fast and exact projectors disagreed, NCC 0.62, at --sad-mm 10). A real tube
# sits hundreds of mm away; 10 mm only refuses what no scanner can do.
SOURCE_CLEARANCE_MM = 10.0


@dataclass(frozen=True)
class Geometry:
    """Everything that places source and detector; isocentre in world mm."""

    isocenter_mm: tuple[float, float, float]
    source_to_isocenter_mm: float = DEFAULT_SAD_MM
    source_to_detector_mm: float = DEFAULT_SID_MM
    detector_rows: int = 128
    detector_cols: int = 128
    detector_height_mm: float = 500.0
    detector_width_mm: float = 500.0
    start_angle_deg: float = 0.0
    angle_step_deg: float = 5.0
    views: int = 72

    def __post_init__(self) -> None:
        if not 0 < self.source_to_isocenter_mm < self.source_to_detector_mm:
            raise UserError(f"geometry: need 0 < SAD ({self.source_to_isocenter_mm}) < SID "
                            f"({self.source_to_detector_mm}) mm")
        if min(self.detector_rows, self.detector_cols, self.views) < 1:
            raise UserError("geometry: detector pixels and number of views must be >= 1")
        if min(self.detector_height_mm, self.detector_width_mm) <= 0:
            raise UserError("geometry: detector size must be positive")

    def angles_deg(self) -> list[float]:
        return [self.start_angle_deg + k * self.angle_step_deg for k in range(self.views)]

    def pixel_footprint_at_isocenter_mm(self) -> float:
        """Ray spacing at the isocentre: the finest detail the DRR can resolve."""
        pixel_mm = min(self.detector_height_mm / self.detector_rows,
                       self.detector_width_mm / self.detector_cols)
        return pixel_mm * self.source_to_isocenter_mm / self.source_to_detector_mm

    def to_dict(self) -> dict:
        out = asdict(self)
        out["isocenter_mm"] = list(self.isocenter_mm)
        out["angles_deg"] = self.angles_deg()
        out["conventions"] = ("LPS mm; source = iso + SAD*(cos a, -sin a, 0); columns along "
                              "(sin a, cos a, 0); rows towards -z; pixel centres at (n-1)/2")
        return out

    def with_views(self, views: int, start_angle_deg: float, angle_step_deg: float) -> "Geometry":
        return replace(self, views=views, start_angle_deg=start_angle_deg, angle_step_deg=angle_step_deg)


def preset_geometry(preset: str, isocenter_mm, sad_mm: float | None = None,
                    sid_mm: float | None = None, **overrides) -> Geometry:
    """MedNeRF defaults for `chest` (500 mm detector) or `knee` (350 mm)."""
    if preset not in PRESET_DETECTOR_MM:
        raise UserError(f"--preset {preset}: unknown (choose {', '.join(PRESET_DETECTOR_MM)})")
    size = PRESET_DETECTOR_MM[preset]
    fields = dict(isocenter_mm=tuple(float(v) for v in isocenter_mm),
                  source_to_isocenter_mm=sad_mm or DEFAULT_SAD_MM,
                  source_to_detector_mm=sid_mm or DEFAULT_SID_MM,
                  detector_height_mm=size, detector_width_mm=size)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Geometry(**fields)


def view_frames(geometry: Geometry, view_indices=None, dtype=torch.float64,
                device="cpu") -> dict[str, torch.Tensor]:
    """Source and detector frame per view, in world mm.

    Returns dict with `source` (V, 3), `detector_centre` (V, 3), `col_axis` (V, 3),
    `row_axis` (V, 3), `col_offsets_mm` (W,), `row_offsets_mm` (H,).
    """
    indices = range(geometry.views) if view_indices is None else view_indices
    angles = [math.radians(geometry.start_angle_deg + k * geometry.angle_step_deg) for k in indices]
    theta = torch.tensor(angles, dtype=dtype, device=device)
    iso = torch.tensor(geometry.isocenter_mm, dtype=dtype, device=device)
    towards_source = torch.stack([theta.cos(), -theta.sin(), torch.zeros_like(theta)], dim=1)
    col_axis = torch.stack([theta.sin(), theta.cos(), torch.zeros_like(theta)], dim=1)
    row_axis = torch.tensor([0.0, 0.0, -1.0], dtype=dtype, device=device).expand_as(col_axis)
    sad, sid = geometry.source_to_isocenter_mm, geometry.source_to_detector_mm
    col_mm = geometry.detector_width_mm / geometry.detector_cols
    row_mm = geometry.detector_height_mm / geometry.detector_rows
    cols = torch.arange(geometry.detector_cols, dtype=dtype, device=device)
    rows = torch.arange(geometry.detector_rows, dtype=dtype, device=device)
    return {
        "source": iso + sad * towards_source,
        "detector_centre": iso - (sid - sad) * towards_source,
        "col_axis": col_axis,
        "row_axis": row_axis.contiguous(),
        "col_offsets_mm": (cols - (geometry.detector_cols - 1) / 2) * col_mm,
        "row_offsets_mm": (rows - (geometry.detector_rows - 1) / 2) * row_mm,
    }


def pixel_centres(frames: dict[str, torch.Tensor]) -> torch.Tensor:
    """(V, H, W, 3) world positions of the detector pixel centres."""
    centre = frames["detector_centre"][:, None, None, :]
    cols = frames["col_offsets_mm"][None, None, :, None] * frames["col_axis"][:, None, None, :]
    rows = frames["row_offsets_mm"][None, :, None, None] * frames["row_axis"][:, None, None, :]
    return centre + cols + rows


def check_source_outside(geometry: Geometry, index_to_world, shape_xyz, name: str,
                         clearance_mm: float = SOURCE_CLEARANCE_MM) -> None:
    """UserError (naming `name` and --sad-mm) when a view's source lies in the volume's box grown by
    `clearance_mm` on every face.

    index_to_world (4, 4): voxel index (x, y, z) -> world mm; shape_xyz: voxels per axis. The box is
    the voxels' extent, index -0.5 .. n - 0.5, a parallelepiped for any direction cosines or shear:
    a face's outward distance in mm is its index coordinate over the norm of its row of the inverse.
    """
    affine = np.asarray(index_to_world, dtype=np.float64)
    to_index = np.linalg.inv(affine[:3, :3])  # (3, 3) world mm -> index
    grow = clearance_mm * np.linalg.norm(to_index, axis=1)  # (3,) clearance in index units, per axis
    low, high = -0.5 - grow, np.asarray(shape_xyz, dtype=np.float64) - 0.5 + grow
    frames = view_frames(geometry)
    sources = frames["source"].numpy() - affine[:3, 3]  # (V, 3)
    index = sources @ to_index.T
    inside = np.all((index > low) & (index < high), axis=1)  # (V,)
    if not inside.any():
        return
    first = int(np.argmax(inside))
    centre = (np.asarray(geometry.isocenter_mm) - affine[:3, 3]) @ to_index.T
    towards = (index - centre) / geometry.source_to_isocenter_mm  # (V, 3) index units per mm
    with np.errstate(divide="ignore", invalid="ignore"):
        exits = np.where(towards > 0, (high - centre) / towards,
                         np.where(towards < 0, (low - centre) / towards, np.inf))
    needed = float(exits.min(axis=1).max())  # the isocentre's farthest distance to the grown box
    raise UserError(f"{name}: --sad-mm {geometry.source_to_isocenter_mm:g} puts the X-ray source inside the "
                    f"volume or within {clearance_mm:g} mm of it (view {first}, "
                    f"{geometry.angles_deg()[first]:g} deg); the source must lie outside the volume's box: "
                    f"this volume needs --sad-mm above {math.ceil(needed)}")
