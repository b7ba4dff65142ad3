"""DRR folders -> training images.

Two layouts are read: MedNeRF's flat `PP_xrayKKKK.png` (also `01_bbg_xrayKKKK.png`) and the output of
`drr-generate` (one folder per case holding `xrayKKKK.png`, or its `--layout mednerf` flat files).
Patient ids come from the file or folder names, never from a fixed list.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from umed_common.errors import UserError
from umed_common.images import read_gray

_FLAT = re.compile(r"^(?P<patient>[^_]+)(?:_[A-Za-z]+)*_xray(?P<view>\d+)\.png$")
_IN_CASE = re.compile(r"^xray(?P<view>\d+)\.png$")


def _add(found: dict, patient: str, view: int, path: Path) -> None:
    views = found.setdefault(patient, {})
    if view in views:
        raise UserError(f"{path}: patient {patient} view {view} also in {views[view]}")
    views[view] = path


def discover_drr_images(data_dir: str | Path) -> dict[str, dict[int, Path]]:
    """patient id -> view index -> PNG file, from either layout; UserError when nothing is found."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such data folder")
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(data_dir.iterdir()):
        match = _FLAT.match(path.name)
        if match and path.is_file():
            _add(found, match["patient"], int(match["view"]), path)
        elif path.is_dir():
            for inner in sorted(path.iterdir()):
                inner_match = _IN_CASE.match(inner.name)
                if inner_match and inner.is_file():
                    _add(found, path.name, int(inner_match["view"]), inner)
    if not found:
        raise UserError(f"{data_dir}: no DRR images (expected PP_xrayKKKK.png files or case folders "
                        f"with xrayKKKK.png)")
    return {patient: dict(sorted(views.items())) for patient, views in sorted(found.items())}


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
