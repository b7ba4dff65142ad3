"""The generator G(z, pose): rays -> stratified samples -> radiance field -> renderer -> pixels in [-1, 1]."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from tqdm import tqdm

from .cameras import focal_length_px, poses_from_params, ray_directions, world_rays
from .config import ModelConfig
from .encoding import positional_encoding
from .fields import RadianceField
from .ray_samplers import full_image_grid, grid_to_pixels, ray_depth_bounds, stratified_depths
from .renderers import emission_composite, line_integral, xray_intensity


@dataclass
class RenderNoise:
    """Randomness of one training render, drawn up front so that any slice of a batch sees the same
    numbers (data-parallel ranks, resume). jitter: (B, R, S) in [0, 1); density: (B, R, S) ~ N(0, 1)."""
    jitter: torch.Tensor
    density: torch.Tensor

    @staticmethod
    def draw(batch: int, n_rays: int, n_samples: int, generator: torch.Generator) -> "RenderNoise":
        shape = (batch, n_rays, n_samples)
        return RenderNoise(torch.rand(shape, generator=generator), torch.randn(shape, generator=generator))

    def slice(self, start: int, stop: int) -> "RenderNoise":
        return RenderNoise(self.jitter[start:stop], self.density[start:stop])


def density_noise_std(cfg: ModelConfig, iteration: int) -> float:
    """Density noise std, decayed linearly from its start value to 0 (REFERENCE 3)."""
    steps = cfg.render.density_noise_decay_iters
    if steps <= 0:
        return 0.0
    return cfg.render.density_noise_std * max(0.0, 1.0 - iteration / steps)


class Generator(nn.Module):
    """Renders (B, C, H', W') patches or images of the field conditioned on z at given poses."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.field = RadianceField(cfg.field, with_colour=cfg.render.renderer == "emission")

    def forward(self, z: torch.Tensor, pose_params: torch.Tensor, grid: torch.Tensor, image_size: int,
                noise: RenderNoise | None = None, noise_std: float = 0.0) -> torch.Tensor:
        """z (B, Z), pose_params (B, 3) [azimuth_deg, polar_deg, radius], grid (B or 1, P, Q, 2) in
        [-1, 1] over an image of `image_size` pixels -> (B, C, P, Q) in [-1, 1].

        noise: stratified jitter and density noise of a training render, with rays ordered row-major;
        None renders deterministically at bin centres without density noise.
        """
        batch, rows, cols = z.shape[0], grid.shape[1], grid.shape[2]
        pixels = grid_to_pixels(grid.to(z.device), image_size).reshape(grid.shape[0], -1, 2)
        dirs_cam = ray_directions(pixels, image_size, focal_length_px(image_size, self.cfg.camera.fov_deg))
        poses = poses_from_params(pose_params.to(z.device, z.dtype))
        origins, directions = world_rays(poses, dirs_cam.expand(batch, -1, -1))
        values = self.render_rays(z, origins, directions, poses.radius, noise, noise_std)
        return values.permute(0, 2, 1).reshape(batch, -1, rows, cols)

    def render_rays(self, z, origins, directions, radius, noise: RenderNoise | None = None,
                    noise_std: float = 0.0) -> torch.Tensor:
        """origins, directions (B, R, 3), radius (B,) -> (B, R, C) in [-1, 1]."""
        cfg = self.cfg
        near, far = ray_depth_bounds(cfg.camera, radius)
        n_rays, n_samples = origins.shape[1], cfg.render.n_samples
        depths = stratified_depths(near, far, n_rays, n_samples, None if noise is None else noise.jitter)
        points = origins[:, :, None, :] + depths[..., None] * directions[:, :, None, :]
        points_enc = positional_encoding(points, cfg.field.pos_freqs)
        ray_norm = directions.norm(dim=-1)
        dirs_enc = None
        if self.field.with_colour:
            dirs_enc = positional_encoding(directions / ray_norm[..., None], cfg.field.dir_freqs)
        with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=cfg.field.precision == "bfloat16"):
            raw_density, colour = self.field(points_enc, dirs_enc, z)
        raw_density = raw_density.float()            # compositing and line integrals stay in fp32
        colour = None if colour is None else colour.float()
        if noise is not None and noise_std > 0:
            raw_density = raw_density + noise.density.to(raw_density) * noise_std
        density = torch.relu(raw_density)
        if cfg.render.renderer == "emission":
            pixel = emission_composite(density, colour, depths, ray_norm)
        else:
            pixel = xray_intensity(line_integral(density, near, far, ray_norm))[..., None]
        return pixel * 2.0 - 1.0

    def render(self, z: torch.Tensor, pose_params: torch.Tensor, image_size: int, chunk_rays: int = 8192,
               progress: bool = False, desc: str = "render") -> torch.Tensor:
        """Deterministic full images, one pose at a time and chunked over rays to bound memory:
        z (B or 1, Z), pose_params (B, 3) -> (B, C, S, S) in [-1, 1] (one z is shared by every pose).

        The one render entry point: gradients follow the caller's context, so evaluation wraps it in
        torch.no_grad() and fine-tuning calls it as is and back-propagates through the image.
        """
        grid = full_image_grid(image_size).to(z.device).reshape(1, -1, 1, 2)
        images = []
        for index in tqdm(range(pose_params.shape[0]), disable=not progress, desc=desc, unit="view"):
            latent = z[index:index + 1] if z.shape[0] > 1 else z
            pose = pose_params[index:index + 1]
            pieces = [self.forward(latent, pose, grid[:, start:start + chunk_rays], image_size)
                      for start in range(0, grid.shape[1], chunk_rays)]
            images.append(torch.cat(pieces, dim=2).reshape(1, -1, image_size, image_size))
        return torch.cat(images)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): the mean over channels (emission renders replicate gray as RGB)."""
    return images.mean(dim=1)
