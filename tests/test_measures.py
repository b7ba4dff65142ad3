"""umed_common.measures against scikit-image and closed forms."""
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from umed_common.measures import (minmax_signed, minmax_to_uint8, ncc, psnr, resize_gray, ssim, ssim_images)


def skimage_ssim(a, b, data_range=255):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range)


@pytest.mark.parametrize("shape", [(11, 11), (32, 47), (128, 128)])
def test_ssim_matches_skimage_on_random_images(shape):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, shape).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 30, shape), 0, 255).astype(np.uint8)
    assert ssim_images(a, b, 255) == pytest.approx(skimage_ssim(a, b), rel=1e-10, abs=1e-12)
    assert psnr(a, b, 255) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)


def test_torch_ssim_matches_skimage_in_float32_and_has_gradients():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (40, 40))
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    x = torch.tensor(a, dtype=torch.float32)[None, None].requires_grad_(True)
    value = ssim(x, torch.tensor(b, dtype=torch.float32)[None, None], data_range=255.0)
    assert value.shape == (1,) and abs(value.item() - skimage_ssim(a, b)) < 1e-6
    value.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_torch_ssim_channels_and_batch():
    rng = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 16, 16, generator=rng), torch.rand(2, 3, 16, 16, generator=rng)
    per_channel = torch.stack([ssim(x[:, [c]], y[:, [c]], 1.0) for c in range(3)]).mean(dim=0)
    torch.testing.assert_close(ssim(x, y, 1.0), per_channel)


def test_batched_equals_single():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0, 255, (3, 20, 24)), rng.uniform(0, 255, (3, 20, 24))
    np.testing.assert_allclose(ssim_images(a, b, 255), [ssim_images(x, y, 255) for x, y in zip(a, b)], rtol=1e-12)
    np.testing.assert_allclose(psnr(a, b, 255), [psnr(x, y, 255) for x, y in zip(a, b)], rtol=1e-12)
    np.testing.assert_allclose(ncc(a, b), [ncc(x, y) for x, y in zip(a, b)], rtol=1e-12)


def test_identical_images_and_known_values():
    image = np.random.default_rng(3).integers(0, 256, (16, 16)).astype(np.uint8)
    assert psnr(image, image, 255) == np.inf
    assert ssim_images(image, image, 255) == pytest.approx(1.0, abs=1e-12)
    # MSE 650.25 -> 10 log10(255^2 / 650.25) = 20 dB
    assert psnr(np.zeros((10, 10)), np.full((10, 10), 25.5), 255) == pytest.approx(20.0, abs=1e-12)
    assert abs(ncc(image, 2.0 * image + 1) - 1.0) < 1e-12
    assert abs(ncc(image, 255.0 - image) + 1.0) < 1e-12


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)), 255)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_images(np.zeros((8, 8)), np.zeros((8, 8)), 255)
    with pytest.raises(ValueError, match="data_range"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="data_range"):
        ssim(torch.zeros(1, 1, 11, 11), torch.zeros(1, 1, 11, 11), float("nan"))
    with pytest.raises(ValueError, match="B, C, H, W"):
        ssim(torch.zeros(11, 11), torch.zeros(11, 11), 1.0)
    with pytest.raises(ValueError, match="H, W"):
        ncc(np.zeros(4), np.zeros(4))


def test_minmax_paper_formula_per_image_and_constant_images():
    image = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_array_equal(minmax_to_uint8(image), np.round((image - 2) / 8 * 255).astype(np.uint8))
    assert minmax_to_uint8(np.full((3, 3), 7.0)).max() == 0
    stack = np.stack([image, image * 3 + 1])
    np.testing.assert_array_equal(minmax_to_uint8(stack), np.stack([minmax_to_uint8(image)] * 2))
    signed = minmax_signed(torch.tensor(stack))
    assert signed.amin(dim=(-2, -1)).tolist() == [-1.0, -1.0] and signed.amax(dim=(-2, -1)).tolist() == [1.0, 1.0]
    assert minmax_signed(torch.full((2, 3, 3), 5.0)).eq(-1).all()


def test_resize_gray_is_pillow_bilinear():
    image = (np.arange(12 * 20) % 251).astype(np.uint8).reshape(12, 20)
    expected = np.asarray(Image.fromarray(image).resize((10, 6), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_gray(image, (6, 10)), expected)
    assert resize_gray(image, (12, 20)) is image
