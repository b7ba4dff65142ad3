"""drr/volume.py: check_volume finds non-finite voxels from the extremes, and still turns each into air."""
from __future__ import annotations

import numpy as np
import pytest

from drr.volume import Volume, check_volume
from drr_test_volumes import small_hu_volume


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_become_air_with_a_warning(bad):
    hu = small_hu_volume().astype(np.float32)
    hu[3, 4, 5] = hu[0, 0, 0] = bad
    volume = check_volume(Volume(hu.copy(), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), source="ct"))
    expected = np.where(np.isfinite(hu), hu, -1000.0)
    assert volume.hu.dtype == np.float32 and np.array_equal(volume.hu, expected)
    assert volume.warnings == ["2 non-finite voxels treated as air"]


def test_finite_volume_is_kept_as_it_is():
    hu = small_hu_volume().astype(np.float32)
    volume = check_volume(Volume(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), source="ct"))
    assert volume.hu is hu and volume.warnings == []
