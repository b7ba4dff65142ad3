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


# --- issue 13: options checked before any folder, truncated volumes, reruns, output folder, full disk ---

def run_after(capsys, source, out, *extra):
    """Like run, with `extra` after FAST so it wins over FAST's values."""
    code = main([str(source), str(out), *FAST, *map(str, extra)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("extra, message", [
    (["--downsample", "0"], "--downsample 0: expected auto or an integer >= 1"),
    (["--downsample", "-1"], "--downsample -1: expected auto or an integer >= 1"),
    (["--downsample", "two"], "--downsample two: expected auto or an integer >= 1"),
    (["--hu-min", "500", "--hu-max", "-500"], "the HU window is empty"),
    (["--angle-step-deg", "nan"], "--angle-step-deg nan: must be a finite number"),
    (["--sad-mm", "inf"], "--sad-mm inf: must be a positive number"),
    (["--sad-mm", "900", "--sid-mm", "500"], "must be shorter than the source-detector distance"),
    (["--rows", "0"], "--rows 0: must be at least 1"),
])
def test_impossible_options_are_refused_before_any_folder(tmp_path, capsys, extra, message):
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", tmp_path / "out", *extra)
    assert code == 2 and message in text and "Traceback" not in text and text.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, cut", [("cut.nii.gz", 0.6), ("cut.nii", 0.6)])
def test_truncated_nifti_is_a_failed_case_not_zeros(tmp_path, capsys, name, cut):
    (tmp_path / "in").mkdir()
    write_nifti(tmp_path / "in" / "good.nii.gz", small_hu_volume())
    write_nifti(tmp_path / "in" / name, small_hu_volume(seed=3))
    data = (tmp_path / "in" / name).read_bytes()
    (tmp_path / "in" / name).write_bytes(data[: int(len(data) * cut)])
    code, text = run_after(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 1 and f"{name}: truncated" in text
    assert (tmp_path / "out" / "good" / "case.json").is_file() and not (tmp_path / "out" / "cut").exists()


def test_rerun_with_other_options_or_changed_input_is_refused_then_redone(tmp_path, capsys):
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    out = tmp_path / "out"
    assert run_after(capsys, tmp_path / "ct.nii.gz", out)[0] == 0
    assert "1 already done" in run_after(capsys, tmp_path / "ct.nii.gz", out)[1]
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", out, "--rows", "20")
    assert code == 1 and "--rows 16 -> 20" in text and "--overwrite" in text
    assert np.load(out / "ct" / "drr_line_integrals.npy").shape[1] == 16  # left as it was
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", out, "--rows", "20", "--overwrite")
    assert code == 0 and np.load(out / "ct" / "drr_line_integrals.npy").shape[1] == 20
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume(seed=5))  # same name, other content
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", out, "--rows", "20")
    assert code == 1 and "the input file's content changed" in text


def test_fewer_views_on_overwrite_removes_the_old_extra_views(tmp_path, capsys):
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    out = tmp_path / "out"
    assert run_after(capsys, tmp_path / "ct.nii.gz", out)[0] == 0
    assert run_after(capsys, tmp_path / "ct.nii.gz", out, "--views", "2", "--angle-step-deg", "90", "--overwrite")[0] == 0
    assert sorted(p.name for p in (out / "ct").glob("xray*.png")) == ["xray0000.png", "xray0001.png"]


def test_user_files_in_out_survive_overwrite_and_are_never_replaced(tmp_path, capsys):
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    out = tmp_path / "out"
    (out / "ct").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "ct" / "xray0002.png").write_text("my own drawing")
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", out)
    assert code == 1 and "xray0002.png: exists and was not written by drr-generate" in text
    assert (out / "ct" / "xray0002.png").read_text() == "my own drawing"
    (out / "ct" / "xray0002.png").rename(out / "ct" / "mine.png")
    assert run_after(capsys, tmp_path / "ct.nii.gz", out)[0] == 0
    assert run_after(capsys, tmp_path / "ct.nii.gz", out, "--overwrite", "--rows", "20")[0] == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "ct" / "mine.png").read_text() == "my own drawing"
    assert not [p for p in out.rglob("*") if "staging" in p.name]


def make_legacy(out):
    """Turn drr-generate's outputs into those of a version that kept no record, options or input checksum."""
    import json
    (out / ".drr-generate-outputs.json").unlink()
    record = json.loads((out / "ct" / "case.json").read_text())
    del record["options"], record["input_sha256"]
    (out / "ct" / "case.json").write_text(json.dumps(record))


def test_outputs_of_an_older_version_are_adopted_only_when_their_checksums_match(tmp_path, capsys):
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    out = tmp_path / "out"
    assert run_after(capsys, tmp_path / "ct.nii.gz", out)[0] == 0
    make_legacy(out)
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", out)
    assert code == 1 and "older drr-generate" in text and "--overwrite" in text
    assert run_after(capsys, tmp_path / "ct.nii.gz", out, "--overwrite")[0] == 0  # adopted and redone
    make_legacy(out)
    (out / "ct" / "xray0001.png").write_bytes(b"edited by the user")
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", out, "--overwrite")
    assert code == 1 and "was not written by drr-generate" in text
    assert (out / "ct" / "xray0001.png").read_bytes() == b"edited by the user"


def test_disk_full_fails_the_case_with_one_line_and_leaves_no_staging(tmp_path, capsys, monkeypatch):
    import errno

    import drr.writer
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())

    def full_disk(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(drr.writer.np, "save", full_disk)
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", tmp_path / "out")
    assert code == 1 and "drr_line_integrals.npy: cannot write (No space left on device)" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".drr-generate-outputs.json", "manifest.csv"]


def test_disk_full_on_the_manifest_is_one_line(tmp_path, capsys, monkeypatch):
    import errno
    import pathlib
    write_nifti(tmp_path / "ct.nii.gz", small_hu_volume())
    real_write_bytes = pathlib.Path.write_bytes

    def full_disk(self, data):
        if ".manifest." in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    code, text = run_after(capsys, tmp_path / "ct.nii.gz", tmp_path / "out")
    assert code == 2 and text.strip().endswith("manifest.csv: cannot write (No space left on device)")
    assert "Traceback" not in text


def test_sigterm_during_a_batch_stops_it_with_143_and_no_staging(tmp_path, capsys, monkeypatch):
    import os
    import signal

    import drr.pipeline
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        write_nifti(tmp_path / "in" / f"{name}.nii.gz", small_hu_volume())
    real_render = drr.pipeline.render_volume

    def render_then_terminated(volume, options, device):
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread while this case goes on
        return real_render(volume, options, device)

    monkeypatch.setattr(drr.pipeline, "render_volume", render_then_terminated)
    code, text = run_after(capsys, tmp_path / "in", tmp_path / "out")
    assert code == 143 and "terminated" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # nothing beside --out
    assert not [p for p in (tmp_path / "out").rglob("*") if "staging" in p.name]
    assert len(list((tmp_path / "out").glob("*/case.json"))) < 3  # the cases not started were dropped
