"""Turning samples along rays into pixels: `emission` (upstream) and `xray` (Beer-Lambert), side by side."""
from __future__ import annotations

import torch


def emission_composite(density: torch.Tensor, colour: torch.Tensor, depths: torch.Tensor,
                       ray_norm: torch.Tensor) -> torch.Tensor:
    """NeRF emission-absorption alpha compositing, as GRAF/MedNeRF render.

    density (B, R, S) >= 0, colour (B, R, S, C), depths (B, R, S) increasing, ray_norm (B, R) the
    length of the direction the depths are measured along. Returns (B, R, C) in [0, 1].
    alpha_i = 1 - exp(-sigma_i delta_i), w_i = alpha_i prod_{j<i} (1 - alpha_j); the last
    interval is open (1e10) so an opaque ray ends there, exactly as upstream.
    """
    deltas = depths[..., 1:] - depths[..., :-1]
    deltas = torch.cat([deltas, torch.full_like(deltas[..., :1], 1e10)], dim=-1) * ray_norm[..., None]
    alpha = 1.0 - torch.exp(-density * deltas)
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], dim=-1), dim=-1)
    weights = alpha * transmittance
    return (weights[..., None] * colour).sum(dim=-2)


def line_integral(attenuation: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                  ray_norm: torch.Tensor) -> torch.Tensor:
    """Integral of attenuation along each ray, from one stratified sample per equal bin.

    attenuation (B, R, S) >= 0, near/far (B,) depths, ray_norm (B, R). Returns (B, R).
    sum_i mu(t_i) * bin_width is an unbiased estimate of the integral for stratified t_i.
    """
    bin_width = (far - near)[:, None] * ray_norm / attenuation.shape[-1]
    return attenuation.sum(dim=-1) * bin_width


def xray_intensity(path_integral: torch.Tensor) -> torch.Tensor:
    """Pixel in [0, 1): 1 - exp(-integral), the absorbed fraction of Beer-Lambert's I = I0 exp(-int mu).

    Monotone increasing, so bone (more attenuation) is bright as in a DRR.
    """
    return -torch.expm1(-path_integral)
