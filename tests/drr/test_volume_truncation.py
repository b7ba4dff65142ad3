"""Issue 13: a cut-short volume file (any format, raw or compressed) is a failed case with one line,
never zeros read as anatomy; a complete file is read unchanged."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from drr.cli import main
from drr.volume_io import read_volume_file
from drr.volume_truncation import check_complete
from drr_test_volumes import small_hu_volume
from umed_common.errors import UserError

FAST = ["--projector", "fast", "--views", "4", "--angle-step-deg", "90", "--rows", "16", "--cols", "16",
        "--detector-mm", "60", "--quiet", "--device", "cpu"]
# name, compressed, the file that holds the voxels (MetaImage .mhd keeps them beside the header)
FORMATS = [("ct.mha", False, "ct.mha"), ("ct.mha", True, "ct.mha"), ("ct.mhd", False, "ct.raw"),
           ("ct.mhd", True, "ct.zraw"), ("ct.nrrd", False, "ct.nrrd"), ("ct.nrrd", True, "ct.nrrd"),
           ("ct.nii", False, "ct.nii"), ("ct.nii.gz", True, "ct.nii.gz")]


def write_volume(folder, name, compressed, hu):
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    sitk.WriteImage(image, str(folder / name), compressed)
    return folder / name


def cut(path, keep_fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])


@pytest.mark.parametrize("name, compressed, data_file", FORMATS)
def test_complete_files_are_read_as_written(tmp_path, name, compressed, data_file):
    hu = small_hu_volume()
    path = write_volume(tmp_path, name, compressed, hu)
    check_complete(path)
    assert np.array_equal(read_volume_file(path).hu, hu)


# 0.6: most slices gone; 0.999: only the last bytes (a gzip/zlib trailer, or the last voxels)
@pytest.mark.parametrize("keep_fraction", [0.6, 0.999])
@pytest.mark.parametrize("name, compressed, data_file", FORMATS)
def test_truncated_file_is_refused_naming_it(tmp_path, name, compressed, data_file, keep_fraction):
    write_volume(tmp_path, name, compressed, small_hu_volume())
    cut(tmp_path / data_file, keep_fraction)
    with pytest.raises(UserError, match=rf"{data_file.replace('.', '[.]')}: truncated \("):
        read_volume_file(tmp_path / name)


def test_nibabel_nifti_with_extension_offset_is_checked(tmp_path):
    image = nib.Nifti1Image(np.transpose(small_hu_volume(), (2, 1, 0)), np.eye(4))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment that moves the voxels" * 8))
    nib.save(image, tmp_path / "ext.nii")
    check_complete(tmp_path / "ext.nii")
    cut(tmp_path / "ext.nii", 0.995)
    with pytest.raises(UserError, match="ext.nii: truncated"):
        check_complete(tmp_path / "ext.nii")


def test_metaimage_with_missing_data_file(tmp_path):
    write_volume(tmp_path, "ct.mhd", False, small_hu_volume())
    (tmp_path / "ct.raw").unlink()
    with pytest.raises(UserError, match="ct.mhd: its data file ct.raw is missing"):
        read_volume_file(tmp_path / "ct.mhd")


@pytest.mark.parametrize("name, compressed, data_file", [FORMATS[1], FORMATS[2], FORMATS[4], FORMATS[5]])
def test_truncated_case_fails_with_one_line_and_the_batch_goes_on(tmp_path, capfd, name, compressed, data_file):
    write_volume(tmp_path / "in", "good.mha", False, small_hu_volume())
    write_volume(tmp_path / "in" / "cut", name, compressed, small_hu_volume(seed=2))
    cut(tmp_path / "in" / "cut" / data_file, 0.7)
    code = main([str(tmp_path / "in"), str(tmp_path / "out"), *FAST])
    captured = capfd.readouterr()
    assert code == 1
    failed = [line for line in captured.err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and f"{data_file}: truncated (" in failed[0]
    assert "M_ReadElementsData" not in captured.err and "Traceback" not in captured.err  # no reader noise
    assert (tmp_path / "out" / "good" / "case.json").is_file()
    assert not (tmp_path / "out" / "cut_ct").exists()
