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


def test_one_render_entry_point_follows_the_callers_grad_context(tiny_checkpoint):
    import torch

    from model.cameras import view_poses

    generator = load_checkpoint(tiny_checkpoint, "cpu").generator.requires_grad_(True)
    z = torch.randn(2, generator.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    poses = view_poses(torch.tensor([0.0, 90.0]), 77.5, 10.5)
    with torch.no_grad():
        both = generator.render(z, poses, 16, chunk_rays=100)        # chunks of 100 rays: 3 per image
        shared = generator.render(z[:1], poses, 16)                    # one z at every pose
    assert both.shape == (2, 3, 16, 16) and not both.requires_grad
    assert torch.allclose(both[:1], shared[:1], atol=1e-6) and torch.allclose(both[1:], generator.render(
        z[1:], poses[1:], 16).detach(), atol=1e-6)
    traced = generator.render(z[:1], poses[:1], 16)
    assert traced.requires_grad and not torch.equal(shared[1], both[1])
    traced.mean().backward()
    assert next(generator.parameters()).grad is not None
