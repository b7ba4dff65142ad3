"""Fixtures for the DRR tests: shared data paths (skip when absent) and small phantoms."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_data_or_skip


@pytest.fixture(scope="session")
def chest_ct_path() -> Path:
    return shared_data_or_skip("ct/chest_ct.nii.gz", "real chest CT")


@pytest.fixture(scope="session")
def chest_volume(chest_ct_path):
    from drr.volume import check_volume
    from drr.volume_io import read_volume_file
    return check_volume(read_volume_file(chest_ct_path))
