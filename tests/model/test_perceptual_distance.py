import numpy as np
import pytest
import torch

from model.perceptual import VGG16_FILE, SSIMDistance, build_perceptual, build_vgg16_distance
from umed_common.errors import UserError
from umed_common.measures import ssim


def test_ssim_distance_is_one_minus_ssim():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (40, 40))
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    x, y = torch.tensor(a)[None, None] / 127.5 - 1, torch.tensor(b)[None, None] / 127.5 - 1
    assert SSIMDistance()(x, y).item() == pytest.approx(1 - ssim(x, y, data_range=2.0).item(), abs=1e-12)
    assert abs(SSIMDistance()(torch.tensor(a)[None, None] / 127.5 - 1, torch.tensor(a)[None, None] / 127.5 - 1)) < 1e-9


def test_missing_vgg16_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as err:
        build_perceptual("vgg16")
    message = str(err.value)
    assert VGG16_FILE in message and str(tmp_path) in message and "download.pytorch.org" in message
    with pytest.raises(UserError):
        build_vgg16_distance(tmp_path / "nope.pth")


def test_vgg16_distance_structure_with_explicitly_random_weights():
    # Random weights, asked for explicitly by the test: checks shapes, gray input and zero distance only.
    distance = build_vgg16_distance(random_weights_for_tests=True)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert distance(x, x).item() < 1e-8
    assert distance(x, x.flip(-1)).item() > 0


@pytest.mark.parametrize("content", ["random bytes", "a tensor", "wrong keys", "empty"])
def test_unreadable_or_foreign_perceptual_weights_are_one_line_errors(tmp_path, content):
    path = tmp_path / "vgg.pth"
    if content == "random bytes":
        path.write_bytes(bytes(range(256)) * 40)
    elif content == "a tensor":
        torch.save(torch.zeros(3), path)
    elif content == "wrong keys":
        torch.save({"conv.weight": torch.zeros(3)}, path)
    else:
        path.write_bytes(b"")
    with pytest.raises(UserError) as err:
        build_vgg16_distance(path)
    assert str(err.value).startswith(f"{path}: not ") and "\n" not in str(err.value)


def test_umed_train_with_garbage_perceptual_weights_exits_2_before_any_folder(tmp_path, drr_folder, capsys):
    from model.cli_train import main
    (tmp_path / "vgg.pth").write_bytes(b"\x80\x02garbage")
    config = tmp_path / "c.yaml"
    config.write_text("perceptual: vgg16\n")
    out = tmp_path / "run"
    code = main(["--config", str(config), "--data", str(drr_folder), "--out", str(out), "--device", "cpu",
                 "--perceptual-weights", str(tmp_path / "vgg.pth"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "vgg.pth: not a readable weights file" in err and "Traceback" not in err
    assert not out.exists()
