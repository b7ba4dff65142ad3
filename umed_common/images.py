"""8-bit image conventions of the paper: min-max normalisation and grayscale IO."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path
from .errors import UserError


def minmax_to_uint8(image: np.ndarray) -> np.ndarray:
    """y' = (y - min y) / (max y - min y) * 255 (REFERENCE 1), rounded to uint8.

    A constant image maps to zeros rather than dividing by zero.
    """
    image = np.asarray(image, dtype=np.float64)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round((image - low) / (high - low) * 255.0).astype(np.uint8)


def read_gray(path: str | Path) -> np.ndarray:
    """Read an 8-bit grayscale image (RGB/RGBA converted by luminance); (H, W) uint8."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not a readable image ({err.__class__.__name__})") from None


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a (H, W) uint8 array as PNG atomically."""
    if image.dtype != np.uint8:
        raise ValueError("write_png expects uint8")
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
