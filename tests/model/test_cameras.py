import math

import torch

from model.cameras import (focal_length_px, look_at_origin, poses_from_params, ray_directions,
                           sample_pose_prior, world_rays)
from model.config import CameraConfig


def test_focal_length_of_upstream_camera():
    assert abs(focal_length_px(128, 10.0) - 64 / math.tan(math.radians(5))) < 1e-9
    assert abs(focal_length_px(128, 10.0) - 731.5) < 0.05


def test_pose_at_azimuth_zero_on_equator():
    poses = look_at_origin(torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([10.0]))
    assert torch.allclose(poses.origin, torch.tensor([[10.0, 0.0, 0.0]]), atol=1e-6)
    expected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # columns right, up, back
    assert torch.allclose(poses.rotation[0], expected, atol=1e-6)


def test_rotations_are_proper_and_camera_looks_at_origin():
    params = torch.tensor([[30.0, 70.0, 9.5], [200.0, 85.0, 10.5], [359.0, 77.5, 10.0]])
    poses = poses_from_params(params)
    eye = torch.eye(3).expand(3, 3, 3)
    assert torch.allclose(poses.rotation.transpose(1, 2) @ poses.rotation, eye, atol=1e-6)
    assert torch.allclose(torch.linalg.det(poses.rotation), torch.ones(3), atol=1e-6)
    centre = torch.full((3, 1, 2), 63.5)
    origins, directions = world_rays(poses, ray_directions(centre, 128, 731.5))
    to_origin = -origins / origins.norm(dim=-1, keepdim=True)
    assert torch.allclose(directions / directions.norm(dim=-1, keepdim=True), to_origin, atol=1e-6)
    # polar angle measured from +z: z = r cos(polar)
    assert torch.allclose(poses.origin[:, 2], params[:, 2] * torch.cos(torch.deg2rad(params[:, 1])), atol=1e-5)


def test_image_edge_is_half_the_field_of_view_and_rows_go_down():
    focal = focal_length_px(128, 10.0)
    dirs = ray_directions(torch.tensor([[63.5 + 64.0, 63.5], [63.5, 0.0]]), 128, focal)
    angle = math.degrees(math.atan2(dirs[0, 0].item(), -dirs[0, 2].item()))
    assert abs(angle - 5.0) < 1e-6
    assert dirs[1, 1] > 0          # the top row looks up


def test_pose_prior_stays_in_its_ranges():
    cfg = CameraConfig()
    params = sample_pose_prior(cfg, 1000, torch.Generator().manual_seed(1))
    assert params[:, 0].min() >= 0 and params[:, 0].max() < 360
    assert params[:, 1].min() >= 70 and params[:, 1].max() <= 85
    assert params[:, 2].min() >= 9.5 and params[:, 2].max() <= 10.5
    assert params[:, 0].std() > 90     # spread over the whole circle
