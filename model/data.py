"""DRR folders -> training images.

Two layouts are read: MedNeRF's flat `PP_xrayKKKK.png` (also `01_bbg_xrayKKKK.png`) and the output of
`drr-generate` (one folder per case holding `xrayKKKK.png`, or its `--layout mednerf` flat files
`CASE_xrayKKKK.png`). Patient ids come from the file or folder names, never from a fixed list: a flat
file's id is everything before `_xrayKKKK.png`, less MedNeRF's `_bbg` tag (the only tag its release
uses), so a case id holding underscores (nested folders, DICOM series, `knee_01.nii.gz`) is kept whole.
An image file that fits neither layout is reported (one warning line), never skipped silently.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from umed_common.errors import UserError
from umed_common.images import read_gray

_FLAT = re.compile(r"^(?P<patient>.+?)(?:_bbg)?_xray(?P<view>\d+)\.png$")
_IN_CASE = re.compile(r"^xray(?P<view>\d+)\.png$")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _add(found: dict, patient: str, view: int, path: Path) -> None:
    views = found.setdefault(patient, {})
    if view in views:
        raise UserError(f"{path}: patient {patient} view {view} also in {views[view]}")
    views[view] = path


def discover_drr_images(data_dir: str | Path) -> dict[str, dict[int, Path]]:
    """patient id -> view index -> PNG file, from either layout; UserError when nothing is found.

    Image files that fit neither layout are named in one warning line on stderr.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such data folder")
    found: dict[str, dict[int, Path]] = {}
    skipped: list[Path] = []
    for path in sorted(data_dir.iterdir()):
        match = _FLAT.match(path.name)
        if match and path.is_file():
            _add(found, match["patient"], int(match["view"]), path)
        elif path.is_dir():
            for inner in sorted(path.iterdir()):
                inner_match = _IN_CASE.match(inner.name)
                if inner_match and inner.is_file():
                    _add(found, path.name, int(inner_match["view"]), inner)
                elif _is_image(inner):
                    skipped.append(inner)
        elif _is_image(path):
            skipped.append(path)
    if not found:
        raise UserError(f"{data_dir}: no DRR images (expected PP_xrayKKKK.png files or case folders "
                        f"with xrayKKKK.png){_skipped_note(data_dir, skipped)}")
    if skipped:
        print(f"warning: {data_dir}: {_skipped_note(data_dir, skipped).lstrip('; ')}", file=sys.stderr)
    return {patient: dict(sorted(views.items())) for patient, views in sorted(found.items())}


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES and path.is_file()


def _skipped_note(data_dir: Path, skipped: list[Path], shown: int = 5) -> str:
    """'; skipped N image files that fit neither layout: a.png, b/c.png, ... and M more' (or '')."""
    if not skipped:
        return ""
    names = [path.relative_to(data_dir).as_posix() for path in skipped]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (f"; skipped {len(names)} image file{'s' if len(names) > 1 else ''} that fit neither layout: "
            f"{', '.join(names[:shown])}{more}")


def select_patients(images: dict[str, dict[int, Path]], holdout: Sequence[str]) -> dict[str, dict[int, Path]]:
    """Drop held-out patients; an unknown holdout id or an empty remainder is a user mistake."""
    unknown = sorted(set(holdout) - set(images))
    if unknown:
        raise UserError(f"--holdout {' '.join(unknown)}: no such patient (found {', '.join(images)})")
    kept = {p: v for p, v in images.items() if p not in set(holdout)}
    if not kept:
        raise UserError("--holdout removes every patient: nothing left to train on")
    return kept


def to_model_range(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) uint8 -> (1, size, size) float in [-1, 1], resized bilinearly (antialiased) when needed."""
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)[None, None]
    if tensor.shape[-1] != size or tensor.shape[-2] != size:
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return tensor[0]


def load_training_images(data_dir: str | Path, holdout: Sequence[str], size: int
                         ) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """All kept images as (N, 1, size, size) in [-1, 1], with their (patient, view) in the same order."""
    images = select_patients(discover_drr_images(data_dir), holdout)
    keys = [(patient, view) for patient, views in images.items() for view in views]
    stack = torch.stack([to_model_range(read_gray(images[p][v]), size) for p, v in keys])
    return stack, keys
