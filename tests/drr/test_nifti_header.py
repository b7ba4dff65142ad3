"""drr.nifti_header against nibabel's reading of the same files, and what a NIfTI run imports."""
from __future__ import annotations

import gzip
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from drr.nifti_header import HEADER_BYTES, parse_nifti_header


def _written(tmp_path, image_class, name, data, slope=None, inter=None):
    image = image_class(data, np.eye(4))
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    path = tmp_path / name
    nib.save(image, path)
    return path


@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64, np.int32])
def test_fields_match_nibabel(tmp_path, image_class, dtype):
    data = (np.arange(5 * 4 * 3).reshape(5, 4, 3) % 7).astype(dtype)
    path = _written(tmp_path, image_class, "a.nii", data, slope=2.0, inter=-1024.0)
    header = parse_nifti_header(path.read_bytes()[:HEADER_BYTES])
    loaded = nib.load(path)
    assert header.shape == loaded.header.get_data_shape() == (5, 4, 3)
    assert header.dtype == loaded.header.get_data_dtype()
    assert header.vox_offset == int(loaded.dataobj.offset)
    assert (header.slope, header.intercept) == (2.0, -1024.0)
    assert header.voxel_bytes == data.nbytes
    stored = np.frombuffer(path.read_bytes(), dtype=header.dtype, count=data.size, offset=header.vox_offset)
    assert np.array_equal(stored.reshape(header.shape[::-1]), data.transpose(2, 1, 0))


def test_big_endian_and_4d(tmp_path):
    data = np.arange(2 * 3 * 4 * 2, dtype=">i2").reshape(2, 3, 4, 2)
    image = nib.Nifti1Image(data, np.eye(4), header=nib.Nifti1Header(endianness=">"))
    path = tmp_path / "b.nii"
    nib.save(image, path)
    header = parse_nifti_header(path.read_bytes())
    loaded = nib.load(path)
    assert header.shape == (2, 3, 4, 2) and header.dtype.byteorder == ">"
    assert header.dtype == loaded.header.get_data_dtype() and header.vox_offset == int(loaded.dataobj.offset)
    stored = np.frombuffer(path.read_bytes(), dtype=header.dtype, count=data.size, offset=header.vox_offset)
    assert np.array_equal(stored.reshape(header.shape[::-1]), np.asarray(loaded.dataobj).transpose(3, 2, 1, 0))


def test_bad_headers_raise_value_error():
    with pytest.raises(ValueError, match="sizeof_hdr"):
        parse_nifti_header(b"\0" * HEADER_BYTES)
    with pytest.raises(ValueError, match="shorter"):
        parse_nifti_header(b"\1")
    good = bytearray(nib.Nifti1Header().binaryblock)
    good[40:42] = np.int16(9).tobytes()                      # dim[0] = 9
    with pytest.raises(ValueError, match="dim"):
        parse_nifti_header(bytes(good))


def test_a_nifti_run_reads_without_importing_nibabel(tmp_path):
    data = (np.arange(16 * 16 * 8) % 50 - 1000).astype(np.int16).reshape(16, 16, 8)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    assert gzip.decompress(path.read_bytes())[:4] == np.int32(348).tobytes()
    code = ("import sys; from drr.volume_io import read_volume_file; v = read_volume_file(sys.argv[1]); "
            "print(v.hu.shape, 'nibabel' in sys.modules, 'pydicom' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout


def test_gzip_is_inflated_by_isal():
    # the dependency is installed, so the fast inflater is the one in use (zlib is only the fallback)
    from drr import volume_truncation
    assert volume_truncation._inflate.__name__ == "isal.isal_zlib"
