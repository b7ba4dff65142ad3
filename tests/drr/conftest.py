"""Fixtures for the DRR tests: shared data paths (skip when absent) and small phantoms."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_data_dir


@pytest.fixture(scope="session")
def chest_ct_path() -> Path:
    path = shared_data_dir() / "ct" / "chest_ct.nii.gz"
    if not path.is_file():
        pytest.skip(f"real chest CT not found at {path} (set UMED_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def chest_volume(chest_ct_path):
    from drr.volume import check_volume
    from drr.volume_io import read_volume_file
    return check_volume(read_volume_file(chest_ct_path))
