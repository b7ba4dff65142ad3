"""The fast projector traces a flipped voxel axis backwards instead of copying the volume:
it must give the DRRs of the flipped-back (LPS) copy, whatever the slabs per knot."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from drr.analytic_phantom import Blob, voxelise
from drr.fast_projector import project_fast
from drr.geometry import preset_geometry
from drr.orientation import axis_aligned_view

# 23 x 29 x 11 voxels: no side a multiple of the groups below, so the padding to whole groups shows
SHAPE_ZYX, SPACING_XYZ = (11, 29, 23), (4.0, 3.5, 6.0)
BLOBS = (Blob((5.0, -8.0, 4.0), (30.0, 22.0, 20.0), 0.02, 20.0), Blob((-12.0, 10.0, -6.0), (9.0, 14.0, 12.0), 0.03))


def lps_case():
    mu = torch.from_numpy(voxelise(BLOBS, SHAPE_ZYX, SPACING_XYZ))
    affine = np.diag([*SPACING_XYZ, 1.0])
    affine[:3, 3] = [-40.0, -50.0, -30.0]
    return mu, affine


def flipped(mu, affine, flips_xyz):
    """The same voxels stored with the x / y / z index running the other way."""
    out, new = mu, affine.copy()
    for axis, flip in enumerate(flips_xyz):
        if flip:
            out = out.flip(2 - axis)
            new[:3, axis] = -affine[:3, axis]
    # origin: the world position of the new first voxel, the old last along every flipped axis
    last = np.array([(mu.shape[2 - a] - 1) if f else 0 for a, f in enumerate(flips_xyz)], dtype=float)
    new[:3, 3] = (affine @ np.append(last, 1.0))[:3]
    return out.contiguous(), new


@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("flips_xyz", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
def test_flipped_axes_give_the_drrs_of_the_lps_copy(group, flips_xyz):
    mu, affine = lps_case()
    geometry = preset_geometry("chest", (0.0, -3.0, 3.0), detector_rows=16, detector_cols=20,
                               detector_height_mm=200.0, detector_width_mm=200.0, views=6, angle_step_deg=37.0)
    reference = project_fast(mu, affine, geometry, group=group, table_dtype=torch.float32)
    volume, flipped_affine = flipped(mu, affine, flips_xyz)
    back, back_affine = axis_aligned_view(volume, flipped_affine)  # the exact copy, as a check of the setup
    assert torch.equal(back, mu) and np.allclose(back_affine, affine)
    got = project_fast(volume, flipped_affine, geometry, group=group, table_dtype=torch.float32)
    assert reference.max() > 1.0
    # the same sums in another order (float32 tables): rounding only; a grouping that follows the
    # voxel order instead of the world differs by percents here
    assert float((got - reference).abs().max()) <= 1e-5 * float(reference.max())
