import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.metrics import normalise, score_views
from umed_common.images import read_gray
from umed_common.measures import psnr, ssim_images


def skimage_ssim(a, b, data_range=255):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range)


def test_metrics_match_skimage_on_real_drrs(knee_dir):
    a, b = read_gray(knee_dir / "02_xray0000.png"), read_gray(knee_dir / "02_xray0003.png")
    assert ssim_images(a, b, 255) == pytest.approx(skimage_ssim(a, b), rel=1e-10)
    assert psnr(a, b, 255) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)
    assert 0.0 < ssim_images(a, b, 255) < 1.0


def test_identical_views_give_inf_psnr():
    image = np.random.default_rng(3).integers(0, 256, (16, 16)).astype(np.uint8)
    scores = score_views(np.stack([image, image]), np.stack([image, 255 - image]))
    assert scores["psnr"][0] == np.inf and np.isfinite(scores["psnr"][1])
    assert scores["ssim"][0] == pytest.approx(1.0, abs=1e-12)


def test_score_views_normalises_each_image_first():
    rng = np.random.default_rng(4)
    target = rng.integers(0, 256, (2, 16, 16)).astype(np.uint8)
    # A render at another brightness scale but the same structure scores as identical after min-max.
    scaled = target.astype(np.float64) * 0.25 + 10
    assert np.all(score_views(scaled, target)["psnr"] > 50)


def test_mednerf_convention():
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:32, 0:32] / 32.0
    target = np.stack([np.sin(3 * rows) * np.cos(2 * cols), rows * cols])  # smooth, image-like
    pred = target + rng.normal(0, 0.05, target.shape)
    paper, mednerf = score_views(pred, target, "paper"), score_views(pred, target, "mednerf")
    # PSNR is invariant to the common affine map 0..255 -> [-1, 1]: only 8-bit rounding differs.
    np.testing.assert_allclose(paper["psnr"], mednerf["psnr"], atol=0.05)
    # SSIM is not: its luminance term sees signed means in [-1, 1]. It is still Wang's SSIM there.
    for k in range(2):
        (p, data_range), (t, _) = normalise(pred[k], "mednerf"), normalise(target[k], "mednerf")
        assert data_range == 2.0 and p.min() == -1.0 and p.max() == 1.0
        assert mednerf["ssim"][k] == pytest.approx(skimage_ssim(p, t, data_range=2.0), rel=1e-10)
    assert abs(paper["ssim"][1] - mednerf["ssim"][1]) > 0.01


def test_bad_input_raises():
    with pytest.raises(ValueError, match="convention"):
        normalise(np.zeros((4, 4)), "upstream")
    with pytest.raises(ValueError, match="stacks"):
        score_views(np.zeros((16, 16)), np.zeros((16, 16)))
