"""Grayscale image IO in the paper's 8-bit convention (16-bit read in full, then min-max normalised)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path
from .errors import UserError
from .measures import minmax_to_uint8


def _is_high_depth(mode: str) -> bool:
    """PIL modes with more than 8 bits per pixel: 16-bit (I;16*), 32-bit integer (I) and float (F)."""
    return mode.startswith("I;16") or mode in ("I", "F")


def read_gray(path: str | Path) -> np.ndarray:
    """Read a grayscale image as (H, W) uint8; RGB/RGBA are converted by luminance.

    An image of more than 8 bits (16-bit PNG/TIFF, 32-bit) is read at its full depth and
    min-max scaled to 0..255 (REFERENCE 1, as DICOM inputs): PIL's convert("L") would
    clip every value above 255 to white.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            if not _is_high_depth(img.mode):
                return np.asarray(img.convert("L"), dtype=np.uint8)
            pixels = np.asarray(img).astype(np.float64)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    if pixels.ndim != 2 or not np.isfinite(pixels).all():
        raise UserError(f"{path}: {'non-finite pixel values' if pixels.ndim == 2 else 'not a 2-D image'}")
    return minmax_to_uint8(pixels)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a (H, W) uint8 array as PNG atomically."""
    if image.dtype != np.uint8:
        raise ValueError("write_png expects uint8")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
