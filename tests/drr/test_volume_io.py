"""drr/volume_io.py: a .nii.gz is decompressed once (by the truncation check) and read from those
bytes; the Volume must be exactly what SimpleITK reads from the file, whatever the scaling, data
type, byte order or voxel order."""
from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from drr.volume import from_sitk
from drr.volume_io import read_volume_file
from drr_test_volumes import small_hu_volume

# (scl_slope, scl_inter) as written: ITK reads NaN as 0 and a slope of 0 as 1, keeping the intercept
SCALINGS = [(np.nan, np.nan), (1.0, 0.0), (1.0, -1024.0), (0.0, 5.0), (np.nan, 7.0), (2.5, -3.25), (1.0, 0.5)]


def assert_same_as_sitk(path):
    ours, theirs = read_volume_file(path), from_sitk(sitk.ReadImage(str(path)), str(path))
    assert ours.hu.dtype == np.float32 and ours.hu.flags.c_contiguous
    assert np.array_equal(ours.hu, theirs.hu)
    assert ours.spacing_xyz == theirs.spacing_xyz and ours.origin_xyz == theirs.origin_xyz
    assert np.array_equal(ours.direction, theirs.direction)


@pytest.mark.parametrize("slope, intercept", SCALINGS)
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<u1", "<f4", ">f8", "<i4"])
def test_nifti_gz_read_from_the_checked_bytes_equals_simpleitk(tmp_path, slope, intercept, dtype):
    hu = small_hu_volume().astype(np.float64)
    data = (np.clip(hu + 1000, 0, 255) if dtype == "<u1" else hu).astype(dtype)
    affine = np.array([[-0.7, 0, 0, 10.0], [0, 0, 2.5, -20.0], [0, -0.9, 0, 30.0], [0, 0, 0, 1]])  # a PIR-like order
    header = nib.Nifti1Header(endianness=dtype[0])  # a big-endian file for ">" types
    header.set_data_dtype(np.dtype(dtype))
    image = nib.Nifti1Image(np.transpose(data, (2, 1, 0)), affine, header=header)
    nib.save(image, tmp_path / "ct.nii")
    # the scaling fields written as given (nibabel would write NaN, NaN as 1, 0)
    stored = bytearray((tmp_path / "ct.nii").read_bytes())
    stored[112:120] = np.array([slope, intercept], dtype=image.header.endianness + "f4").tobytes()
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(bytes(stored)))
    written = nib.Nifti1Header.from_fileobj(gzip.open(path, "rb"), check=False)
    assert np.array_equal([written["scl_slope"], written["scl_inter"]], [slope, intercept], equal_nan=True)
    assert written.get_data_dtype() == np.dtype(dtype)
    assert_same_as_sitk(path)


def test_simpleitk_written_nifti_gz_in_several_orders(tmp_path):
    image = sitk.GetImageFromArray(small_hu_volume())
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((-10.0, 4.0, 30.0))
    for code in ("LPS", "RAS", "PIR", "SAL"):
        path = tmp_path / f"{code}.nii.gz"
        sitk.WriteImage(sitk.DICOMOrient(image, code), str(path), True)
        assert_same_as_sitk(path)
