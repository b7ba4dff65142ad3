"""Small synthetic volumes for the DRR tests (imported by name: unique module name on purpose)."""
from __future__ import annotations

import numpy as np


def small_hu_volume(seed: int = 0, shape_zyx=(8, 20, 24)) -> np.ndarray:
    """A small int16 'patient': water cylinder with a bone rod, in air."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx)
    cy, cx = (shape_zyx[1] - 1) / 2, (shape_zyx[2] - 1) / 2
    hu = np.full(shape_zyx, -1000, dtype=np.int16)
    hu[(y - cy) ** 2 + (x - cx) ** 2 < (0.4 * shape_zyx[1]) ** 2] = 40
    hu[(y - cy - 2) ** 2 + (x - cx + 3) ** 2 < 4] = 900
    return (hu + rng.integers(-5, 6, size=shape_zyx)).astype(np.int16)
