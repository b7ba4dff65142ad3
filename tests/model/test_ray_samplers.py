import math

import torch

from model.config import CameraConfig, PatchConfig
from model.ray_samplers import (full_image_grid, min_patch_scale, ray_depth_bounds, sample_patch_grids,
                                sample_real_patches, stratified_depths)


def test_coarse_to_fine_schedule_by_hand():
    cfg = PatchConfig()
    assert min_patch_scale(cfg, 0) == 0.9                          # exp(0) = 1 capped at 0.9
    assert abs(min_patch_scale(cfg, 100_500) - math.exp(-0.75)) < 1e-12
    assert min_patch_scale(cfg, 500_000) == 0.25


def test_patch_grids_stay_inside_the_image_and_have_the_drawn_scale():
    grids = sample_patch_grids(PatchConfig(), 64, 300_000, torch.Generator().manual_seed(0))
    assert grids.shape == (64, 32, 32, 2)
    assert grids.abs().max() <= 1.0 + 1e-6
    spans = (grids[:, 0, -1, 0] - grids[:, 0, 0, 0]) / 2
    assert spans.min() >= 0.25 - 1e-6 and spans.max() <= 1.0 + 1e-6


def test_real_patch_on_the_full_grid_is_the_image():
    image = torch.rand(2, 1, 16, 16)
    patch = sample_real_patches(image, full_image_grid(16).expand(2, -1, -1, -1))
    assert torch.allclose(patch, image, atol=1e-6)


def test_depth_bounds_and_stratified_bins():
    near, far = ray_depth_bounds(CameraConfig(), torch.tensor([10.0, 9.5]))
    assert near.tolist() == [7.0, 6.5] and far.tolist() == [12.0, 11.5]
    mid = stratified_depths(near, far, 3, 4, None)
    assert torch.allclose(mid[0, 0], torch.tensor([7.625, 8.875, 10.125, 11.375]))
    jitter = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))
    t = stratified_depths(near, far, 3, 4, jitter)
    bin_index = ((t - near[:, None, None]) / ((far - near)[:, None, None] / 4)).floor()
    assert torch.equal(bin_index, torch.arange(4.0).expand(2, 3, 4))
