"""Issue 13: whatever drr-generate --layout mednerf names a case (nested DICOM series, two series in
one folder, underscores in a file name), umed-train's discovery finds every view under that case id;
an image that fits no layout is named in one warning line, never skipped silently."""
from __future__ import annotations

import csv
import shutil

import pytest
from PIL import Image

from demo.phantoms import write_phantom_population
from drr.cli import main as drr_generate
from model.data import discover_drr_images, load_training_images
from umed_common.errors import UserError

VIEWS = 4
FAST = ["--projector", "fast", "--views", str(VIEWS), "--angle-step-deg", "90", "--rows", "16", "--cols", "16",
        "--detector-mm", "80", "--quiet", "--device", "cpu", "--layout", "mednerf"]


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 7).save(path)


@pytest.fixture(scope="module")
def phantom_inputs(tmp_path_factory):
    """Knee phantoms as DICOM series laid out as scanners and archives do: nested folders, two series
    in one folder, plus a NIfTI whose name holds an underscore."""
    root = tmp_path_factory.mktemp("phantoms")
    paths = write_phantom_population(root / "made", 4, seed=3, formats=("dicom", "dicom", "dicom", "nifti"),
                                     shape_zyx=(10, 16, 16), spacing_xyz=(3.0, 3.0, 3.0), progress=False)
    inputs = root / "in"
    shutil.move(paths[0], inputs / "site_a" / "phantom01")  # nested: case id site_a_phantom01
    (inputs / "mixed").mkdir(parents=True)
    for index in (1, 2):  # two series in one folder: case ids mixed_series1_..., mixed_series2_...
        for path in sorted(paths[index].iterdir()):
            path.rename(inputs / "mixed" / f"{index}_{path.name}")
    shutil.move(paths[3], inputs / "knee_04.nii.gz")
    return inputs


def test_every_case_of_a_mednerf_layout_run_on_dicom_series_is_discovered(phantom_inputs, tmp_path, capsys):
    out = tmp_path / "drr"
    assert drr_generate([str(phantom_inputs), str(out), *FAST]) == 0, capsys.readouterr().err
    with open(out / "manifest.csv", encoding="utf-8") as handle:
        case_ids = sorted(row["case_id"] for row in csv.DictReader(handle))
    assert len(case_ids) == 4 and all("_" in case_id for case_id in case_ids)
    capsys.readouterr()
    found = discover_drr_images(out)
    assert sorted(found) == case_ids
    assert all(sorted(views) == list(range(VIEWS)) for views in found.values())
    assert "warning" not in capsys.readouterr().err  # raw/, manifest.csv and the record are not images
    images, keys = load_training_images(out, [case_ids[0]], 16)
    assert images.shape == (3 * VIEWS, 1, 16, 16) and {patient for patient, _ in keys} == set(case_ids[1:])


def test_mixed_folder_keeps_mednerf_ids_and_names_what_it_skips(tmp_path, capsys):
    for name in ("01_bbg_xray0000.png", "01_bbg_xray0001.png", "02_xray0000.png", "site_a_phantom01_xray0000.png",
                 "mixed_series1_123456_xray0000.png", "case7/xray0000.png", "case7/xray0001.png",
                 "scan_view3.png", "case7/thumbnail.png", "photo.JPG"):
        _png(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image: not reported")
    found = discover_drr_images(tmp_path)
    assert sorted(found) == ["01", "02", "case7", "mixed_series1_123456", "site_a_phantom01"]
    assert sorted(found["01"]) == [0, 1] and sorted(found["case7"]) == [0, 1]
    warning = capsys.readouterr().err.strip()
    assert warning.count("\n") == 0 and warning.startswith(f"warning: {tmp_path}: skipped 3 image files")
    assert "case7/thumbnail.png" in warning and "photo.JPG" in warning and "scan_view3.png" in warning
    assert "notes.txt" not in warning


def test_folder_of_only_unusable_images_names_them_in_the_error(tmp_path):
    for k in range(7):
        _png(tmp_path / f"view{k}.png")
    with pytest.raises(UserError, match=r"no DRR images .*skipped 7 image files .*view0.png, .* and 2 more$"):
        discover_drr_images(tmp_path)


def test_same_case_in_both_layouts_is_refused_not_merged(tmp_path):
    _png(tmp_path / "knee_01_xray0000.png")
    _png(tmp_path / "knee_01" / "xray0000.png")
    with pytest.raises(UserError, match="patient knee_01 view 0 also in"):
        discover_drr_images(tmp_path)
