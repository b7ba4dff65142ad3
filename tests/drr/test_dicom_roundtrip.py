"""Acceptance 5: the real chest CT written as a DICOM series projects like the NIfTI file."""
from __future__ import annotations

import numpy as np
import pytest

from drr.dicom_io import write_dicom_series
from drr.pipeline import DrrOptions, render_volume
from drr.volume_io import discover_cases, load_case


@pytest.mark.slow
def test_dicom_series_gives_same_drrs_as_nifti(chest_volume, tmp_path):
    write_dicom_series(np.round(chest_volume.hu).astype(np.int16), chest_volume.spacing_xyz,
                       chest_volume.origin_xyz, tmp_path / "series", direction=chest_volume.direction)
    cases, problems = discover_cases(tmp_path)
    assert problems == [] and len(cases) == 1 and cases[0].kind == "dicom"
    from_dicom = load_case(cases[0])
    np.testing.assert_allclose(from_dicom.centre_mm(), chest_volume.centre_mm(), atol=1e-3)
    for projector, views in (("fast", 72), ("exact", 2)):
        options = DrrOptions(projector=projector, views=views, angle_step_deg=360 / views, device="cpu")
        expected = render_volume(chest_volume, options, "cpu")[0]
        got = render_volume(from_dicom, options, "cpu")[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.max())
