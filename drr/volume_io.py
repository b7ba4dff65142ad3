"""Find and load CT volumes: NIfTI, MetaImage, NRRD (SimpleITK) and DICOM series.

A `Volume` is HU on a (Z, Y, X) grid plus the index -> world (LPS, mm) map:
world = origin + direction @ (index_xyz * spacing_xyz). Direction cosines are
kept: the projectors honour them (Plastimatch ignores them).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from umed_common.errors import UserError

from . import dicom_io
from .dicom_io import write_dicom_series  # noqa: F401  (public here too, as documented)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
# Data files that belong to a header we already list (MetaImage, NRRD detached).
COMPANION_SUFFIXES = (".raw", ".zraw", ".raw.gz")


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
        """Isocentre convention of MedNeRF: origin + (size - 1) / 2 * spacing (along the axes)."""
        half = (np.array(self.shape_xyz) - 1) / 2.0
        return tuple(float(v) for v in self.index_to_world() @ np.append(half, 1.0))[:3]


@dataclass(frozen=True)
class CaseSource:
    """One case to project: a volume file or the files of one DICOM series."""

    case_id: str
    paths: tuple[Path, ...]
    kind: str  # "file" or "dicom"


def _volume_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def _stem(path: Path) -> str:
    suffix = _volume_suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def discover_cases(root: str | Path) -> tuple[list[CaseSource], list[tuple[str, str]]]:
    """Cases under `root` (a file or a folder searched recursively), plus problems.

    Problems are (file, reason) pairs for files that look like volumes but cannot
    be used (e.g. an unreadable DICOM header); files of other kinds are ignored.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such file or folder")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    if root.is_dir() and not files:
        raise UserError(f"{root}: folder is empty")
    cases, dicom_files = [], []
    for path in files:
        if path.name.startswith("."):
            continue
        if _volume_suffix(path):
            cases.append(CaseSource(_file_case_id(root, path), (path,), "file"))
        elif dicom_io.looks_like_dicom(path):
            dicom_files.append(path)
    series, problems = dicom_io.group_series(dicom_files)
    for folder_key, paths in series:
        cases.append(CaseSource(_series_case_id(root, paths[0].parent, folder_key), tuple(paths), "dicom"))
    if not cases and not problems:
        raise UserError(f"{root}: no CT volumes found (looked for DICOM series and "
                        f"{', '.join(VOLUME_SUFFIXES)})")
    return _unique_ids(cases), [(str(p), r) for p, r in problems]


def _file_case_id(root: Path, path: Path) -> str:
    """Case id from the path below `root`, so same-named files in different folders differ."""
    parts = path.relative_to(root).parent.parts if root.is_dir() else ()
    return "_".join([*parts, _stem(path)])


def _series_case_id(root: Path, folder: Path, series_key: str) -> str:
    parts = list(folder.relative_to(root).parts) if root.is_dir() else []
    parts = parts or [folder.name]
    return "_".join([*parts, series_key] if series_key else parts)


def _unique_ids(cases: list[CaseSource]) -> list[CaseSource]:
    seen: dict[str, int] = {}
    out = []
    for case in cases:
        count = seen.get(case.case_id, 0)
        seen[case.case_id] = count + 1
        out.append(case if count == 0 else replace(case, case_id=f"{case.case_id}_{count + 1}"))
    return out


def load_case(case: CaseSource) -> Volume:
    """Load and check one case; UserError naming the file and the reason otherwise."""
    volume = dicom_io.read_series(case.paths) if case.kind == "dicom" else read_volume_file(case.paths[0])
    return check_volume(volume)


def read_volume_file(path: str | Path) -> Volume:
    """NIfTI / MetaImage / NRRD through SimpleITK (it applies NIfTI scaling)."""
    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1][:160] if str(err).strip() else "unreadable"
        raise UserError(f"{path}: cannot read volume ({reason})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise UserError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel, "
                        "expected a scalar CT volume")
    if image.GetDimension() != 3:
        raise UserError(f"{path}: is a {image.GetDimension()}D image, expected a 3D volume")
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Volume(hu, tuple(image.GetSpacing()), tuple(image.GetOrigin()), direction, str(path))


def check_volume(volume: Volume) -> Volume:
    """Reject volumes that cannot give a DRR; NaN voxels become air with a warning."""
    name = volume.source
    if min(volume.hu.shape) < 2:
        raise UserError(f"{name}: shape {volume.shape_xyz} is not a 3D volume (a 2D image?)")
    if min(volume.spacing_xyz) <= 0:
        raise UserError(f"{name}: non-positive voxel spacing {volume.spacing_xyz}")
    finite = np.isfinite(volume.hu)
    if not finite.any():
        raise UserError(f"{name}: contains no finite values (all NaN/inf)")
    if not finite.all():
        volume.hu = np.where(finite, volume.hu, -1000.0).astype(np.float32)
        volume.warnings.append(f"{int((~finite).sum())} non-finite voxels treated as air")
    low, high = float(volume.hu.min()), float(volume.hu.max())
    if low == high:
        raise UserError(f"{name}: constant volume (every voxel is {low:g}), nothing to project")
    return volume


def axis_aligned(volume: Volume) -> Volume:
    """Same volume with identity direction, by exact axis flips/permutations.

    Only for direction matrices that are signed permutations (every common CT
    orientation: LPS, RAS, LAS, ...); oblique volumes are resampled linearly.
    """
    direction = np.asarray(volume.direction)
    rounded = np.round(direction)
    if not np.allclose(direction, rounded, atol=1e-5) or abs(abs(np.linalg.det(rounded)) - 1) > 1e-6:
        return _resample_axis_aligned(volume)
    world_axis_of_index = np.argmax(np.abs(rounded), axis=0)  # index axis i -> world axis
    hu_xyz = np.transpose(volume.hu, (2, 1, 0))
    order = np.argsort(world_axis_of_index)  # index axis that maps to world x, y, z
    hu_xyz = np.transpose(hu_xyz, order)
    spacing = np.array(volume.spacing_xyz)[order]
    signs = rounded[np.arange(3), world_axis_of_index[order]]
    shape = np.array(hu_xyz.shape)
    origin = np.array(volume.origin_xyz, dtype=np.float64)
    for axis in range(3):
        if signs[axis] < 0:
            hu_xyz = np.flip(hu_xyz, axis)
            origin[axis] -= (shape[axis] - 1) * spacing[axis]
    hu = np.ascontiguousarray(np.transpose(hu_xyz, (2, 1, 0)))
    return replace(volume, hu=hu, spacing_xyz=tuple(float(s) for s in spacing),
                   origin_xyz=tuple(float(o) for o in origin), direction=np.eye(3))


def _resample_axis_aligned(volume: Volume) -> Volume:
    image = to_sitk(volume)
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
               for corner in np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in volume.shape_xyz])).reshape(3, -1).T]
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    step = min(volume.spacing_xyz)
    size = [int(np.ceil((h - lo) / step)) for lo, h in zip(low, high)]
    out = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, tuple(low + step / 2),
                        (step,) * 3, tuple(np.eye(3).ravel()), -1000.0, sitk.sitkFloat32)
    result = replace(volume, hu=sitk.GetArrayFromImage(out), spacing_xyz=(step,) * 3,
                     origin_xyz=tuple(out.GetOrigin()), direction=np.eye(3))
    result.warnings = [*volume.warnings, "oblique volume resampled (linear) onto an axis-aligned grid"]
    return result


def to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.hu, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in volume.spacing_xyz))
    image.SetOrigin(tuple(float(o) for o in volume.origin_xyz))
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    return image
