"""Issue 13: an X-ray source inside or grazing the volume is refused per case (one line naming
--sad-mm and the file), the batch goes on; drr.geometry.check_source_outside is the rule."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk

from drr.cli import main
from drr.dicom_io import write_dicom_series
from drr.geometry import SOURCE_CLEARANCE_MM, check_source_outside, preset_geometry
from drr.volume import Volume
from drr_test_volumes import small_hu_volume
from umed_common.errors import UserError

FAST = ["--projector", "fast", "--views", "8", "--angle-step-deg", "45", "--rows", "16", "--cols", "16",
        "--detector-mm", "60", "--quiet", "--device", "cpu"]
# small_hu_volume: 24 x 20 voxels of 2 mm across (48 x 40 mm), 8 slices of 3 mm
SPACING, ORIGIN = (2.0, 2.0, 3.0), (-23.0, -19.0, -10.0)


def geometry_for(volume, sad_mm, views=8, step_deg=45.0):
    return preset_geometry("chest", volume.centre_mm(), sad_mm=sad_mm, sid_mm=sad_mm + 500.0, views=views,
                           angle_step_deg=step_deg)


def check(volume, sad_mm, **kwargs):
    check_source_outside(geometry_for(volume, sad_mm, **kwargs), volume.index_to_world(), volume.shape_xyz, "ct.nii")


@pytest.fixture
def volume():
    return Volume(small_hu_volume().astype(np.float32), SPACING, ORIGIN)


def test_source_at_the_isocentre_side_face_and_corner(volume):
    # view 0 looks along x: the face is 24 mm from the centre; view 1 (45 deg) leaves through y first
    with pytest.raises(UserError, match=r"ct.nii: --sad-mm 10 puts the X-ray source inside the volume .*"
                                        r"\(view 0, 0 deg.* needs --sad-mm above 43$"):
        check(volume, 10.0)
    with pytest.raises(UserError, match="within 10 mm"):  # grazing: outside the box, inside the clearance
        check(volume, 24.0 + SOURCE_CLEARANCE_MM - 1.0, views=1)
    check(volume, 24.0 + SOURCE_CLEARANCE_MM + 1.0, views=1)  # one view along x: clear
    with pytest.raises(UserError, match=r"view 1, 45 deg"):  # the diagonal view is the one that grazes
        check(volume, 24.0 + SOURCE_CLEARANCE_MM + 1.0)
    check(volume, 43.0)


def test_the_box_follows_direction_cosines(volume):
    # the same voxels turned 90 deg about z: the long side (48 mm) now lies along y
    turned = Volume(volume.hu, SPACING, ORIGIN, direction=np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]))
    check(turned, 24.0 + SOURCE_CLEARANCE_MM + 1.0 - 4.0, views=1)  # along x only 20 mm of voxels
    with pytest.raises(UserError, match="view 0, 90 deg"):
        check_source_outside(preset_geometry("chest", turned.centre_mm(), sad_mm=31.0, sid_mm=600.0, views=1,
                                             start_angle_deg=90.0), turned.index_to_world(), turned.shape_xyz, "x")


def write_mha(path, hu, spacing):
    image = sitk.GetImageFromArray(hu.astype(np.float32))
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))


def test_sad_inside_one_volume_fails_that_case_and_the_batch_goes_on(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_mha(tmp_path / "in" / "small.mha", small_hu_volume(), (1.0, 1.0, 1.0))  # 24 x 20 mm
    write_mha(tmp_path / "in" / "wide.mha", small_hu_volume(shape_zyx=(8, 60, 80)), (2.0, 2.0, 2.0))  # 160 x 120 mm
    code = main([str(tmp_path / "in"), str(tmp_path / "out"), *FAST, "--sad-mm", "60"])
    text = capsys.readouterr()
    assert code == 1 and "1 done, 0 already done, 1 failed" in text.out
    failed = [line for line in text.err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "FAILED wide: " in failed[0]
    assert "wide.mha: --sad-mm 60 puts the X-ray source" in failed[0]
    assert (tmp_path / "out" / "small" / "case.json").is_file() and not (tmp_path / "out" / "wide").exists()
    with open(tmp_path / "out" / "manifest.csv", encoding="utf-8") as handle:
        rows = {row["case_id"]: row for row in csv.DictReader(handle)}
    assert rows["wide"]["status"] == "failed" and "--sad-mm" in rows["wide"]["message"]


def test_a_dicom_tag_that_puts_the_source_inside_is_refused_too(tmp_path, capsys):
    write_dicom_series(small_hu_volume(), SPACING, ORIGIN, tmp_path / "in" / "tagged", sad_mm=20.0, sid_mm=400.0)
    code = main([str(tmp_path / "in"), str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "tagged: --sad-mm 20 puts the X-ray source inside the volume" in err
    assert main([str(tmp_path / "in"), str(tmp_path / "out"), *FAST, "--sad-mm", "60"]) == 0  # the option wins
