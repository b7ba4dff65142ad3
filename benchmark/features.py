"""Inception pool3 features of image files, cached on disk by file content.

Every image goes through the same path: 8-bit grayscale -> [0, 1] -> three
identical channels -> pytorch-fid's network (bilinear resize to 299, scale to
[-1, 1]) -> 2048-d pool3 vector. A vector is stored under the SHA-256 of the
file's bytes, in a folder keyed by the weights and this preprocessing, so it is
computed once and shared by FID and KID, across runs and methods.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from umed_common.atomic import atomic_path
from umed_common.checksums import sha256_file
from umed_common.images import read_gray

FEATURE_DIM = 2048
CACHE_ENV = "UMED_FEATURE_CACHE"
PREPROCESSING = "gray-to-3ch/bilinear-299/pool3/v1"  # change when the path above changes


def default_cache_dir() -> Path:
    """$UMED_FEATURE_CACHE, else ~/.cache/umednerf/inception_features."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "umednerf" / "inception_features"


class FeatureCache:
    """Content-addressed store: <root>/<extractor key>/<sha[:2]>/<sha>.npy, one (2048,) float32 each."""

    def __init__(self, root: str | Path, weights_sha256: str):
        extractor_key = hashlib.sha256(f"{weights_sha256}|{PREPROCESSING}".encode()).hexdigest()[:16]
        self.folder = Path(root).expanduser() / extractor_key

    def _path(self, content_sha256: str) -> Path:
        return self.folder / content_sha256[:2] / f"{content_sha256}.npy"

    def get(self, content_sha256: str) -> np.ndarray | None:
        path = self._path(content_sha256)
        if not path.is_file():
            return None
        vector = np.load(path, allow_pickle=False)
        return vector if vector.shape == (FEATURE_DIM,) else None  # a foreign or truncated file is recomputed

    def put(self, content_sha256: str, vector: np.ndarray) -> None:
        with atomic_path(self._path(content_sha256), suffix=".npy") as tmp:
            np.save(tmp, np.asarray(vector, dtype=np.float32), allow_pickle=False)


def content_sha256(path: str | Path) -> str:
    """Cache key of an image: the SHA-256 of its file bytes."""
    return sha256_file(path)


def images_to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """(H, W) uint8 images -> (B, 3, H, W) float32 in [0, 1], gray replicated to 3 channels."""
    stack = torch.from_numpy(np.stack(images).astype(np.float32) / 255.0)
    return stack.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def pool3_features(network: torch.nn.Module, images: list[np.ndarray], device: torch.device | str) -> np.ndarray:
    """(B, 2048) float32 pool3 features of (H, W) uint8 images."""
    batch = images_to_batch(images).to(device)
    return network(batch)[0].flatten(1).cpu().numpy().astype(np.float32)


def extract_features(paths: list[Path] | tuple[Path, ...], network: torch.nn.Module, cache: FeatureCache | None,
                     device: torch.device | str = "cpu", batch_size: int = 32,
                     progress: bool = True, desc: str = "features") -> np.ndarray:
    """(N, 2048) float64 features of image files, reading cached vectors and storing new ones."""
    keys = [content_sha256(p) for p in paths]
    found = {k: cache.get(k) for k in set(keys)} if cache is not None else {}
    missing = sorted({k: p for k, p in zip(keys, paths) if found.get(k) is None}.items())
    for start in tqdm(range(0, len(missing), batch_size), desc=desc, disable=not progress or not missing,
                      unit="batch"):
        chunk = missing[start:start + batch_size]
        vectors = pool3_features(network, [read_gray(p) for _, p in chunk], device)
        for (key, _), vector in zip(chunk, vectors):
            found[key] = vector
            if cache is not None:
                cache.put(key, vector)
    return np.stack([found[k] for k in keys]).astype(np.float64)
