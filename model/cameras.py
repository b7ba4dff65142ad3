"""Pinhole cameras on a sphere looking at the origin (GRAF convention, REFERENCE 3).

World up is +z; the camera looks along its own -z axis (OpenGL), x right, y up.
Azimuth is measured in the xy-plane from +x, polar angle from +z.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import CameraConfig


@dataclass
class Poses:
    """A batch of camera poses. rotation: (B, 3, 3) camera-to-world, origin: (B, 3), radius: (B,)."""
    rotation: torch.Tensor
    origin: torch.Tensor
    radius: torch.Tensor


def focal_length_px(image_size: int, fov_deg: float) -> float:
    """Focal length in pixels for a square image: (size / 2) / tan(fov / 2); 731.5 for 128 px, 10 deg."""
    return image_size / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def look_at_origin(azimuth_deg: torch.Tensor, polar_deg: torch.Tensor, radius: torch.Tensor) -> Poses:
    """(B,), (B,), (B,) -> Poses of cameras at those spherical coordinates looking at the origin."""
    az, po = torch.deg2rad(azimuth_deg), torch.deg2rad(polar_deg)
    direction = torch.stack([po.sin() * az.cos(), po.sin() * az.sin(), po.cos()], dim=-1)  # (B, 3)
    origin = radius.unsqueeze(-1) * direction
    back = direction                                   # camera +z points away from the target
    up_world = torch.tensor([0.0, 0.0, 1.0], dtype=origin.dtype, device=origin.device).expand_as(back)
    right = torch.nn.functional.normalize(torch.linalg.cross(up_world, back, dim=-1), dim=-1)
    up = torch.linalg.cross(back, right, dim=-1)
    rotation = torch.stack([right, up, back], dim=-1)  # columns are the camera axes in world frame
    return Poses(rotation=rotation, origin=origin, radius=radius)


def sample_pose_prior(cfg: CameraConfig, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Draw (B, 3) [azimuth_deg, polar_deg, radius] uniformly from the configured ranges."""
    lows = torch.tensor([cfg.azimuth_deg[0], cfg.polar_deg[0], cfg.radius[0]])
    highs = torch.tensor([cfg.azimuth_deg[1], cfg.polar_deg[1], cfg.radius[1]])
    u = torch.rand(batch, 3, generator=generator)
    return lows + u * (highs - lows)


def view_poses(azimuth_deg: torch.Tensor, polar_deg: float, radius: float) -> torch.Tensor:
    """(V,) azimuths -> (V, 3) pose parameters [azimuth_deg, polar_deg, radius] on one circle of the sphere."""
    azimuth_deg = azimuth_deg.float()
    return torch.stack([azimuth_deg, torch.full_like(azimuth_deg, polar_deg),
                        torch.full_like(azimuth_deg, radius)], dim=1)


def poses_from_params(params: torch.Tensor) -> Poses:
    """(B, 3) [azimuth_deg, polar_deg, radius] -> Poses."""
    return look_at_origin(params[:, 0], params[:, 1], params[:, 2])


def ray_directions(pixel_xy: torch.Tensor, image_size: int, focal_px: float) -> torch.Tensor:
    """Camera-frame unit-less directions (x, y, -1) for continuous pixel positions.

    pixel_xy: (..., 2) with (0, 0) the centre of the top-left pixel and image rows going down.
    Returns (..., 3); the optical axis passes through the image centre (size - 1) / 2.
    """
    centre = (image_size - 1) / 2.0
    x = (pixel_xy[..., 0] - centre) / focal_px
    y = -(pixel_xy[..., 1] - centre) / focal_px
    return torch.stack([x, y, -torch.ones_like(x)], dim=-1)


def world_rays(poses: Poses, directions_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """directions_cam: (B, R, 3) -> origins (B, R, 3) and world directions (B, R, 3) (not normalised)."""
    directions = torch.einsum("bij,brj->bri", poses.rotation.to(directions_cam.dtype), directions_cam)
    origins = poses.origin.unsqueeze(1).expand_as(directions)
    return origins, directions
