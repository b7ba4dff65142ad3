"""DICOM CT series: find, group by SeriesInstanceUID, check, load; and write (tests, phantoms).

pydicom is imported by the functions that read or write DICOM, not at the top: importing it
takes ~0.1 s, which this module (drr.volume_io imports it for every run) should not add to a
run on other files. (nibabel, which imports pydicom whenever it is installed, is not imported
either: drr.nifti_header reads the NIfTI fields the truncation check needs.)
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from umed_common.errors import UserError
from umed_common.interrupts import check_stop

from .volume import Volume

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def looks_like_dicom(path: Path) -> bool:
    """DICOM by extension, or by the 'DICM' magic after the 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _short_reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else err.__class__.__name__)[:160]


def group_series(files: list[Path]):
    """Group image files by SeriesInstanceUID.

    Returns ([(series_key, sorted paths)], [(path, reason)]); series_key is ''
    when the folder holds one series, else a short id telling series apart.
    Non-image DICOM objects (reports, structure sets) are skipped quietly.
    """
    if not files:
        return [], []  # no DICOM among the files found: pydicom is not even imported
    import pydicom
    by_uid: dict[str, list[Path]] = defaultdict(list)
    problems = []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as err:  # pydicom raises many types for corrupt input
            problems.append((path, f"not a readable DICOM file ({_short_reason(err)})"))
            continue
        if "Rows" not in header:
            continue
        by_uid[str(header.get("SeriesInstanceUID", f"no-uid:{path.parent}"))].append(path)
    uids_per_folder: dict[Path, int] = defaultdict(int)
    for paths in by_uid.values():
        uids_per_folder[paths[0].parent] += 1
    series = []
    for number, (uid, paths) in enumerate(sorted(by_uid.items(), key=lambda item: str(item[1][0]))):
        shared = uids_per_folder[paths[0].parent] > 1
        series.append((f"series{number + 1}_{uid.replace('.', '')[-6:]}" if shared else "", sorted(paths)))
    return series, problems


def _slice_axes(header) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cosines = np.array([float(v) for v in header.ImageOrientationPatient], dtype=np.float64)
    row_dir, col_dir = cosines[:3], cosines[3:]
    return row_dir, col_dir, np.cross(row_dir, col_dir)


def _sorted_headers(paths):
    import pydicom
    headers = []
    for path in paths:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            _ = header.ImagePositionPatient, header.ImageOrientationPatient, header.PixelSpacing
        except AttributeError as err:
            raise UserError(f"{path}: missing geometry tag ({_short_reason(err)})") from None
        except Exception as err:
            raise UserError(f"{path}: not a readable DICOM file ({_short_reason(err)})") from None
        headers.append((path, header))
    normal = _slice_axes(headers[0][1])[2]
    positions = [float(np.dot(normal, [float(v) for v in h.ImagePositionPatient])) for _, h in headers]
    order = np.argsort(positions)
    return [headers[i] for i in order], np.array(positions)[order]


def _check_spacing(paths, positions: np.ndarray) -> None:
    """UserError for a single slice, a missing slice, a duplicate or uneven spacing (positions along the normal)."""
    folder = Path(paths[0]).parent
    if len(positions) < 2:
        raise UserError(f"{paths[0]}: series has a single slice (a 2D image, not a volume)")
    gaps = np.diff(positions)
    expected = float(np.median(gaps))
    if gaps.min() < 1e-3 * max(expected, 1e-3):
        raise UserError(f"{folder}: two slices at the same position {positions[int(np.argmin(gaps))]:.2f} mm")
    worst = int(np.argmax(gaps))
    if gaps[worst] > 1.5 * expected:
        raise UserError(f"{folder}: missing slice between {positions[worst]:.2f} and "
                        f"{positions[worst + 1]:.2f} mm (gap {gaps[worst]:.2f}, expected {expected:.2f} mm)")
    if gaps.max() - gaps.min() > 0.01 * expected + 1e-3:
        raise UserError(f"{folder}: uneven slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm)")


def _slice_hu(path: Path) -> np.ndarray:
    import pydicom
    check_stop()  # a long series read gives way to Ctrl-C between slices
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array.astype(np.float32)
    except Exception as err:
        raise UserError(f"{path}: cannot decode pixel data ({_short_reason(err)})") from None
    if pixels.ndim != 2:
        raise UserError(f"{path}: pixel data has shape {pixels.shape}, expected one 2D slice")
    slope = float(dataset.get("RescaleSlope", 1.0))
    intercept = float(dataset.get("RescaleIntercept", 0.0))
    return pixels * slope + intercept


def read_series(paths):
    """One series -> Volume (HU with rescale applied, slices sorted along the normal).

    Any slice orientation (axial, sagittal, coronal, oblique) and file order; the
    slice axis is the step between slice positions, so a gantry-tilted series keeps
    its sheared grid (drr.orientation resamples it for the fast projector).
    """
    headers, positions = _sorted_headers(paths)
    sorted_paths = [path for path, _ in headers]
    _check_spacing(sorted_paths, positions)
    first = headers[0][1]
    shapes = {(int(h.Rows), int(h.Columns)) for _, h in headers}
    if len(shapes) > 1:
        raise UserError(f"{sorted_paths[0].parent}: slices of different sizes {sorted(shapes)}")
    row_dir, col_dir, normal = _slice_axes(first)
    slice_axis, slice_mm = _slice_step(headers, normal)
    hu = np.stack([_slice_hu(path) for path in sorted_paths])
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)  # DICOM: (between rows, between columns)
    volume = Volume(hu=hu, spacing_xyz=(col_mm, row_mm, slice_mm),
                    origin_xyz=tuple(float(v) for v in first.ImagePositionPatient),
                    direction=np.stack([row_dir, col_dir, slice_axis], axis=1),
                    source=str(sorted_paths[0].parent))
    volume.sad_mm = _positive(first.get("DistanceSourceToPatient"))
    volume.sid_mm = _positive(first.get("DistanceSourceToDetector"))
    return volume


def _slice_step(headers, normal: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit world direction (3,) and length (mm) of the step from one slice to the next.

    The plane normal unless the slices are offset within their planes (gantry tilt):
    then the true step, which makes the grid sheared.
    """
    first, last = (np.array([float(v) for v in h.ImagePositionPatient]) for _, h in (headers[0], headers[-1]))
    step = (last - first) / (len(headers) - 1)
    along = float(step @ normal)
    # 1e-3 of a slice: far above header round-off (IPP has ~6 decimals), far below a tilt.
    if np.linalg.norm(step - along * normal) <= 1e-3 * abs(along):
        return normal, along
    return step / np.linalg.norm(step), float(np.linalg.norm(step))


def _positive(value) -> float | None:
    try:
        return float(value) if value is not None and float(value) > 0 else None
    except (TypeError, ValueError):
        return None


def write_dicom_series(hu_zyx: np.ndarray, spacing_xyz, origin_xyz, folder, *, series_uid=None,
                       patient_id: str = "ANONYMOUS", direction=None, sad_mm=None, sid_mm=None) -> list[Path]:
    """Write a (Z, Y, X) int16 HU volume as an uncompressed CT series, one file per slice.

    `direction` (3, 3) has the index axes' world directions as columns (identity: LPS).
    Returns the written paths (slice_0000.dcm, ...).
    """
    from pydicom.uid import generate_uid
    hu_zyx = np.asarray(hu_zyx)
    if hu_zyx.dtype != np.int16 or hu_zyx.ndim != 3:
        raise ValueError("write_dicom_series expects a 3D int16 array (Z, Y, X)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    paths = []
    for k, plane in enumerate(hu_zyx):
        position = np.asarray(origin_xyz, dtype=np.float64) + k * spacing_xyz[2] * direction[:, 2]
        dataset = _slice_dataset(plane, spacing_xyz, position, direction, k)
        dataset.PatientID, dataset.PatientName = patient_id, patient_id
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.FrameOfReferenceUID = frame_uid
        if sad_mm:
            dataset.DistanceSourceToPatient = f"{sad_mm:g}"
        if sid_mm:
            dataset.DistanceSourceToDetector = f"{sid_mm:g}"
        path = folder / f"slice_{k:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _slice_dataset(plane: np.ndarray, spacing_xyz, position, direction, index: int) -> Dataset:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "CT"
    dataset.InstanceNumber = index + 1
    dataset.ImagePositionPatient = [f"{v:.6f}" for v in position]
    dataset.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
    dataset.PixelSpacing = [f"{spacing_xyz[1]:.8g}", f"{spacing_xyz[0]:.8g}"]
    dataset.SliceThickness = f"{spacing_xyz[2]:.8g}"
    dataset.Rows, dataset.Columns = plane.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 1
    dataset.RescaleSlope, dataset.RescaleIntercept = "1", "0"
    dataset.PixelData = np.ascontiguousarray(plane, dtype="<i2").tobytes()
    return dataset
