"""Find and load CT volumes: NIfTI, MetaImage, NRRD (SimpleITK) and DICOM series.

Every reader returns a `drr.volume.Volume` with the direction cosines as the
file states them; `drr.orientation` is the one place that handles them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from umed_common.errors import UserError

from . import dicom_io
from .volume import Volume, check_volume, from_sitk
from .volume_truncation import NiftiVoxels, check_complete

# Public here too, as before the split (documented; older scripts import them from here).
from .dicom_io import write_dicom_series  # noqa: F401
from .orientation import axis_aligned  # noqa: F401
from .volume import to_sitk  # noqa: F401

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
# Data files that belong to a header we already list (MetaImage, NRRD detached).
COMPANION_SUFFIXES = (".raw", ".zraw", ".raw.gz")


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
    """NIfTI / MetaImage / NRRD through SimpleITK (it applies NIfTI scaling), after checking that the
    file holds every voxel its header announces (drr.volume_truncation)."""
    path = Path(path)
    decompressed = check_complete(path)  # a cut-short file is refused, never read as zeros
    if decompressed is not None and (volume := _from_checked_nifti(path, decompressed)) is not None:
        return volume
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise UserError(f"{path}: cannot read volume ({_reason(err)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise UserError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel, "
                        "expected a scalar CT volume")
    if image.GetDimension() != 3:
        raise UserError(f"{path}: is a {image.GetDimension()}D image, expected a 3D volume")
    return from_sitk(image, str(path))


def _reason(err: RuntimeError) -> str:
    return str(err).strip().splitlines()[-1][:160] if str(err).strip() else "unreadable"


def _from_checked_nifti(path: Path, decompressed: NiftiVoxels) -> Volume | None:
    """The .nii.gz's voxels as the truncation check decompressed them, the index -> world map as
    SimpleITK reads the header: the Volume sitk.ReadImage gives, without decompressing the file a
    second time. None (the caller reads the file with SimpleITK) when ITK sees another shape."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    voxels = decompressed.voxels
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or tuple(reader.GetSize()) != voxels.shape[::-1]:
        return None
    direction = np.array(reader.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Volume(_scaled_as_itk(voxels, decompressed.slope, decompressed.intercept), tuple(reader.GetSpacing()),
                  tuple(reader.GetOrigin()), direction, str(path))


def _scaled_as_itk(voxels: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """float32 voxels * slope + intercept as ITK computes them (in double, then cast)."""
    if slope == 1.0 and intercept == 0.0:
        return voxels.astype(np.float32)
    if (slope == 1.0 and intercept.is_integer() and abs(intercept) <= 2 ** 16 and voxels.dtype.kind in "iu"
            and voxels.dtype.itemsize <= 2):
        # small integers plus an integer offset (CT's -1024) are exact in float32: same result, half the traffic
        hu = voxels.astype(np.float32)
        hu += np.float32(intercept)
        return hu
    return (voxels * np.float64(slope) + np.float64(intercept)).astype(np.float32)
