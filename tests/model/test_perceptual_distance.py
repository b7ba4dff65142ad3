import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from model.perceptual import VGG16_FILE, SSIMDistance, build_perceptual, build_vgg16_distance, ssim
from umed_common.errors import UserError


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (40, 40))
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    ours = ssim(torch.tensor(a)[None, None], torch.tensor(b)[None, None], data_range=255.0).item()
    ref = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert abs(ours - ref) < 1e-6
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
