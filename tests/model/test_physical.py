"""The physically matched family: DRR camera, pixel model, pose handling, fitting schedule, train/fine-tune."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from drr.projector import project
from drr.writer import mednerf_uint8
from model import cli_finetune, cli_train
from model.atlas import bounded_gain, fit_scale, raw_from_gain, similarity_matrix, warp_volumes, yaw_matrix
from model.fit_result import input_view_metrics
from model.config import config_from_dict
from model.drr_camera import (camera_from_preset, detector_positions, line_integrals, ray_samples,
                              to_release_orientation)
from model.physical import camera_for, fit_single_view
from model.perceptual import build_perceptual
from umed_common.errors import UserError
from umed_common.measures import ncc

BOX_MM = 200.0


def blob_volume(grid: int, centres_mm, widths_mm, box_mm: float = BOX_MM) -> torch.Tensor:
    """(grid, grid, grid) z, y, x: a sum of smooth Gaussian blobs of attenuation (per mm) on the box grid."""
    axis = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid * box_mm - box_mm / 2
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    volume = torch.zeros_like(x)
    for (cx, cy, cz), (wx, wy, wz) in zip(centres_mm, widths_mm):
        volume += 0.02 * torch.exp(-0.5 * (((x - cx) / wx) ** 2 + ((y - cy) / wy) ** 2 + ((z - cz) / wz) ** 2))
    return volume.float()


def box_affine(grid: int, box_mm: float = BOX_MM) -> np.ndarray:
    """Index (x, y, z) -> world mm of the box grid (voxel centres), isocentre at the origin."""
    spacing = box_mm / grid
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -box_mm / 2 + spacing / 2
    return affine


ASYMMETRIC = dict(centres_mm=[(25.0, -10.0, 5.0), (-30.0, 20.0, -25.0), (0.0, 0.0, 30.0)],
                  widths_mm=[(20.0, 12.0, 30.0), (10.0, 15.0, 12.0), (35.0, 30.0, 10.0)])


def test_model_renderer_matches_the_drr_projector_per_view():
    """Acceptance 5: a known attenuation volume through the model's camera and through drr.projector with the
    same geometry gives the same DRRs (per-view NCC >= 0.999), left-right orientation and angles included."""
    grid = 64
    volume = blob_volume(grid, **ASYMMETRIC)
    camera = camera_from_preset("knee", 32, BOX_MM)
    views = list(range(0, 72, 6))
    samples, step_mm = ray_samples(camera, views, 160)
    ours = line_integrals(volume, samples, step_mm)
    reference = project(volume, box_affine(grid), camera.geometry, method="exact", view_indices=views)
    for k in range(len(views)):
        assert ncc(ours[k].numpy(), reference[k].numpy()) >= 0.999, views[k]
    assert torch.allclose(ours.sum(), reference.sum(), rtol=0.02)  # same physical scale (mu per mm x mm)
    # the release's left-right flip is the writer's: model images in release orientation equal its PNGs
    release = to_release_orientation(ours[0]).numpy()
    assert np.array_equal(mednerf_uint8(reference[0].numpy()) > 128, release / release.max() * 255 > 128) or \
        ncc(mednerf_uint8(reference[0].numpy()), release) > 0.999


def test_least_squares_scale_by_hand():
    integrals = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])
    target = torch.tensor([[[2.0, 4.0], [0.0, 2.0]]])
    assert fit_scale(integrals, target).item() == pytest.approx(2.0)
    # a = <L, t> / <L, L> = (1 + 0) / (1 + 1) for L = (1, 1), t = (1, 0)
    assert fit_scale(torch.ones(1, 1, 2), torch.tensor([[[1.0, 0.0]]])).item() == pytest.approx(0.5)


def test_detector_positions_by_hand():
    camera = camera_from_preset("knee", 128, BOX_MM)
    origin = torch.zeros(1, 3)
    assert torch.allclose(detector_positions(camera, 0, origin), torch.zeros(1, 2), atol=1e-6)
    # view 0: source on +x, columns along (sin 0, cos 0, 0) = +y, rows towards -z. A point at y = 10 mm in the
    # isocentre plane lands at 10 * SID / SAD mm along the columns; one pixel is 350 / 128 mm, and grid
    # coordinates put +1 at the last pixel centre, (128 - 1) / 2 pixels from the centre.
    point = torch.tensor([[0.0, 10.0, -20.0]]) / (BOX_MM / 2)
    col, row = detector_positions(camera, 0, point)[0].tolist()
    pixel_mm, half = 350.0 / 128, 63.5
    assert col == pytest.approx(10.0 * 949.0 / 541.0 / pixel_mm / half, rel=1e-5)
    assert row == pytest.approx(20.0 * 949.0 / 541.0 / pixel_mm / half, rel=1e-5)
    # view 18 (90 deg): the source is on -y, columns along +x
    col90 = detector_positions(camera, 18, torch.tensor([[10.0, 0.0, 0.0]]) / (BOX_MM / 2))[0, 0].item()
    assert col90 == pytest.approx(10.0 * 949.0 / 541.0 / pixel_mm / half, rel=1e-4)


def test_ray_samples_project_back_onto_their_own_pixel():
    # every sample along a pixel's ray lands on that pixel's centre in its own view's detector: grid coordinate
    # -1 + 2 k / (S - 1) for column k (rows likewise), at any view and depth
    camera = camera_from_preset("knee", 16, BOX_MM)
    samples, _ = ray_samples(camera, [0, 7, 40], 24)
    centres = torch.linspace(-1.0, 1.0, 16)
    for index, view in enumerate((0, 7, 40)):
        where = detector_positions(camera, view, samples[index])  # (16, 16, 24, 2) as (column, row)
        assert torch.allclose(where[..., 0], centres[None, :, None].expand(16, 16, 24), atol=2e-5)
        assert torch.allclose(where[..., 1], centres[:, None, None].expand(16, 16, 24), atol=2e-5)


def test_similarity_pose_by_hand():
    identity = similarity_matrix(torch.zeros(4), 0.0)[0]
    assert torch.allclose(identity, torch.cat([torch.eye(3), torch.zeros(3, 1)], 1))
    # shift 0.1 along view 0's columns (+y), vertical scale e^0.5; the matrix maps output to atlas coordinates
    matrix = similarity_matrix(torch.tensor([0.1, 0.0, 0.0, 0.5]), 0.0)[0]
    expected = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, -0.1], [0, 0, math.exp(-0.5), 0]])
    assert torch.allclose(matrix, expected, atol=1e-6)
    # at 90 deg the column axis is +x, so the same shift moves x
    assert similarity_matrix(torch.tensor([0.1, 0.0, 0.0, 0.0]), 90.0)[0, 0, 3].item() == pytest.approx(-0.1)


def test_warp_with_identity_pose_keeps_the_volume():
    volume = blob_volume(16, **ASYMMETRIC)[None]
    assert torch.allclose(warp_volumes(volume, similarity_matrix(torch.zeros(4), 30.0)), volume, atol=1e-5)


def test_bounded_gain_by_hand():
    assert bounded_gain(torch.zeros(2), 4.0).tolist() == [1.0, 1.0]
    assert bounded_gain(torch.tensor([50.0, -50.0]), 4.0).tolist() == pytest.approx([4.0, 0.25])
    gains = torch.tensor([0.5, 1.0, 3.0])
    assert torch.allclose(bounded_gain(raw_from_gain(gains, 4.0), 4.0), gains, atol=1e-5)


def tiny_config(**physical) -> dict:
    base = {"grid": 16, "train_size": 32, "samples": 32, "render_samples": 48, "recon_steps": 30,
            "views_per_step": 4, "fit_size": 32, "fit_steps": 12, "gain_steps": 8,
            "pose_prior_candidates": [0.01, 0.1], "calibration_views": [0], "box_mm": BOX_MM}
    return {"family": "physical", "image_size": 32, "perceptual": "ssim", "physical": {**base, **physical}}


def two_blob_fit_case() -> tuple[torch.Tensor, torch.Tensor, object]:
    """A two-volume atlas, the normalised view 9 (32 px) of a third volume, and the knee camera at 32 px."""
    atlas = torch.stack([blob_volume(16, **ASYMMETRIC), blob_volume(16, [(0.0, 0.0, 0.0)], [(40.0, 30.0, 50.0)])])
    truth = blob_volume(32, [(10.0, 0.0, 0.0), (-20.0, 10.0, 20.0)], [(30.0, 25.0, 40.0), (10.0, 10.0, 10.0)])
    camera = camera_from_preset("knee", 32, BOX_MM)
    samples, step_mm = ray_samples(camera, [9], 64)
    target = line_integrals(truth, samples, step_mm)[0]
    target = target / target.max()
    return atlas, target, camera


def test_fitting_schedule_latent_then_gain_reaches_the_input_view():
    cfg = config_from_dict(tiny_config())
    atlas, target, camera = two_blob_fit_case()
    rows: list[dict] = []
    state = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01, rows)
    stages = [r["stage"] for r in rows]
    assert stages == ["latent"] * 12 + ["gain"] * 8
    assert state.gain.min() >= 0.25 - 1e-6 and state.gain.max() <= 4.0 + 1e-6
    assert state.volume.min() >= 0 and len(state.weights) == 4  # the atlas and its mirrors
    from model.atlas_fit import render_integrals
    rendered = render_integrals(state, camera, 64, views=[9])[0]
    from umed_common.measures import minmax_to_uint8
    psnr, _ = input_view_metrics(rendered, minmax_to_uint8(target.numpy()))
    assert psnr > 30.0
    # upstream's protocol: the gain stage stops at the first step that reaches the target (here at once)
    rows = []
    fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01, rows, psnr_target=20.0)
    gain_rows = [r for r in rows if r["stage"] == "gain"]
    assert len(gain_rows) == 1 and gain_rows[0]["psnr"] >= 20.0


def test_depth_profile_by_hand():
    from model.atlas_fit import depth_norm_map, depth_profile, shade
    ray = torch.tensor([[1.0, 3.0]])                       # one input ray, two samples
    norm = depth_norm_map(ray, 2.0)                         # (1 + 9) / (1 + 3)
    assert norm.tolist() == pytest.approx([2.5])
    q = depth_profile(ray, norm[..., None], 2.0)
    assert q[0].tolist() == pytest.approx([0.4, 1.2])       # the dense sample takes 3x the change
    assert float((ray * q).sum()) == pytest.approx(float(ray.sum()))  # q averages 1 under the prior
    assert torch.equal(depth_profile(ray, norm[..., None], 1.0), torch.ones_like(ray))
    # a ray with no prior takes the smallest N of the rays with one, so q stays bounded between rays
    rays = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 0.0]])
    assert depth_norm_map(rays, 2.0).tolist() == pytest.approx([2.5, 2.0, 2.0])
    # power 1 is the plain gain: g * L exactly
    assert shade(ray, torch.tensor([2.0]), depth_norm_map(ray, 1.0), 1.0, 0.5).tolist() == \
        pytest.approx([4.0])
    # power 2 with g = 2: 1 * 2^0.4 + 3 * 2^1.2, times the step
    assert shade(ray, torch.tensor([2.0]), norm, 2.0, 0.5).tolist() == \
        pytest.approx([0.5 * (2 ** 0.4 + 3 * 2 ** 1.2)])


def test_depth_power_fits_the_input_view_and_keeps_attenuation_non_negative():
    from model.atlas_fit import render_integrals
    from model.physical import fitted_attenuation
    from umed_common.measures import minmax_to_uint8
    cfg = config_from_dict(tiny_config(gain_depth_power=3.0, gain_steps=40))
    atlas, target, camera = two_blob_fit_case()
    state = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01)
    assert state.depth_power == 3.0 and state.depth_norm.shape == (32, 32)
    rendered = render_integrals(state, camera, cfg.physical.render_samples, views=[9])[0]
    psnr, _ = input_view_metrics(rendered, minmax_to_uint8(target.numpy()))
    assert psnr > 28.0
    assert fitted_attenuation(state, camera).min() >= 0


def test_axis_closeness_and_input_depth_by_hand():
    from drr.geometry import view_frames
    from model.atlas_fit import axis_closeness, input_depth_mm
    d = torch.tensor([0.0, 20.0, -40.0])
    assert axis_closeness(d, 20.0).tolist() == pytest.approx([1.0, math.exp(-0.5), math.exp(-2.0)])
    assert torch.equal(axis_closeness(d, 0.0), torch.ones(3))          # 0 is off
    camera = camera_from_preset("knee", 8, BOX_MM)
    for view in (0, 9, 18, 50):
        frames = {k: v[0].float() for k, v in view_frames(camera.geometry, [view], dtype=torch.float64).items()}
        across = frames["col_axis"] * 30.0 + frames["row_axis"] * 20.0  # in the detector's plane through the axis
        points = torch.stack([torch.zeros(3), frames["source"], frames["detector_centre"], across]) / (BOX_MM / 2)
        sad, sid = camera.geometry.source_to_isocenter_mm, camera.geometry.source_to_detector_mm
        assert input_depth_mm(camera, view, points).tolist() == pytest.approx([0.0, -sad, sid - sad, 0.0],
                                                                               abs=1e-3)


def test_depth_profile_with_axis_closeness_by_hand():
    from model.atlas_fit import depth_norm_map, depth_profile, shade
    ray, near = torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 0.5]])  # the dense sample is off the axis
    norm = depth_norm_map(ray, 2.0, near)                   # (1 * 1 + 9 * 0.5) / (1 + 3)
    assert norm.tolist() == pytest.approx([1.375])
    q = depth_profile(ray, norm[..., None], 2.0, near)
    assert q[0].tolist() == pytest.approx([1 / 1.375, 1.5 / 1.375])
    assert float((ray * q).sum()) == pytest.approx(float(ray.sum()))  # q still averages 1 under the prior
    # power 1 with closeness is no longer the plain gain: the change follows c alone
    norm1 = depth_norm_map(ray, 1.0, near)                  # (1 + 1.5) / 4
    assert norm1.tolist() == pytest.approx([0.625])
    assert depth_profile(ray, norm1[..., None], 1.0, near)[0].tolist() == pytest.approx([1.6, 0.8])
    assert shade(ray, torch.tensor([2.0]), norm1, 1.0, 0.5, near).tolist() == \
        pytest.approx([0.5 * (2 ** 1.6 + 3 * 2 ** 0.8)])
    # a ray whose prior sits far from the axis: c falls 1000-fold along it, and q stops at its ceiling of 4
    far = torch.tensor([[1.0, 1e-3]])
    norm_far = depth_norm_map(torch.tensor([[0.1, 10.0]]), 1.0, far)   # (0.1 + 0.01) / 10.1
    assert depth_profile(torch.tensor([[0.1, 10.0]]), norm_far[..., None], 1.0, far)[0].tolist() == \
        pytest.approx([4.0, 1e-3 * 10.1 / 0.11])


@pytest.mark.parametrize("power", [1.0, 3.0])
def test_axis_closeness_fits_the_input_view_and_moves_the_change_toward_the_axis(power):
    from model.atlas_fit import input_depth_mm, render_integrals
    from model.physical import fitted_attenuation
    from umed_common.measures import minmax_to_uint8
    atlas, target, camera = two_blob_fit_case()
    perceptual = build_perceptual("ssim")
    spread = {}
    for sigma in (0.0, 15.0):
        cfg = config_from_dict(tiny_config(gain_depth_power=power, gain_depth_sigma_mm=sigma, gain_steps=40))
        state = fit_single_view(atlas, target, 9, cfg, None, perceptual, 0.01)
        assert state.depth_sigma_mm == sigma
        rendered = render_integrals(state, camera, cfg.physical.render_samples, views=[9])[0]
        assert input_view_metrics(rendered, minmax_to_uint8(target.numpy()))[0] > 28.0
        mu = fitted_attenuation(state, camera)
        assert mu.min() >= 0
        # where along the input rays the fit changed the prior: mean |depth| weighted by |mu - mu_A|
        axes = [(torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1 for n in mu.shape]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        depth = input_depth_mm(camera, 9, torch.stack([x, y, z], -1)).abs()
        change = (mu - state.volume).abs()
        spread[sigma] = float((change * depth).sum() / change.sum())
    assert spread[15.0] < 0.8 * spread[0.0]


def test_split_gain_by_hand():
    from model.atlas_fit import split_gain
    flat = torch.full((9, 9), 2.0)
    coarse, detail = split_gain(flat, 2.0)                   # nothing fine in a constant gain
    assert torch.allclose(coarse, flat) and torch.allclose(detail, torch.ones(9, 9))
    spike = torch.ones(9, 9)
    spike[4, 4] = math.e                                     # log gain: 1 at one pixel, 0 elsewhere
    coarse, detail = split_gain(spike, 1.0)
    g = [math.exp(-0.5 * k * k) for k in range(-4, 5)]       # scipy's Gaussian: truncated at 4 sigma, normalised
    centre = (g[4] / sum(g)) ** 2
    assert float(coarse[4, 4].log()) == pytest.approx(centre, rel=1e-6)
    assert float(detail[4, 4].log()) == pytest.approx(1.0 - centre, rel=1e-6)
    assert float(coarse[4, 5].log()) == pytest.approx(centre * g[5] / g[4], rel=1e-6)
    assert torch.allclose(coarse * detail, spike)


def test_detail_gain_multiplies_with_its_slab_profile_by_hand():
    from model.atlas_fit import AtlasState, modulation
    camera = camera_from_preset("knee", 8, BOX_MM)
    # view 0 looks along x: depth is x; two points on the axis plane (x = 0) and two 20 mm from it
    points = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.1, -0.1], [20.0, 0.0, 0.0], [-20.0, 5.0, 0.0]]) / (BOX_MM / 2)
    values = torch.ones(4)
    state = AtlasState(torch.ones(4, 4, 4), torch.full((8, 8), 2.0), 0, torch.ones(1), torch.zeros(4),
                       depth_norm=torch.ones(8, 8), detail=torch.full((8, 8), 3.0),
                       detail_norm=torch.full((8, 8), 0.5), detail_sigma_mm=20.0)
    q = [2.0, 2.0, 2.0 * math.exp(-0.5), 2.0 * math.exp(-0.5)]           # c_H / N_H
    assert modulation(state, camera, points, values).tolist() == pytest.approx([2.0 * 3.0 ** k for k in q], rel=1e-5)
    state.detail = None                                                   # the plain gain again
    assert modulation(state, camera, points, values).tolist() == pytest.approx([2.0] * 4)


def detail_fit_case():
    """two_blob_fit_case's atlas with a target that has fine detail the blobs lack: bright dots, 2 px apart in
    the columns, on the middle rows, so each of those rows gains net brightness."""
    atlas, target, camera = two_blob_fit_case()
    dots = torch.zeros_like(target)
    dots[10:22, 8:24:2] = 0.15
    target = target + dots * (target > 0.2)
    return atlas, target / target.max(), camera


@pytest.mark.parametrize("power", [1.0, 3.0])
def test_detail_fit_reaches_the_input_view_and_keeps_its_rows_net_change_small(power, monkeypatch):
    import model.atlas_fit as atlas_fit
    from model.atlas_fit import render_integrals
    from model.physical import fitted_attenuation
    from umed_common.measures import minmax_to_uint8
    atlas, target, camera = detail_fit_case()
    perceptual = build_perceptual("ssim")
    cfg = config_from_dict(tiny_config(gain_depth_power=power, detail_sigma_mm=8.0, detail_scale_mm=15.0, gain_steps=60,
                                         gain_lr=0.05))
    net, landed = {}, atlas_fit.DETAIL_ROW_WEIGHT
    for weight in (landed, 0.0):
        monkeypatch.setattr(atlas_fit, "DETAIL_ROW_WEIGHT", weight)
        rows: list[dict] = []
        state = fit_single_view(atlas, target, 9, cfg, None, perceptual, 0.01, rows)
        assert [r["stage"] for r in rows] == ["latent"] * 12 + ["gain"] * 60 + ["detail"] * 60
        assert state.detail is not None and state.detail_sigma_mm == 8.0
        rendered = render_integrals(state, camera, cfg.physical.render_samples, views=[9])[0]
        assert input_view_metrics(rendered, minmax_to_uint8(target.numpy()))[0] > 30.0
        assert fitted_attenuation(state, camera).min() >= 0
        # the slab's net change per detector row at the input view, relative to the row's whole line integral
        plain = dataclasses.replace(state, detail=None)
        with_detail = render_integrals(state, camera, cfg.physical.render_samples, views=[9])[0]
        without = render_integrals(plain, camera, cfg.physical.render_samples, views=[9])[0]
        net[weight] = float((with_detail - without).sum(1).abs().max() / with_detail.sum(1).max())
    assert net[landed] < 0.5 * net[0.0]


def test_far_gain_multiplies_the_input_gain_by_hand():
    from model.atlas_fit import AtlasState, modulation
    camera = camera_from_preset("knee", 8, BOX_MM)
    points = torch.rand(5, 3) * 0.5 - 0.25
    values = torch.ones(5)
    state = AtlasState(torch.ones(4, 4, 4), torch.full((8, 8), 2.0), 9, torch.ones(1), torch.zeros(4))
    assert modulation(state, camera, points, values).tolist() == pytest.approx([2.0] * 5)
    state.far_gain, state.far_view = torch.full((8, 8), 3.0), 45
    assert modulation(state, camera, points, values).tolist() == pytest.approx([6.0] * 5)


def test_mirror_view_pulls_the_far_side_toward_the_mirrored_input():
    from model.atlas_fit import render_integrals
    from model.physical import fitted_attenuation
    from umed_common.measures import minmax_to_uint8
    atlas, target, camera = two_blob_fit_case()
    renders = {}
    for weight in (0.0, 1.0):
        cfg = config_from_dict(tiny_config(mirror_view_weight=weight, gain_steps=40))
        state = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01)
        assert (state.far_gain is not None) == (weight > 0)
        renders[weight] = render_integrals(state, camera, cfg.physical.render_samples, views=[9, 45])
        psnr, _ = input_view_metrics(renders[weight][0], minmax_to_uint8(target.numpy()))
        assert psnr > 28.0
        assert fitted_attenuation(state, camera).min() >= 0
    mirrored = target.flip(-1)

    def far_error(rendered):
        return float(((rendered / rendered.max() - mirrored) ** 2).mean())
    assert far_error(renders[1.0][1]) < 0.8 * far_error(renders[0.0][1])


def test_control_map_by_hand():
    from model.atlas_fit import control_map
    points = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert control_map(points, 3).flatten().tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 2.5, 3.0])
    assert control_map(points, 2) is points                  # as many points as pixels: the map itself


def test_far_gain_grid_makes_the_far_gain_bilinear_between_its_control_points():
    atlas, target, camera = two_blob_fit_case()
    curvature = {}
    for grid in (0, 5):
        cfg = config_from_dict(tiny_config(mirror_view_weight=1.0, gain_steps=20, far_gain_grid=grid))
        far = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01).far_gain
        assert far.shape == (32, 32)
        raw = torch.atanh(far.double().log() / math.log(4.0))   # undo bounded_gain (max_gain 4)
        # 5 points over 32 px: one every 31 / 4 = 7.75 px, so columns 0..7 lie between the first two points,
        # where a bilinear map is linear along the rows: second differences centred on columns 1..6
        curvature[grid] = float((raw[:, 0:6] - 2 * raw[:, 1:7] + raw[:, 2:8]).abs().max())
    assert curvature[5] < 1e-4
    assert curvature[0] > 1e-3                                    # one value per pixel: detail between them


def test_clear_air_by_hand():
    from model.atlas import clear_air
    volume = torch.zeros(10, 10, 10)
    volume[:5] = 0.0003                                      # the tomography's floor in the air
    volume[5:] = torch.linspace(0.005, 0.02, 500).reshape(5, 10, 10)
    p99 = float(torch.quantile(volume.flatten(), 0.99))
    cleared = clear_air(volume, 0.05)
    assert float(cleared[:5].abs().max()) == 0.0             # 0.0003 < 0.05 * p99 (~0.001)
    assert torch.equal(cleared[5:], volume[5:])              # tissue kept bit for bit
    assert 0.05 * p99 > 0.0003
    assert torch.equal(clear_air(volume, 0.0), volume)      # 0 is off


@pytest.mark.parametrize("power", [1.0, 3.0])
def test_carved_rays_render_air_at_the_input_view(power):
    from model.atlas_fit import carve_air, render_integrals
    from model.physical import fitted_attenuation
    gain = torch.full((2, 2), 2.0)
    target = torch.tensor([[0.0, 0.5], [0.003, 1.0]])
    assert carve_air(gain, target, 0.004).tolist() == [[0.0, 2.0], [0.0, 2.0]]
    assert torch.equal(carve_air(gain, target, 0.0), gain)
    # a fit whose X-ray has air where the prior has a blob: those pixels render exactly 0, the rest is unchanged
    cfg = config_from_dict(tiny_config(gain_depth_power=power, gain_steps=20, air_level=0.004))
    atlas, target, camera = two_blob_fit_case()
    target = target.clone()
    target[:, :8] = 0.0                                      # the X-ray shows air on its left quarter
    plain = fit_single_view(atlas, target, 9, config_from_dict(tiny_config(gain_depth_power=power, gain_steps=20)),
                            None, build_perceptual("ssim"), 0.01)
    state = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01)
    assert float(state.gain[:, :8].abs().max()) == 0.0
    assert torch.equal(state.gain, torch.where(target > 0.004, plain.gain, torch.zeros_like(plain.gain)))
    rendered = render_integrals(state, camera, cfg.physical.render_samples, views=[9])[0]
    before = render_integrals(plain, camera, cfg.physical.render_samples, views=[9])[0]
    assert float(before[:, 1:7].max()) > 0                  # the prior cast a shadow there, the gain fit kept it
    assert float(rendered[:, 1:7].abs().max()) < 1e-6 * float(rendered.max())
    volume = fitted_attenuation(state, camera)
    assert torch.isfinite(volume).all() and volume.min() >= 0


def test_cut_to_outline_by_hand():
    from model.atlas import cut_to_outline
    members = torch.zeros(3, 1, 1, 4)
    members[0, 0, 0] = torch.tensor([1.0, 1.0, 1.0, 0.0])    # widest member
    members[1, 0, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    members[2, 0, 0] = torch.tensor([1.0, 0.1, 0.0, 0.0])    # 0.1 < 0.2 * its 99th percentile: not tissue
    weights = torch.tensor([0.25, 0.25, 0.5])
    blended = (weights[:, None, None, None] * members).sum(0)
    # tissue share per voxel: 1, 0.5, 0.25, 0
    assert cut_to_outline(members, weights, blended, 0.3)[0, 0].tolist() == pytest.approx([1.0, 0.55, 0.0, 0.0])
    assert cut_to_outline(members, weights, blended, 0.2)[0, 0].tolist() == pytest.approx([1.0, 0.55, 0.25, 0.0])
    assert torch.equal(cut_to_outline(members, weights, blended, 0.0), blended)
    # negative weights (a shape model's) count for nothing: the share is of the positive ones, 0.25 / 0.5 each
    signed = torch.tensor([0.25, 0.25, -0.5])
    assert cut_to_outline(members, signed, blended, 0.6)[0, 0].tolist() == pytest.approx([1.0, 0.55, 0.0, 0.0])


def test_outlined_fit_reaches_the_input_view_with_air_outside_the_members():
    from model.atlas_fit import render_integrals
    from umed_common.measures import minmax_to_uint8
    cfg = config_from_dict(tiny_config(outline_share=0.5, gain_steps=40))
    atlas, target, camera = two_blob_fit_case()
    state = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01)
    plain = fit_single_view(atlas, target, 9, config_from_dict(tiny_config(gain_steps=40)), None,
                            build_perceptual("ssim"), 0.01)
    assert float((state.volume > 0).float().mean()) < float((plain.volume > 1e-6).float().mean())
    assert state.volume.min() >= 0
    rendered = render_integrals(state, camera, cfg.physical.render_samples, views=[9])[0]
    psnr, _ = input_view_metrics(rendered, minmax_to_uint8(target.numpy()))
    assert psnr > 28.0


def test_voxel_points_and_unfillable_rays_by_hand():
    from model.atlas_fit import unfillable_rays, voxel_points
    points = voxel_points((1, 2, 4))
    assert points.shape == (1, 2, 4, 3)
    assert points[0, 0, :, 0].tolist() == [-0.75, -0.25, 0.25, 0.75]      # x along the last axis (W)
    assert points[0, :, 0, 1].tolist() == [-0.5, 0.5] and points[0, 0, 0, 2] == 0.0
    prior = torch.ones(2, 2)
    target = torch.tensor([[0.5, 0.5], [0.5, 0.0]])
    cleared = torch.tensor([[1.0, 0.1], [0.0, 0.0]])
    # a = 1.5 / 4 = 0.375; a * cleared * 4 = [[1.5, 0.15], [0, 0]] against the target; the air pixel never counts
    assert unfillable_rays(prior, cleared, target, 0.0, 4.0).tolist() == [[False, True], [True, False]]
    assert unfillable_rays(prior, cleared, target, 0.6, 4.0).tolist() == [[False, False], [False, False]]


def test_blend_floor_is_cleared_except_along_the_rays_only_it_can_fill():
    from model.atlas_fit import clear_blend_floor
    camera = camera_from_preset("knee", 32, BOX_MM)
    narrow = blob_volume(24, [(0.0, 0.0, 0.0)], [(20.0, 20.0, 20.0)])
    floor = 0.01 * float(torch.quantile(narrow.flatten(), 0.99))
    volume = torch.where(narrow < floor, torch.full_like(narrow, floor), narrow)  # the tomography's floor in the air
    tissue = volume >= 0.05 * float(torch.quantile(volume.flatten(), 0.99))
    samples, step_mm = ray_samples(camera, [9], 64)

    def xray(v):
        integrals = line_integrals(v, samples, step_mm)[0]
        return integrals / integrals.max()
    # the patient is wider than the prior: its rim is filled by the floor alone, which stays along those rays
    wide = clear_blend_floor(volume, camera, 9, xray(blob_volume(24, [(0.0, 0.0, 0.0)], [(30.0, 30.0, 30.0)])),
                             0.05, 0.004, 4.0, 64)
    rim = (wide > 0) & ~tissue
    assert bool(rim.any()) and torch.equal(wide[rim], volume[rim]) and torch.equal(wide[tissue], volume[tissue])
    assert float(wide[~tissue].eq(0).float().mean()) > 0.3    # and is air elsewhere
    # a patient the cleared prior can cast: the whole floor goes, the tissue stays bit for bit
    fits = clear_blend_floor(volume, camera, 9, xray(volume * tissue), 0.05, 0.004, 4.0, 64)
    assert float(fits[~tissue].abs().max()) == 0.0 and torch.equal(fits[tissue], volume[tissue])
    assert torch.equal(clear_blend_floor(volume, camera, 9, xray(narrow), 0.0, 0.004, 4.0, 64), volume)
    # another view's air: the floor's haze is gone
    far = ray_samples(camera, [27], 64)
    air = line_integrals(narrow, *far)[0] < 1e-3 * float(line_integrals(narrow, *far)[0].max())
    assert float(line_integrals(volume, *far)[0][air].min()) > 0
    assert float(line_integrals(fits, *far)[0][air].max()) < 1e-3 * float(line_integrals(narrow, *far)[0].max())


def test_fit_with_the_blend_floor_cleared_reaches_the_input_view_with_less_air_haze():
    from model.atlas_fit import render_integrals
    from umed_common.measures import minmax_to_uint8
    atlas, target, camera = two_blob_fit_case()
    atlas = atlas + 0.01 * torch.quantile(atlas.flatten(1), 0.99, dim=1)[:, None, None, None]  # a floor everywhere
    states = {f: fit_single_view(atlas, target, 9, config_from_dict(tiny_config(blend_air_floor=f, gain_steps=40)),
                                 None, build_perceptual("ssim"), 0.01) for f in (0.0, 0.05)}
    air = {f: float(state.volume.eq(0).float().mean()) for f, state in states.items()}
    assert air[0.05] > air[0.0] + 0.2
    rendered = render_integrals(states[0.05], camera, 48, views=[9, 27])
    psnr, _ = input_view_metrics(rendered[0], minmax_to_uint8(target.numpy()))
    assert psnr > 28.0
    before = render_integrals(states[0.0], camera, 48, views=[27])[0]
    assert float(rendered[1].min()) < 0.2 * float(before.min())  # the far view's emptiest ray: the floor is gone


def test_air_options_are_checked():
    for bad in ({"air_floor": -0.1}, {"air_level": 1.0}, {"air_floor": float("nan")}, {"outline_share": 1.5},
                {"mirror_view_weight": -1.0}, {"mirror_view_weight": 1.0, "gain_depth_power": 2.0},
                {"gain_depth_sigma_mm": -5.0}, {"gain_depth_sigma_mm": float("inf")},
                {"mirror_view_weight": 1.0, "gain_depth_sigma_mm": 20.0}, {"detail_sigma_mm": -1.0},
                {"detail_sigma_mm": float("inf")}, {"detail_sigma_mm": 8.0, "detail_scale_mm": 0.0},
                {"mirror_view_weight": 1.0, "detail_sigma_mm": 8.0}, {"far_gain_grid": -1}, {"far_gain_grid": 1},
                {"blend_air_floor": -0.01}, {"blend_air_floor": 1.0}):
        with pytest.raises(UserError, match=r"physical\.(air_|outline|mirror_view|gain_depth_sigma|detail_|far_gain|blend_air)"):
            config_from_dict(tiny_config(**bad))


def test_yaw_matrix_by_hand_and_its_sense_against_the_views():
    assert torch.allclose(yaw_matrix(0.0), torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]]))
    assert torch.allclose(yaw_matrix(90.0), torch.tensor([[[0.0, -1, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0]]]),
                          atol=1e-7)
    volume = blob_volume(32, **ASYMMETRIC)
    turned = warp_volumes(volume[None], yaw_matrix(10.0))[0]
    camera = camera_from_preset("knee", 32, BOX_MM)

    def view(v, k):
        samples, step_mm = ray_samples(camera, [k], 64)
        return line_integrals(v, samples, step_mm)[0]
    for k in (4, 30):  # 10 deg = 2 views: the turned volume at view k is the original at view k - 2
        scores = {d: ncc(view(turned, k).numpy(), view(volume, k + d).numpy()) for d in range(-3, 4)}
        assert max(scores, key=scores.get) == -2 and scores[-2] > 0.9999


def test_atlas_yaw_turns_the_atlas_before_the_fit():
    """A target rendered from the turned atlas is explained better by the latent fit when the fit is told the turn
    (the gain stage then fits either)."""
    atlas = blob_volume(16, **ASYMMETRIC)[None]
    camera = camera_from_preset("knee", 32, BOX_MM)
    samples, step_mm = ray_samples(camera, [9], 64)
    target = line_integrals(warp_volumes(atlas, yaw_matrix(30.0))[0], samples, step_mm)[0]
    target = target / target.max()
    latent_psnr = {}
    for yaw in (0.0, 30.0):
        cfg = config_from_dict(tiny_config(atlas_yaw_deg=yaw, mirror_atlas=False, fit_steps=20))
        rows: list[dict] = []
        fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01, rows)
        latent_psnr[yaw] = [r["psnr"] for r in rows if r["stage"] == "latent"][-1]
    assert latent_psnr[30.0] > latent_psnr[0.0] + 3.0
    for bad in (200.0, float("nan")):
        with pytest.raises(UserError, match=r"physical\.atlas_yaw_deg"):
            config_from_dict(tiny_config(atlas_yaw_deg=bad))


def write_patient_drrs(folder, patient: str, volume: torch.Tensor, size: int = 32) -> None:
    camera = camera_from_preset("knee", size, BOX_MM)
    samples, step_mm = ray_samples(camera, range(72), 48)
    integrals = line_integrals(volume, samples, step_mm).numpy()
    for k, image in enumerate(integrals):
        Image.fromarray(mednerf_uint8(image)).save(folder / f"{patient}_xray{k:04d}.png")


@pytest.fixture
def physical_drrs(tmp_path):
    data = tmp_path / "drrs"
    data.mkdir()
    for index, shift in enumerate((-10.0, 0.0, 12.0)):
        centres = [(c[0] + shift, c[1], c[2]) for c in ASYMMETRIC["centres_mm"]]
        write_patient_drrs(data, f"{index + 1:02d}", blob_volume(24, centres, ASYMMETRIC["widths_mm"]))
    return data


def test_train_calibrate_resume_and_finetune_commands(tmp_path, physical_drrs, capsys):
    config = tmp_path / "tiny_physical.yaml"
    import yaml
    config.write_text(yaml.safe_dump(tiny_config()))
    run = tmp_path / "run"
    args = ["--config", str(config), "--data", str(physical_drrs), "--out", str(run), "--holdout", "03",
            "--device", "cpu", "--no-progress"]
    assert cli_train.main(args) == 0
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["training_patients"] == ["01", "02"] and calibration["holdout"] == ["03"]
    assert calibration["chosen_pose_prior"] in (0.01, 0.1)
    assert cli_train.main(args) == 2                          # exists: needs --resume
    assert cli_train.main(args + ["--resume"]) == 0            # complete: nothing to redo
    changed = [a if a != "03" else "02" for a in args]
    assert cli_train.main(changed + ["--resume"]) == 2         # another holdout cannot join a finished run
    assert "another --holdout" in capsys.readouterr().err
    out = tmp_path / "views"
    xray = physical_drrs / "03_xray0018.png"
    assert cli_finetune.main(["--checkpoint", str(run), "--xray", str(xray), "--input-view-index", "18",
                              "--out", str(out), "--device", "cpu", "--no-progress", "--export-volume"]) == 0
    files = sorted(p.name for p in (out / "views").glob("*.png"))
    assert files == [f"xray{k:04d}.png" for k in range(72)]
    import nibabel as nib
    volume = nib.load(str(out / "volume.nii.gz"))
    assert volume.shape == (16, 16, 16) and abs(volume.affine[2, 2] - BOX_MM / 16) < 1e-6
    # the rendered view 18 is the input (release orientation), the far side its near mirror
    rendered = np.asarray(Image.open(out / "views" / "xray0018.png"), dtype=np.float64)
    given = np.asarray(Image.open(xray), dtype=np.float64)
    assert np.corrcoef(rendered.ravel(), given.ravel())[0, 1] > 0.95


def test_unknown_input_view_is_searched(tmp_path, physical_drrs, capsys):
    """The command path without --input-view-index: a view is searched, fitted and rendered as the input.
    (How close the search lands is tested on exact volumes below: this tiny tomography's own loss is lowest
    about 7 views from the truth.)"""
    import yaml
    config = tmp_path / "tiny_physical.yaml"
    config.write_text(yaml.safe_dump(tiny_config(calibrate=False)))
    run = tmp_path / "run"
    assert cli_train.main(["--config", str(config), "--data", str(physical_drrs), "--out", str(run),
                           "--device", "cpu", "--no-progress"]) == 0
    from model.physical import finetune_physical
    from umed_common.images import read_gray
    given = read_gray(physical_drrs / "02_xray0018.png")
    result = finetune_physical(run, given, input_view_index=None, loss_weights="learned", progress=False,
                               gain_steps=2)
    assert 0 <= result.input_view_index < 72 and result.views.shape == (72, 32, 32)
    assert np.corrcoef(result.views[result.input_view_index].ravel(), given.ravel())[0, 1] > 0.95
    assert cli_finetune.main(["--checkpoint", str(run), "--xray", str(physical_drrs / "02_xray0018.png"),
                              "--out", str(tmp_path / "views"), "--max-iters", "2", "--device", "cpu",
                              "--no-progress"]) == 0
    assert f"input view {result.input_view_index} (searched;" in capsys.readouterr().out


# Five small blobs: a volume whose views change visibly every 5 deg (smooth wide blobs look alike across 20 deg)
LUMPY = dict(centres_mm=[(30.0, -20.0, 10.0), (-35.0, 25.0, -30.0), (5.0, 40.0, 35.0), (-20.0, -35.0, 0.0),
                         (0.0, 0.0, -10.0)],
             widths_mm=[(8.0, 8.0, 20.0), (10.0, 10.0, 10.0), (12.0, 6.0, 8.0), (6.0, 12.0, 15.0),
                        (25.0, 25.0, 40.0)])


@pytest.mark.parametrize("view", [9, 40])
def test_search_refines_the_grid_to_within_one_view(view):
    """Views 9 and 40 are off the search's 30-deg grid (the grid alone lands 3 and 2 views away); the
    refinement around the best grid views finds them to within one view (5 deg)."""
    from model.physical import search_input_view
    cfg = config_from_dict(tiny_config(fit_steps=60))
    atlas = torch.stack([blob_volume(16, **LUMPY), blob_volume(16, **ASYMMETRIC)]).float()
    camera = camera_for(cfg, 32)
    samples, step_mm = ray_samples(camera, [view], 48)
    target = line_integrals(atlas[0], samples, step_mm)[0]
    assert abs(search_input_view(atlas, target / target.max(), cfg, build_perceptual("ssim")) - view) <= 1


def test_far_side_rival_by_hand():
    from model.physical import far_side_rival
    losses = {0: 1.0, 6: 1.5, 12: 0.9, 30: 1.2, 48: 0.95, 66: 2.0}
    # best 12; views at least 90 deg (18 views) from it: 30 (90 deg), 48 (180 deg), 66 (90 deg), 0 is 60 deg
    view, ratio = far_side_rival(losses)
    assert view == 48 and ratio == pytest.approx(0.95 / 0.9)


def test_search_warns_when_a_view_half_a_turn_away_fits_nearly_as_well(monkeypatch):
    import warnings
    import model.physical as physical
    near_tie = {0: 2.0, 6: 1.0, 42: 1.05, 60: 3.0}
    monkeypatch.setattr(physical, "view_search_losses", lambda *args, **kwargs: near_tie)
    with pytest.warns(UserWarning, match=r"view 6 and view 42, 180 deg away, .*loss x1\.050"):
        assert physical.search_input_view(None, None, None, None) == 6
    monkeypatch.setattr(physical, "view_search_losses", lambda *args, **kwargs: {**near_tie, 42: 1.2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert physical.search_input_view(None, None, None, None) == 6


def test_refinement_views_by_hand():
    from model.physical import refinement_views
    coarse = {view: 5.0 for view in range(0, 72, 6)}
    coarse.update({6: 1.0, 66: 2.0, 30: 3.0})
    # the two best grid views, 6 and 66, each with the views within 3 of it that the grid has not tried
    assert refinement_views(coarse, 6, 2) == [3, 4, 5, 7, 8, 9, 63, 64, 65, 67, 68, 69]
    assert refinement_views(coarse, 6, 1) == [3, 4, 5, 7, 8, 9]
    # round the circle: view 0's neighbourhood is 69..71 and 1..3
    assert refinement_views({0: 0.0, 36: 1.0}, 36, 1) == list(range(1, 19)) + list(range(54, 72))
    assert refinement_views({0: 0.0, 6: 1.0, 66: 2.0}, 6, 1) == [1, 2, 3, 69, 70, 71]


def test_two_gloo_processes_build_the_same_atlas_as_one(tmp_path, physical_drrs):
    """Data parallelism splits the training patients over ranks; the atlas must not depend on it."""
    import os
    import subprocess
    import sys
    import yaml
    config = tmp_path / "tiny_physical.yaml"
    config.write_text(yaml.safe_dump(tiny_config(calibrate=False)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["-m", "model.cli_train", "--config", str(config), "--data", str(physical_drrs), "--device", "cpu",
              "--no-progress"]
    single = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True,
                            text=True, env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             *common, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert double.returncode == 0, double.stderr[-2000:]
    one = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    assert one["patients"] == two["patients"] == ["01", "02", "03"]
    assert torch.allclose(one["atlas"], two["atlas"], atol=1e-6)
    assert one["atlas"].std() > 0       # tomography really ran


def test_atlas_does_not_depend_on_how_many_patients_are_reconstructed_at_once(physical_drrs, monkeypatch):
    from model import physical
    from model.data import discover_drr_images
    from model.distributed import DistContext
    cfg = config_from_dict(tiny_config(recon_steps=6))
    patients = discover_drr_images(physical_drrs)
    atlases = []
    for workers in (1, 3):
        monkeypatch.setattr(physical, "parallel_workers", lambda jobs, n=workers: n)
        atlases.append(physical._reconstruct_all(cfg, patients, DistContext(0, 1, torch.device("cpu")), 5, False))
    assert list(atlases[0]) == list(atlases[1]) == ["01", "02", "03"]
    assert all(torch.equal(atlases[0][name], atlases[1][name]) for name in atlases[0])
    assert atlases[0]["01"].std() > 0


def test_parallel_workers_one_per_core_within_the_cap(monkeypatch):
    from model import physical
    monkeypatch.setattr(physical.torch, "get_num_threads", lambda: 2)
    assert [physical.parallel_workers(jobs) for jobs in (0, 1, 2, 20)] == [1, 1, 2, 2]
    monkeypatch.setattr(physical.torch, "get_num_threads", lambda: 64)
    assert physical.parallel_workers(20) == physical.MAX_PARALLEL_JOBS == 8
    monkeypatch.setattr(physical.torch, "get_num_threads", lambda: 1)   # OMP_NUM_THREADS=1, as torchrun sets
    assert physical.parallel_workers(20) == 1


def test_calibration_patients_are_spread_over_the_ids():
    from model.physical import calibration_patients
    names = [f"{i:02d}" for i in range(1, 15)]
    assert calibration_patients(names, 6) == ["01", "04", "06", "09", "11", "14"]
    assert calibration_patients(names, 0) == names and calibration_patients(names[:3], 6) == names[:3]


def test_geometry_json_from_drr_generate_sets_the_camera(tmp_path):
    from model.physical import geometry_from_data
    from umed_common.errors import UserError
    cfg = config_from_dict(tiny_config())
    for case, width in (("a", 300.0), ("b", 300.0)):
        (tmp_path / case).mkdir()
        (tmp_path / case / "geometry.json").write_text(json.dumps(
            {"source_to_isocenter_mm": 500.0, "source_to_detector_mm": 1000.0, "detector_width_mm": width,
             "detector_height_mm": width, "angle_step_deg": 5.0, "start_angle_deg": 0.0}))
    cfg = geometry_from_data(cfg, tmp_path)
    assert (cfg.physical.sad_mm, cfg.physical.sid_mm, cfg.physical.detector_mm) == (500.0, 1000.0, 300.0)
    from model.physical import camera_for
    assert camera_for(cfg, 32).geometry.detector_width_mm == 300.0
    (tmp_path / "b" / "geometry.json").write_text(json.dumps(
        {"source_to_isocenter_mm": 500.0, "source_to_detector_mm": 1000.0, "detector_width_mm": 310.0,
         "detector_height_mm": 310.0}))
    with pytest.raises(UserError, match="disagree"):
        geometry_from_data(config_from_dict(tiny_config()), tmp_path)


def test_population_modes_by_hand_for_two_members():
    """Two members: one component, along x1 - x2, of standard deviation |x1 - x2| / sqrt(2); c = 1 moves the
    mean by one standard deviation, so the volume is m +- (x1 - x2) / sqrt(2) (an eigenvector's sign is free)."""
    from model.atlas import combine, population_modes, shape_weights
    members = torch.zeros(2, 1, 1, 3)
    members[0, 0, 0] = torch.tensor([4.0, 2.0, 0.0])
    members[1, 0, 0] = torch.tensor([2.0, 2.0, 2.0])
    modes = population_modes(members)
    assert modes.shape == (2, 1)
    mean = members.mean(0)
    assert torch.allclose(combine(members, shape_weights(modes, torch.zeros(1))), mean)
    step = (members[0] - members[1]) / 2 ** 0.5
    moved = combine(members, shape_weights(modes, torch.ones(1)))
    assert torch.allclose(moved, torch.relu(mean + step)) or torch.allclose(moved, torch.relu(mean - step))
    # a repeated member adds no component
    assert population_modes(torch.cat([members, members[:1]])).shape == (3, 1)


def test_shape_weights_sum_to_one_and_span_the_centred_members():
    from model.atlas import population_modes, shape_weights
    members = torch.rand(5, 2, 3, 4, generator=torch.Generator().manual_seed(3))
    modes = population_modes(members)
    assert modes.shape == (5, 4)
    assert torch.allclose(modes.sum(0), torch.zeros(4), atol=1e-5)   # orthogonal to the centring's null direction
    coefficients = torch.randn(4, generator=torch.Generator().manual_seed(4))
    assert float(shape_weights(modes, coefficients).sum()) == pytest.approx(1.0, abs=1e-5)
    # unit coefficients are standard deviations: the population's total variance is the sum of the modes' variances
    centred = members.flatten(1) - members.flatten(1).mean(0)
    spread = [float(((modes[:, k] @ centred) ** 2).sum()) for k in range(4)]
    assert sum(spread) == pytest.approx(float((centred ** 2).sum()) / 4, rel=1e-4)


def test_combine_clips_negative_attenuation():
    from model.atlas import combine
    members = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    assert combine(members, torch.tensor([1.5, -0.5]))[0, 0].tolist() == [1.5, 0.0]


def test_shape_prior_pulls_the_latent_fit_to_the_atlas_mean():
    """The stronger the prior, the closer the weights stay to the mean (1/n each); they always sum to 1."""
    atlas, target, _ = two_blob_fit_case()
    spread = {}
    for shape_prior in (1e-4, 1.0, 100.0):
        cfg = config_from_dict(tiny_config(shape_prior=shape_prior, fit_lr=0.1))
        state = fit_single_view(atlas, target, 9, cfg, None, build_perceptual("ssim"), 0.01)
        assert float(state.weights.sum()) == pytest.approx(1.0, abs=1e-5) and state.volume.min() >= 0
        spread[shape_prior] = float((state.weights - 0.25).abs().max())
    assert spread[1e-4] > 0.1 > spread[1.0] > spread[100.0] and spread[100.0] < 0.02


def test_shape_prior_must_be_non_negative():
    from umed_common.errors import UserError
    with pytest.raises(UserError, match="shape_prior"):
        config_from_dict(tiny_config(shape_prior=-1.0))


def test_depth_shift_moves_the_whole_fitted_patient_along_the_input_ray():
    from model.atlas_fit import AtlasState, central_ray, render_integrals
    grid = 16
    camera = camera_from_preset("knee", 32, BOX_MM)
    assert torch.allclose(central_ray(camera, 0), torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)  # view 0 looks along -x
    volume = blob_volume(grid, **ASYMMETRIC)
    volume[..., :2] = volume[..., -2:] = 0  # blob tails at the x faces would meet the box's zero padding
    moved = torch.zeros_like(volume)  # the patient one voxel along -x (x is the last axis): M(x) = V(x + voxel)
    moved[..., :-1] = volume[..., 1:]
    state = AtlasState(volume, torch.ones(32, 32), 0, torch.ones(1), torch.zeros(4))
    views = [9, 18, 27]
    shifted = render_integrals(state, camera, 48, views=views, depth_shift_mm=BOX_MM / grid)
    expected = render_integrals(dataclasses.replace(state, volume=moved), camera, 48, views=views)
    assert torch.allclose(shifted, expected, atol=1e-5 * float(expected.max()))
    plain = render_integrals(state, camera, 48, views=views)
    assert (plain - shifted).abs().max() > 0.05 * plain.max()  # seen side-on (view 18), the move is visible
    assert torch.equal(render_integrals(state, camera, 48, views=views, depth_shift_mm=0.0), plain)


def train_tiny_run(tmp_path, physical_drrs):
    """A tiny uncalibrated physical run on patients 01 and 02 (03 held out): the studies' checkpoint."""
    import yaml
    config = tmp_path / "tiny_physical.yaml"
    config.write_text(yaml.safe_dump(tiny_config(calibrate=False)))
    run = tmp_path / "run"
    assert cli_train.main(["--config", str(config), "--data", str(physical_drrs), "--out", str(run),
                           "--holdout", "03", "--device", "cpu", "--no-progress"]) == 0
    return run


def test_depth_study_command(tmp_path, physical_drrs, capsys):
    import pandas as pd
    from benchmark import depth_study
    run = train_tiny_run(tmp_path, physical_drrs)
    out = tmp_path / "study"
    args = ["--checkpoint", str(run), "--data", str(physical_drrs), "--patients", "03", "--shifts", "-10", "10",
            "--out", str(out), "--no-progress"]
    assert depth_study.main(args) == 0
    frame = pd.read_csv(out / "depth_study.csv")
    model = frame[frame.method == depth_study.MODEL].sort_values("shift_mm")
    assert model.shift_mm.tolist() == [-10.0, 0.0, 10.0]      # 0 (the product's render) is always there
    from benchmark.single_view import BASELINE_COPY, BASELINE_MEAN, BASELINE_MIRROR
    assert set(frame.method) == {depth_study.MODEL, BASELINE_COPY, BASELINE_MEAN, BASELINE_MIRROR}
    assert len(frame) == 3 + 3                                # and the three baselines
    assert frame.psnr.notna().all() and (frame.ssim <= 1).all()
    assert (out / "depth_study.png").stat().st_size > 0 and "oracle gain" in (out / "depth_study.md").read_text()
    assert depth_study.main(args) == 2                        # exists: needs --overwrite
    # interrupted after the patient's part was written: a rerun takes the part as it is
    part = next((out / "parts").glob("03_*.csv"))
    edited = pd.read_csv(part)
    edited.loc[edited.shift_mm == 10.0, "psnr"] = 99.0
    edited.to_csv(part, index=False)
    (out / "depth_study.csv").unlink()
    assert depth_study.main(args) == 0
    assert 99.0 in pd.read_csv(out / "depth_study.csv").psnr.tolist()
    capsys.readouterr()
    assert depth_study.main(args[:-3] + ["--patients", "01", "--out", str(tmp_path / "other")]) == 2
    assert "never saw" in capsys.readouterr().err                # a training patient is refused
    # ... unless it is left out of the atlas, as leave_one_out fits it; then a held-out patient is refused
    left = args[:-3] + ["--no-progress", "--leave-out", "--shifts", "5",
                        "--patients", "01", "--out", str(tmp_path / "left")]
    assert depth_study.main(left) == 0
    frame = pd.read_csv(tmp_path / "left" / "depth_study.csv", dtype={"patient": str})
    assert set(frame.patient) == {"01"} and len(frame) == 2 + 3 and frame.psnr.notna().all()
    capsys.readouterr()
    assert depth_study.main(left[:-4] + ["--patients", "03", "--out", str(tmp_path / "left2")]) == 2
    assert "did not train" in capsys.readouterr().err


def test_leave_one_out_command(tmp_path, physical_drrs, capsys):
    import pandas as pd
    from benchmark import leave_one_out
    from benchmark.metrics import score_views
    from benchmark.single_view import BASELINE_COPY, BASELINE_MEAN, BASELINE_MIRROR, load_patient
    from model.data import discover_drr_images
    run = train_tiny_run(tmp_path, physical_drrs)
    out = tmp_path / "loo"
    args = ["--checkpoint", str(run), "--data", str(physical_drrs), "--views", "0", "18", "--out", str(out),
            "--no-progress"]
    assert leave_one_out.main(args) == 0
    rows = pd.read_csv(out / "leave_one_out.csv", dtype={"patient": str})
    assert sorted(rows.patient.unique()) == ["01", "02"]   # the run's training patients
    assert set(rows.method) == {leave_one_out.MODEL, BASELINE_COPY, BASELINE_MEAN, BASELINE_MIRROR}
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert len(verdicts) == 4 and (verdicts.method == leave_one_out.MODEL).all()
    assert (out / "per_view_psnr.png").stat().st_size > 0 and "wins" in (out / "leave_one_out.md").read_text()
    # with 01 left out, the mean training image is 02's DRRs: the other training patient, never 03
    discovered = discover_drr_images(physical_drrs)
    one, two = (load_patient(discovered[p], (32, 32)) for p in ("01", "02"))
    novel = [v for v in range(72) if one.present[v] and v != 0]
    expected = score_views(two.images[novel], one.images[novel])["psnr"].mean()
    mean_rows = rows[(rows.method == BASELINE_MEAN) & (rows.patient == "01") & (rows.input_view == 0)
                     & (rows.metric == "psnr") & (rows.view != 0)]
    assert mean_rows.value.mean() == pytest.approx(expected)
    # a changed setting is another study: refused without --overwrite, and it changes the fits
    changed = args + ["--set", "physical.fit_steps=0"]
    assert leave_one_out.main(changed) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert leave_one_out.main(changed + ["--overwrite"]) == 0
    again = pd.read_csv(out / "verdicts.csv")
    assert not np.allclose(again.psnr_novel, verdicts.psnr_novel)
    # interrupted after a fit's part was written: a rerun with the same settings takes the part as it is
    part = out / "parts" / "01_view0.csv"
    edited = pd.read_csv(part)
    edited.loc[(edited.method == leave_one_out.MODEL) & (edited.metric == "psnr"), "value"] = 99.0
    edited.to_csv(part, index=False)
    assert leave_one_out.main(changed) == 0
    assert pd.read_csv(out / "verdicts.csv").psnr_novel.max() == pytest.approx(99.0)
    (out / "settings.json").write_text("{broken")                      # unreadable: another study's
    assert leave_one_out.main(changed) == 2
    capsys.readouterr()
    other = args[:-3] + ["--out", str(tmp_path / "other"), "--no-progress"]
    assert leave_one_out.main(other + ["--patients", "03"]) == 2       # never trained: nothing to leave out
    assert "did not train" in capsys.readouterr().err
    assert leave_one_out.main(other + ["--set", "physical.no_such_key=1"]) == 2
    assert "physical.no_such_key=1" in capsys.readouterr().err
    # told the view, every fit is fitted as its input view; --search-view searches it and says how far it landed
    assert (verdicts.fitted_view == verdicts.input_view).all()
    assert "searched" not in (out / "leave_one_out.md").read_text()
    searched = tmp_path / "searched"
    assert leave_one_out.main(other + ["--patients", "02", "--views", "18", "--search-view",
                                       "--out", str(searched)]) == 0
    rows = pd.read_csv(searched / "leave_one_out.csv")
    assert rows.fitted_view.nunique() == 1 and 0 <= rows.fitted_view.iloc[0] < 72
    assert "input view searched (not given): " in (searched / "leave_one_out.md").read_text()


def test_view_search_line_by_hand():
    import pandas as pd
    from benchmark.leave_one_out import view_search_line
    fits = pd.DataFrame({"input_view": [21, 40, 4, 54], "fitted_view": [22, 40, 71, 20]})
    assert view_search_line(fits) == ("within 5 deg on 2 of 4 fits, exact on 1, more than 90 deg off on 1; "
                                      "off by (deg) 5, 0, 25, 170")


def test_leave_one_out_takes_several_settings_after_one_set_and_repeated():
    from benchmark.leave_one_out import build_parser
    args = build_parser().parse_args(["--checkpoint", "RUN", "--data", "D", "--out", "O", "--set",
                                      "physical.far_gain_grid=16", "physical.detail_sigma_mm=0",
                                      "--set", "physical.mirror_view_weight=1"])
    assert args.settings == ["physical.far_gain_grid=16", "physical.detail_sigma_mm=0",
                             "physical.mirror_view_weight=1"]
    assert build_parser().parse_args(["--checkpoint", "RUN", "--data", "D", "--out", "O"]).settings == []


def test_leaving_a_patient_out_drops_its_volume_only():
    from benchmark.leave_one_out import without_patient
    atlas = torch.arange(3.0)[:, None, None, None].expand(3, 2, 2, 2)
    payload = {"atlas": atlas, "patients": ["01", "02", "03"], "seed": 4}
    left = without_patient(payload, "02")
    assert left["patients"] == ["01", "03"] and left["seed"] == 4
    assert torch.equal(left["atlas"][:, 0, 0, 0], torch.tensor([0.0, 2.0]))
    assert payload["patients"] == ["01", "02", "03"] and len(payload["atlas"]) == 3    # the run's is untouched
    with pytest.raises(UserError, match="did not train"):
        without_patient(payload, "04")
    with pytest.raises(UserError, match="only training patient"):
        without_patient({"atlas": atlas[:1], "patients": ["01"]}, "01")
