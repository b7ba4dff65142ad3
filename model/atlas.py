"""The physically matched, pose-aware model: an atlas of attenuation volumes, one per training patient.

Pixel model (REFERENCE 7): a DRR pixel is the line integral L of a non-negative, view-independent attenuation
field along the DRR's own ray, scaled by an unknown per-image factor (each release image is divided by its own
maximum). So every comparison with an image fits that factor in closed form (`fit_scale`).

Training reconstructs each training patient's volume from its posed views (the angle of view k is known),
which is tomography through the same projector that renders. Single-view fitting (model.atlas_fit) then
places a weighted, similarity-warped blend of the atlas under the input view and tunes a bounded per-ray gain.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .drr_camera import DrrCamera, line_integrals, ray_samples


def fit_scale(integrals: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares factor a per image with a * integrals ~ target: (V, H, W) x2 -> (V, 1, 1)."""
    numerator = (integrals * target).flatten(1).sum(1)
    denominator = (integrals * integrals).flatten(1).sum(1).clamp(min=1e-12)
    return (numerator / denominator)[:, None, None]


def attenuation_from_parameters(parameters: torch.Tensor, mu_scale: float) -> torch.Tensor:
    """Unconstrained grid -> non-negative attenuation per mm (softplus keeps gradients alive at zero)."""
    return F.softplus(parameters) * mu_scale


def reconstruct_volume(images: torch.Tensor, views: torch.Tensor, camera: DrrCamera, *, grid: int, n_samples: int,
                       steps: int, lr: float, views_per_step: int, mu_scale: float,
                       generator: torch.Generator, progress=None) -> torch.Tensor:
    """Tomography of one patient from its posed DRRs.

    images (N, H, W) in [0, 1], projector orientation, at the camera's size; views (N,) their view indices.
    Minimises sum_v ||a_v L_v(mu) - image_v||^2 over the volume (Adam, cosine learning rate), a random subset
    of views per step. Returns (grid, grid, grid) attenuation per mm (up to one global factor).
    """
    samples, step_mm = ray_samples(camera, views.tolist(), n_samples)
    parameters = torch.full((grid, grid, grid), -3.0, requires_grad=True)
    optimiser = torch.optim.Adam([parameters], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1))
    for index in range(steps):
        chosen = torch.randperm(len(views), generator=generator)[:views_per_step]
        integrals = line_integrals(attenuation_from_parameters(parameters, mu_scale), samples[chosen], step_mm)
        target = images[chosen]
        loss = ((fit_scale(integrals, target) * integrals - target) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(index + 1, float(loss))
    return attenuation_from_parameters(parameters.detach(), mu_scale)


def robust_max(volumes: torch.Tensor) -> torch.Tensor:
    """99th percentile of each volume: (..., D, H, W) -> (...); the scale that air and tissue levels are
    fractions of (a few bright voxels, metal or cortex at the clamp, do not move it)."""
    return torch.quantile(volumes.flatten(-3).float(), 0.99, dim=-1)


def clear_air(volume: torch.Tensor, fraction: float) -> torch.Tensor:
    """(D, H, W) -> (D, H, W): voxels below `fraction` of the volume's 99th percentile set to air (0).

    Tomography through a softplus never reaches 0: the air around a patient keeps a floor of about 1 % of soft
    tissue, which summed across the box is a haze of a few grey levels in every air pixel of the rendered views,
    where the DRRs are exactly 0 (and where SSIM's luminance term punishes any offset hardest). 0 keeps the volume.
    """
    if fraction <= 0:
        return volume
    level = fraction * robust_max(volume)
    return torch.where(volume < level, torch.zeros_like(volume), volume)


def similarity_matrix(pose: torch.Tensor, view_angle_deg: float) -> torch.Tensor:
    """(4,) pose = (shift along the input view's detector columns, vertical shift, log scale in the axial
    plane, log vertical scale), shifts box-normalised -> (1, 3, 4) affine_grid matrix (output -> atlas).

    The depth shift is left out on purpose: one transmission image does not see it, and the DRR recipe puts
    the isocentre at the centre of the CT, so patients sit near the rotation axis.
    """
    theta = math.radians(view_angle_deg)
    column = torch.tensor([math.sin(theta), math.cos(theta)], dtype=pose.dtype)
    shift = torch.cat([pose[0] * column, pose[1:2]])
    inverse_scale = torch.exp(-torch.stack([pose[2], pose[2], pose[3]]))
    return torch.cat([torch.diag(inverse_scale), -(inverse_scale * shift)[:, None]], dim=1)[None]


def yaw_matrix(yaw_deg: float) -> torch.Tensor:
    """(1, 3, 4) affine_grid matrix (output -> atlas) that turns a volume by yaw_deg about the rotation axis (the
    volume's vertical axis through the isocentre), in the sense the views advance: the turned volume seen at view
    angle a looks as the original does at a - yaw_deg."""
    angle = math.radians(yaw_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    return torch.tensor([[[cos, -sin, 0.0, 0.0], [sin, cos, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])


def warp_volumes(volumes: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(n, D, H, W) volumes moved by the affine `matrix` (1, 3, 4) -> (n, D, H, W), zero outside."""
    grid = F.affine_grid(matrix.expand(len(volumes), -1, -1), (len(volumes), 1, *volumes.shape[1:]),
                         align_corners=False)
    return F.grid_sample(volumes[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def combine(volumes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(n, D, H, W) x (n,) member weights -> (D, H, W), clipped at 0: attenuation is non-negative, and the
    weights of `shape_weights` may be negative (for convex weights the clip does nothing)."""
    return torch.relu((weights[:, None, None, None] * volumes).sum(dim=0))


def population_modes(volumes: torch.Tensor) -> torch.Tensor:
    """(n, D, H, W) -> (n, k), k <= n - 1: the atlas's principal components, written as member weights.

    PCA through the n x n Gram matrix of the centred members (the volumes are far larger than n). Only the
    components with variance are kept: the centring's null direction (all ones) is never one of them, and nor
    are repeats (a member symmetric left-right equals its mirror). Columns are scaled by 1 / sqrt(n - 1), so
    that in `shape_weights` a coefficient of 1 is one standard deviation of the population along that component.
    """
    flat = volumes.flatten(1).double()
    centred = flat - flat.mean(dim=0)
    values, vectors = torch.linalg.eigh(centred @ centred.T)
    kept = values > 1e-9 * values.max().clamp(min=1e-300)
    return (vectors[:, kept] / math.sqrt(len(volumes) - 1)).to(volumes.dtype)


def shape_weights(modes: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Member weights (n,) = 1/n + modes (n, k) @ coefficients (k,): the population mean plus the coefficients'
    principal components (they sum to 1; a Gaussian prior on the coefficients is a statistical shape model)."""
    return 1.0 / len(modes) + modes @ coefficients


# A member's tissue: attenuation above this fraction of its 99th percentile (lungs, fat and muscle are above it,
# the tomography's floor and partial-volume rims below)
TISSUE_FRACTION = 0.2


def cut_to_outline(volumes: torch.Tensor, weights: torch.Tensor, blended: torch.Tensor, share: float) -> torch.Tensor:
    """The blend (D, H, W) of `volumes` (n, D, H, W) with member `weights` (n,) set to air wherever members of
    less than `share` of the weight have tissue there (`TISSUE_FRACTION`); share 0 keeps the blend. The share
    is of the positive weights (those of `shape_weights` can be negative).

    A blend's outline is the union of its members': the rim that only the widest few fill is a haze around the
    silhouette of every view the input does not fix, where the DRRs are air. Inside, the blend is untouched.
    """
    if share <= 0:
        return blended
    weights = weights.clamp(min=0) / weights.clamp(min=0).sum().clamp(min=1e-12)
    levels = TISSUE_FRACTION * robust_max(volumes)
    tissue = (volumes > levels[:, None, None, None]).to(volumes.dtype)
    covered = (weights[:, None, None, None] * tissue).sum(dim=0)
    return torch.where(covered >= share, blended, torch.zeros_like(blended))


def bounded_gain(raw: torch.Tensor, max_gain: float) -> torch.Tensor:
    """Unconstrained (H, W) -> gain in [1/max_gain, max_gain] (log-symmetric, 1 at raw = 0)."""
    return torch.exp(math.log(max_gain) * torch.tanh(raw))


def raw_from_gain(gain: torch.Tensor, max_gain: float) -> torch.Tensor:
    """Inverse of `bounded_gain` (gain clipped just inside the bounds)."""
    limit = math.log(max_gain) * (1.0 - 1e-4)
    return torch.atanh(gain.log().clamp(-limit, limit) / math.log(max_gain))
