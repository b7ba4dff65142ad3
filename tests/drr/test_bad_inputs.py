"""Acceptance 4: every bad input gives a one-line reason naming the file; others still finish."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from drr_test_volumes import small_hu_volume
from drr.cli import main
from drr.dicom_io import write_dicom_series

FAST = ["--projector", "fast", "--views", "4", "--angle-step-deg", "90", "--rows", "16", "--cols", "16",
        "--detector-mm", "60", "--quiet", "--device", "cpu"]


def write_nifti(path, hu):
    nib.save(nib.Nifti1Image(np.transpose(hu, (2, 1, 0)).astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), path)


def good_series(folder, seed=0):
    return write_dicom_series(small_hu_volume(seed), (2.0, 2.0, 3.0), (-23.0, -19.0, -10.0), folder)


def run(capsys, *args):
    code = main([*map(str, args), *FAST])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 2 and "folder is empty" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_folder_without_volumes(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no CT here")
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 2 and "no CT volumes found" in text


def test_non_image_files_mixed_in_are_ignored(tmp_path, capsys):
    good_series(tmp_path / "in" / "patient")
    (tmp_path / "in" / "patient" / "README.txt").write_text("hello")
    (tmp_path / "in" / "report.json").write_text("{}")
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 0, text
    assert len(list((tmp_path / "out" / "patient").glob("xray*.png"))) == 4


def test_corrupt_and_truncated_dicom(tmp_path, capsys):
    good_series(tmp_path / "in" / "good")
    broken = good_series(tmp_path / "in" / "truncated", seed=1)
    data = broken[3].read_bytes()
    broken[3].write_bytes(data[: len(data) - 300])  # pixel data cut short
    (tmp_path / "in" / "junk.dcm").write_bytes(b"\x00" * 50)
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 1
    assert "slice_0003.dcm: cannot decode pixel data" in text
    assert "junk.dcm: not a readable DICOM file" in text
    assert (tmp_path / "out" / "good" / "case.json").is_file()
    assert not (tmp_path / "out" / "truncated").exists()  # no partial output
    assert not any(p.name.startswith(".staging") for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize("problem, message", [("missing", "missing slice"), ("uneven", "uneven slice spacing")])
def test_series_with_missing_slice_or_uneven_spacing(tmp_path, capsys, problem, message):
    paths = good_series(tmp_path / "in" / "series")
    if problem == "missing":
        paths[4].unlink()
    else:
        hu = small_hu_volume()
        shutil.rmtree(tmp_path / "in" / "series")
        paths = write_dicom_series(hu, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), tmp_path / "in" / "series")
        import pydicom
        last = pydicom.dcmread(paths[-1])
        last.ImagePositionPatient = [0, 0, 3.0 * (len(paths) - 1) + 1.0]
        last.save_as(paths[-1])
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 1 and message in text and "series" in text


def test_two_series_in_one_folder_are_two_cases(tmp_path, capsys):
    good_series(tmp_path / "in", seed=0)
    write_dicom_series(small_hu_volume(2), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), tmp_path / "in" / "x")
    for path in (tmp_path / "in" / "x").iterdir():
        path.rename(tmp_path / "in" / f"b_{path.name}")
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 0, text
    assert len(list((tmp_path / "out").glob("*/case.json"))) == 2


@pytest.mark.parametrize("kind, message", [("nan", "contains no finite values"), ("constant", "constant volume")])
def test_all_nan_or_constant_volume(tmp_path, capsys, kind, message):
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "good.nii.gz", small_hu_volume())
    hu = np.full((8, 20, 24), np.nan if kind == "nan" else 40.0)
    sitk.WriteImage(sitk.GetImageFromArray(hu.astype(np.float32)), str(tmp_path / "in" / "bad.mha"))
    code, text = run(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 1 and f"bad.mha: {message}" in text
    assert (tmp_path / "out" / "good" / "case.json").is_file() and not (tmp_path / "out" / "bad").exists()


def test_2d_image_given_as_volume(tmp_path, capsys):
    image = sitk.GetImageFromArray(small_hu_volume()[0].astype(np.float32))
    sitk.WriteImage(image, str(tmp_path / "slice.mha"))
    code, text = run(capsys, tmp_path / "slice.mha", tmp_path / "out")
    assert code == 1 and "slice.mha: is a 2D image" in text


def test_unwritable_output_folder(tmp_path, capsys):
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    (tmp_path / "file").write_text("a file, not a folder")
    code, text = run(capsys, tmp_path / "ct.nii.gz", tmp_path / "file" / "out")
    assert code == 2 and "output folder is not writable" in text and "Traceback" not in text
