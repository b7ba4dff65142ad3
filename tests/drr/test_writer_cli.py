"""Writer conventions, manifest, resume and layouts of drr-generate."""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np

from drr_test_volumes import small_hu_volume
from drr.cli import main
from drr.writer import mednerf_uint8
from umed_common.images import read_gray

FAST = ["--projector", "fast", "--views", "3", "--angle-step-deg", "120", "--rows", "12", "--cols", "16",
        "--detector-mm", "60", "--quiet", "--device", "cpu"]


def test_mednerf_uint8_scales_by_own_max_and_flips():
    image = np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 4.0]], dtype=np.float32)
    out = mednerf_uint8(image)
    assert out.dtype == np.uint8 and out.max() == 255
    np.testing.assert_array_equal(out, [[128, 64, 0], [255, 0, 32]])


def make_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    hu = np.transpose(small_hu_volume(), (2, 1, 0)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 3.0, 1.0])), folder / "01.nii.gz")
    return folder


def test_outputs_manifest_and_resume(tmp_path, capsys):
    folder = make_input(tmp_path)
    out = tmp_path / "out"
    assert main([str(folder), str(out), *FAST]) == 0
    case = out / "01"
    raw = np.load(case / "drr_line_integrals.npy")
    assert raw.shape == (3, 12, 16) and raw.dtype == np.float32
    png = read_gray(case / "xray0001.png")
    np.testing.assert_array_equal(png, mednerf_uint8(raw[1]))
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert rows[0]["case_id"] == "01" and rows[0]["status"] == "ok" and len(rows[0]["png_sha256"]) == 64
    stamp = (case / "xray0000.png").stat().st_mtime_ns
    assert main([str(folder), str(out), *FAST]) == 0
    assert "1 already done" in capsys.readouterr().out
    assert (case / "xray0000.png").stat().st_mtime_ns == stamp
    assert main([str(folder), str(out), *FAST, "--overwrite"]) == 0
    assert (case / "xray0000.png").stat().st_mtime_ns != stamp


def test_mednerf_layout_is_flat(tmp_path):
    folder = make_input(tmp_path)
    assert main([str(folder), str(tmp_path / "out"), *FAST, "--layout", "mednerf"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert names == ["01_xray0000.png", "01_xray0001.png", "01_xray0002.png"]
    assert (tmp_path / "out" / "raw" / "01" / "geometry.json").is_file()


def test_projectors_agree_on_small_volume(tmp_path):
    folder = make_input(tmp_path)
    results = {}
    for projector in ("exact", "trilinear", "fast"):
        out = tmp_path / projector
        options = [o if o != "fast" else projector for o in FAST]
        assert main([str(folder), str(out), *options, "--downsample", "1"]) == 0
        results[projector] = np.load(out / "01" / "drr_line_integrals.npy")
    scale = results["exact"].max()
    assert np.abs(results["trilinear"] - results["exact"]).mean() < 0.03 * scale
    assert np.abs(results["fast"] - results["exact"]).mean() < 0.03 * scale
