"""Voxel-axis orientation, handled once for every reader and projector.

Readers keep the index -> world map as the file states it (any order and sign
of the voxel axes, oblique or sheared direction cosines). The exact and
trilinear projectors trace rays in index space of any affine and need nothing
from here. The fast projector needs an axis-aligned grid (identity direction):

- when the direction is a signed permutation (LPS, RAS, PIR, ... : the 48
  orders and signs of the axes) the array is transposed and flipped and the
  affine follows: the same voxels, exactly, nothing resampled;
- otherwise (gantry tilt, rotated reformats) the volume is resampled linearly
  onto an axis-aligned grid with the same centre. The pipeline resamples mu, not
  HU: interpolating HU across the -800 HU air threshold would move tissue edges.

`Alignment` says which of the two happened; the case record stores it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from .volume import Volume

# Direction cosines within this of 0 or +-1 are taken as exact: header round-off (float32
# NIfTI, decimal DICOM strings) is ~1e-6 or less; 1e-5 rad moves a voxel 0.005 mm at 500 mm.
AXIS_TOLERANCE = 1e-5
# LPS world: +x left, +y posterior, +z superior (letters name where an index axis runs).
_TOWARD = ({1: "L", -1: "R"}, {1: "P", -1: "A"}, {1: "S", -1: "I"})


@dataclass(frozen=True)
class Alignment:
    """How a volume was made axis-aligned: method 'none', 'permuted' or 'resampled'."""

    method: str
    axes_before: str  # e.g. 'PIR', or 'oblique'
    detail: str

    def record(self) -> str:
        """One line for the case record (JSON and manifest)."""
        return f"{self.method}: {self.detail}"


def signed_permutation(direction) -> tuple[np.ndarray, np.ndarray] | None:
    """For a (3, 3) direction whose columns are +-unit world axes: (index axis per world
    axis (3,), its sign (3,)); None for any other (oblique, sheared) direction."""
    direction = np.asarray(direction, dtype=np.float64)
    rounded = np.round(direction)
    if not np.allclose(direction, rounded, atol=AXIS_TOLERANCE):
        return None
    magnitude = np.abs(rounded)
    if not ((magnitude.sum(0) == 1).all() and (magnitude.sum(1) == 1).all()):
        return None
    index_axis = np.argmax(magnitude, axis=1)  # row w: the one column with a +-1
    return index_axis, rounded[np.arange(3), index_axis]


def axes_code(direction) -> str:
    """Where the index axes x, y, z run in LPS letters ('LPS', 'PIR', ...), or 'oblique'."""
    permutation = signed_permutation(direction)
    if permutation is None:
        return "oblique"
    index_axis, signs = permutation
    letters = [""] * 3
    for world, (axis, sign) in enumerate(zip(index_axis, signs)):
        letters[axis] = _TOWARD[world][int(sign)]
    return "".join(letters)


def axis_aligned_view(values_zyx, index_to_world, copy: bool = True):
    """Same samples on an identity-direction grid, by transposes and flips only.

    values_zyx: (Z, Y, X) numpy array or torch tensor; index_to_world (4, 4) whose
    direction is a signed permutation. Returns (values (Z', Y', X') contiguous, of the
    same type, and its (4, 4) affine diag(spacing') + origin'). ValueError if oblique.
    copy=False (numpy only): a strided view instead, for a caller whose next pass over
    the values writes a new array anyway.
    """
    affine = np.asarray(index_to_world, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    permutation = signed_permutation(affine[:3, :3] / spacing)
    if permutation is None:
        raise ValueError("direction is not a signed permutation: resample instead (orientation.align_volume)")
    index_axis, signs = permutation
    # Array axes are (z, y, x): index axis i is array axis 2 - i.
    array_order = [2 - int(index_axis[world]) for world in (2, 1, 0)]
    flipped = [position for position, world in enumerate((2, 1, 0)) if signs[world] < 0]
    shape_xyz = np.array(values_zyx.shape[::-1])
    first_voxel = np.zeros(3)  # old index of the new first voxel: last along flipped axes
    for world in range(3):
        if signs[world] < 0:
            first_voxel[index_axis[world]] = shape_xyz[index_axis[world]] - 1
    aligned = np.diag([*spacing[index_axis], 1.0])
    aligned[:3, 3] = (affine @ np.append(first_voxel, 1.0))[:3]
    return _transpose_flip(values_zyx, array_order, flipped, copy), aligned


def _is_tensor(values) -> bool:
    """A torch tensor? Asked without importing torch: the readers use this module, and torch's
    import waits until the projector needs it (drr.pipeline says why); no tensor exists before."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(values, torch.Tensor)


def _transpose_flip(values, order: list[int], flipped: list[int], copy: bool = True):
    """Contiguous copy of `values` with axes reordered, then `flipped` axes reversed
    (numpy with copy=False: a view)."""
    if _is_tensor(values):
        out = values.permute(*order)
        return (out.flip(flipped) if flipped else out).contiguous()
    out = np.transpose(values, order)
    out = np.flip(out, flipped) if flipped else out
    return np.ascontiguousarray(out) if copy else out


def align_to_axes(values_zyx, index_to_world, outside_value: float = 0.0, copy: bool = True):
    """(Z, Y, X) values (numpy or torch) and (4, 4) affine -> the same on an identity-direction
    grid, and the Alignment that says how (see module doc). copy=False: a transpose/flip of
    numpy values comes back as a view (axis_aligned_view); a resampled grid is always new.

    outside_value fills what a resampled grid covers beyond the volume (0 for mu, -1000
    for HU). Resampling runs on the CPU; a tensor comes back on its own device.
    """
    affine = np.asarray(index_to_world, dtype=np.float64)
    code = axes_code(_direction(affine))
    if code == "LPS":
        return values_zyx, affine, Alignment("none", code, "voxel axes already LPS")
    if code != "oblique":
        values, aligned = axis_aligned_view(values_zyx, affine, copy)
        return values, aligned, Alignment("permuted", code, f"voxel axes {code} -> LPS by exact transpose/flip")
    return _resample_axis_aligned(values_zyx, affine, outside_value)


def traced_as_read(index_to_world) -> Alignment:
    """The note for projectors that trace rays in the volume's own index space."""
    code = axes_code(_direction(np.asarray(index_to_world, dtype=np.float64)))
    return Alignment("none", code, f"voxel axes {code}: rays traced in the volume's own index space")


def _direction(affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)


def _resample_axis_aligned(values_zyx, affine: np.ndarray, outside_value: float):
    """Linear resampling onto an identity-direction grid that covers the volume, centred on
    its centre (so the isocentre does not move).

    The step is the smallest voxel side on every axis: keeping a tilted 2.5 mm slice axis
    at 2.5 mm adds the interpolation blur of the thick axis to every view (worst-view
    error against analytic integrals 0.95 % against 0.72 %, tests/drr/test_orientation.py),
    at the price of more slices to project.
    """
    is_tensor = _is_tensor(values_zyx)
    array = values_zyx.detach().cpu().numpy() if is_tensor else np.asarray(values_zyx)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    shape_xyz = np.array(array.shape[::-1])
    steps = np.full(3, spacing.min())
    corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape_xyz])).reshape(3, -1)
    world = affine[:3, :3] @ corners
    size = [int(np.ceil(e - 1e-6)) for e in (world.max(axis=1) - world.min(axis=1)) / steps]
    centre = affine @ np.append((shape_xyz - 1) / 2.0, 1.0)
    origin = centre[:3] - (np.array(size) - 1) / 2.0 * steps
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(tuple(spacing))
    image.SetOrigin(tuple(affine[:3, 3]))
    image.SetDirection(tuple(_direction(affine).ravel()))
    resampled = sitk.GetArrayFromImage(sitk.Resample(
        image, size, sitk.Transform(), sitk.sitkLinear, tuple(origin), tuple(steps),
        tuple(np.eye(3).ravel()), float(outside_value), sitk.sitkFloat32))
    aligned = np.diag([*steps, 1.0])
    aligned[:3, 3] = origin
    if is_tensor:
        import torch  # imported already: a tensor came in
        resampled = torch.from_numpy(resampled).to(values_zyx.device)
    note = (f"oblique direction (up to {_largest_tilt_deg(_direction(affine)):.1f} deg off the axes) "
            f"resampled linearly onto an axis-aligned grid {'x'.join(map(str, size))} of "
            f"{'x'.join(f'{s:.4g}' for s in steps)} mm")
    return resampled, aligned, Alignment("resampled", "oblique", note)


def _largest_tilt_deg(direction) -> float:
    """Largest angle between an index axis and the world axis nearest to it."""
    cosines = np.abs(np.asarray(direction, dtype=np.float64)).max(axis=0)
    return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())


def align_volume(volume: Volume) -> tuple[Volume, Alignment]:
    """The HU volume on an identity-direction grid (air outside), and how it got there."""
    hu, affine, alignment = align_to_axes(volume.hu, volume.index_to_world(), outside_value=-1000.0)
    if alignment.method == "none":
        return volume, alignment
    aligned = replace(volume, hu=hu, spacing_xyz=tuple(float(s) for s in np.diag(affine)[:3]),
                      origin_xyz=tuple(float(o) for o in affine[:3, 3]), direction=np.eye(3))
    if alignment.method == "resampled":
        aligned.warnings = [*volume.warnings, "oblique volume resampled (linear) onto an axis-aligned grid"]
    return aligned, alignment


def axis_aligned(volume: Volume) -> Volume:
    """align_volume without the note (for callers that only need the volume)."""
    return align_volume(volume)[0]
