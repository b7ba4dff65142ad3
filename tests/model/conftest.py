"""Fixtures for the model tests: synthetic DRR folders and a tiny trained checkpoint (seconds on CPU)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import shared_data_dir


def synthetic_drr(view: int, patient: int, size: int = 32) -> np.ndarray:
    """A bright ellipse whose width changes with the view angle (a crude rotating object), uint8."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    half_width = 0.3 + 0.25 * abs(np.cos(np.radians(view * 5.0))) + 0.05 * patient
    inside = (x / half_width) ** 2 + (y / 0.8) ** 2 <= 1
    return (inside * 220 + 20 * patient).astype(np.uint8)


def write_flat_drrs(folder: Path, patients=(1, 2), views=range(0, 72, 9), size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for patient in patients:
        for view in views:
            Image.fromarray(synthetic_drr(view, patient, size)).save(folder / f"{patient:02d}_xray{view:04d}.png")
    return folder


@pytest.fixture
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(autouse=True)
def _seeded_single_thread():
    # One intra-op thread: these tensors are tiny, and on a shared 2-core machine two OpenMP threads
    # spend most of their time waiting for each other (10x slower measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(threads)


def single_thread_env() -> dict:
    """Environment for CLI subprocesses of the tests (see _seeded_single_thread)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def drr_folder(tmp_path_factory) -> Path:
    return write_flat_drrs(tmp_path_factory.mktemp("drrs"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, drr_folder) -> Path:
    from model.api import train
    out = tmp_path_factory.mktemp("tiny_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train("tiny", drr_folder, out, device="cpu", max_iters=2, progress=False)
    finally:
        torch.set_num_threads(threads)
