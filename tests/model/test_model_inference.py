import numpy as np

from model.api import discover_drr_images, load_checkpoint, sample_images


def test_sample_images_are_min_max_normalised_and_seeded(tiny_checkpoint):
    images = sample_images(tiny_checkpoint, 3, device="cpu", seed=4, batch_size=2, progress=False)
    assert images.shape == (3, 32, 32) and images.dtype == np.uint8
    assert (images.reshape(3, -1).max(axis=1) == 255).all() and (images.reshape(3, -1).min(axis=1) == 0).all()
    again = sample_images(tiny_checkpoint, 3, device="cpu", seed=4, batch_size=3, progress=False)
    other = sample_images(tiny_checkpoint, 3, device="cpu", seed=5, progress=False)
    assert np.array_equal(images, again) and not np.array_equal(images, other)


def test_api_reexports(tiny_checkpoint, drr_folder):
    assert load_checkpoint(tiny_checkpoint, "cpu").image_size == 32
    assert sorted(discover_drr_images(drr_folder)) == ["01", "02"]
