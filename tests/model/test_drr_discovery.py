import pytest
from PIL import Image

from model.data import discover_drr_images, load_training_images, select_patients
from umed_common.errors import UserError


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 7).save(path)


def test_mednerf_flat_layout_with_bbg_names(tmp_path):
    for name in ("01_bbg_xray0000.png", "01_bbg_xray0005.png", "02_xray0000.png", "02_xray0071.png", "notes.txt"):
        _png(tmp_path / name) if name.endswith(".png") else (tmp_path / name).write_text("x")
    found = discover_drr_images(tmp_path)
    assert list(found) == ["01", "02"] and list(found["01"]) == [0, 5] and list(found["02"]) == [0, 71]


def test_drr_generate_case_folders(tmp_path):
    for case in ("caseA", "caseB"):
        for view in (0, 1):
            _png(tmp_path / case / f"xray{view:04d}.png")
    found = discover_drr_images(tmp_path)
    assert sorted(found) == ["caseA", "caseB"] and found["caseB"][1].name == "xray0001.png"


def test_errors(tmp_path):
    with pytest.raises(UserError, match="no such data folder"):
        discover_drr_images(tmp_path / "missing")
    with pytest.raises(UserError, match="no DRR images"):
        discover_drr_images(tmp_path)
    images = {"01": {0: None}, "02": {0: None}}
    with pytest.raises(UserError, match="no such patient"):
        select_patients(images, ["07"])
    with pytest.raises(UserError, match="nothing left"):
        select_patients(images, ["01", "02"])


def test_training_images_range_and_holdout(drr_folder):
    images, keys = load_training_images(drr_folder, ["02"], 16)
    assert images.shape == (8, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert {patient for patient, _ in keys} == {"01"}


def test_real_mednerf_release_layout(shared_data):
    root = shared_data / "mednerf_drr"
    if not (root / "knee").is_dir():
        pytest.skip(f"real MedNeRF DRRs not found at {root} (set UMED_SHARED_DATA)")
    knee = discover_drr_images(root / "knee")
    assert set(knee) >= {"01", "02", "03", "04"}
    assert set(range(72)) - set(knee["01"]) == {7, 25, 43, 61} and len(knee["02"]) == 72
    chest = discover_drr_images(root / "chest")
    assert "01" in chest and len(chest["01"]) == 72
