"""Reading the input X-ray: PNG/JPEG (gray or RGB) or DICOM, as (H, W) uint8."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from umed_common.errors import UserError
from umed_common.images import read_gray
from umed_common.measures import minmax_to_uint8


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with path.open("rb") as handle:
        header = handle.read(132)
    return len(header) == 132 and header[128:] == b"DICM"


def read_dicom_gray(path: Path) -> np.ndarray:
    """DICOM pixel data -> (H, W) uint8 after min-max; MONOCHROME1 is inverted so bone is bright."""
    import pydicom
    try:
        dataset = pydicom.dcmread(str(path))
        pixels = dataset.pixel_array.astype(np.float64)
    except Exception as err:  # pydicom raises many types for broken files
        raise UserError(f"{path}: not a readable DICOM image ({type(err).__name__})") from None
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3].mean(axis=-1)
    if pixels.ndim != 2:
        raise UserError(f"{path}: DICOM has {pixels.ndim}-D pixel data, expected one 2-D image")
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return minmax_to_uint8(pixels)


def read_xray(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such X-ray file")
    return read_dicom_gray(path) if _is_dicom(path) else read_gray(path)
