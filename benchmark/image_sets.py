"""Folders of images as evaluation sets: discovery and validation (one-line errors)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from umed_common.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Renders and DRRs are grayscale; RGB/RGBA outputs of other methods are read by luminance.
ACCEPTED_MODES = ("L", "RGB", "RGBA")


@dataclass(frozen=True)
class ImageSet:
    """The images of one folder, all of one size and mode."""

    folder: Path
    paths: tuple[Path, ...]
    size: tuple[int, int]  # (width, height) as PIL reports it
    mode: str

    def __len__(self) -> int:
        return len(self.paths)


def _probe(path: Path) -> tuple[tuple[int, int], str]:
    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not a readable image ({err.__class__.__name__})") from None


def image_set(folder: str | Path, label: str = "images") -> ImageSet:
    """All images directly in `folder`, sorted by name; UserError for a folder that cannot be scored."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise UserError(f"{label}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{label}: {folder} is not a folder")
    paths = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
    if not paths:
        raise UserError(f"{label}: folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    size, mode = _probe(paths[0])
    if mode not in ACCEPTED_MODES:
        raise UserError(f"{label}: {paths[0]} has image mode {mode}; expected 8-bit {'/'.join(ACCEPTED_MODES)}")
    for path in paths[1:]:
        other_size, other_mode = _probe(path)
        if other_size != size or other_mode != mode:
            raise UserError(f"{label}: {path} is {other_size[0]}x{other_size[1]} {other_mode} but "
                            f"{paths[0].name} is {size[0]}x{size[1]} {mode}; a set must be uniform")
    return ImageSet(folder, paths, size, mode)


def require_same_size(reference: ImageSet, other: ImageSet, label: str) -> None:
    """Methods are compared at the reference resolution: no silent resampling of one side."""
    if other.size != reference.size:
        raise UserError(f"{label}: images in {other.folder} are {other.size[0]}x{other.size[1]} but the "
                        f"reference DRRs in {reference.folder} are {reference.size[0]}x{reference.size[1]}; "
                        "resize them to the reference size first")
