"""Single-view fitting of the attenuation atlas, then the 72 views of the full rotation.

Latent first, then bounded tuning (the order of Pivotal Tuning Inversion, 2021), both with the paper's
uncertainty-weighted losses (Eq. 5) or fixed weights (Table 3):

1. latent: atlas blend weights and a similarity pose (no depth shift) so the blended volume's DRR at the input
   view matches the X-ray, at fit_size pixels, with a prior pose_prior * |pose|^2; the weights are a softmax
   (convex blend) or, with shape_prior > 0, the atlas mean plus its principal components under a Gaussian
   prior shape_prior * |c|^2 (a statistical shape model);
2. gain: a per-pixel gain g(u) in [1/max_gain, max_gain] at the input view's detector, applied to the volume
   along that view's rays: mu(x) = mu_A(x) g(u_K(x))^q(x). With q = 1 (gain_depth_power 1) the input view
   renders g * L_A exactly. A power p > 1 puts the change where the prior is dense along each input ray,
   q(x) = mu_A(x)^(p-1) / N(u_K(x)) with N(u) = sum mu_A^p / sum mu_A along ray u (so q averages 1 there):
   a change of the bones' shadow is then made at the bones' depth instead of spread over the whole leg, which
   other views would see smeared (worst at the far side, where cone-beam magnification differs by +-20 %).
   With gain_depth_sigma_mm s > 0 the profile is also weighted by closeness to the rotation axis,
   c(x) = exp(-d(x)^2 / 2 s^2) with d the depth of x along the input view's central ray from the isocentre:
   q = mu_A^(p-1) c / N, N(u) = sum mu_A^p c / sum mu_A (q stops at MAX_DEPTH_EXPONENT, so on a ray whose
   prior lies far from the axis it averages less than 1). One view cannot see depth, and the rotation axis
   is where a change moves least when the source turns; the other views then see the change as the copied
   (near the input) and mirrored (near the far side) X-ray do, which is where those trivial answers are strong.
   mu stays non-negative and the fit goes through the same samples the input view is rendered with.
   With detail_sigma_mm s_H > 0 the gain is then split (`split_gain`) into its coarse part, which keeps that
   profile, and its fine remainder h, the detail the coarse atlas lacks (edges, texture), which goes into a thin
   slab at the axis: mu = mu_A g^q h^(q_H), q_H = c_H / N_H with c_H of width s_H (`fit_detail`, refitted so the
   input view stays exact). The copied X-ray is right for a few degrees because the detail barely moves there;
   a thin slab keeps it as sharp there, where the coarse profile smears it across the whole ray's parallax.
   90 deg away the slab is seen edge-on, so the fit keeps its net change along each detector row near 0.
3. carving (air_level > 0): where the X-ray shows air, the gain is 0 (`carve_air`).
4. far side (mirror_view_weight > 0, p = 1): a second gain f at the view 180 deg away, mu = mu_A g f, fitted
   with the input mirrored left-right as a weak pseudo-view there (`fit_two_gains`); optionally f is smooth,
   bilinear between control points (far_gain_grid), since the pseudo-view's fine detail is not the far view's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage

from drr.geometry import view_frames
from umed_common.images import minmax_to_uint8

from .atlas import (bounded_gain, clear_air, combine, fit_scale, population_modes, raw_from_gain, shape_weights,
                    similarity_matrix, warp_volumes)
from .config import PhysicalConfig
from .drr_camera import DrrCamera, detector_positions, line_integrals, ray_samples, samples_of, to_release_orientation
from .fit_result import input_view_metrics

# q's ceiling. A ray whose prior lies far from the axis (a patient off the rotation axis) can have c fall by
# orders of magnitude along it; q = mu^(p-1) c / N then reaches 10 and more on real knees, and g^q with g up to
# max_gain overflows. The ceiling keeps g^q within max_gain^4; on the demo's phantoms q stays below it.
MAX_DEPTH_EXPONENT = 4.0

# The detail stage's weight on the net change its slab adds along each detector row of the input view, in the
# loss's units ([-1, 1] images). 90 deg away the slab is seen edge-on: each row's net change lands in a few
# columns (a bright or dark stripe) unless it is near 0. On the real knees (leave-one-out) 10 kept the stripe
# invisible while the input view stayed above 40 dB.
DETAIL_ROW_WEIGHT = 10.0

HISTORY_COLUMNS = ["stage", "iteration", "loss", "loss_r", "loss_mse", "sigma_1", "sigma_2", "psnr", "ssim"]


@dataclass
class AtlasState:
    """What the fit found: the blended, posed volume and the gain at the input view's detector."""

    volume: torch.Tensor        # (D, H, W) attenuation per mm
    gain: torch.Tensor          # (S, S) at the input view, projector orientation
    input_view: int
    weights: torch.Tensor       # (n,) atlas blend weights
    pose: torch.Tensor          # (4,) see atlas.similarity_matrix
    depth_power: float = 1.0    # p of the gain's depth profile (module docstring)
    depth_norm: torch.Tensor | None = None  # (S, S) N(u); None means ones (p = 1)
    depth_sigma_mm: float = 0.0  # s of the axis closeness c (module docstring); 0: off
    far_gain: torch.Tensor | None = None    # (S, S) at the far view's detector (mirror_view_weight); None: none
    far_view: int | None = None
    detail: torch.Tensor | None = None      # (S, S) h at the input view (detail_sigma_mm); None: none
    detail_norm: torch.Tensor | None = None  # (S, S) N_H(u)
    detail_sigma_mm: float = 0.0            # s_H of the detail's slab


def weighted_loss(prediction, target, weighting, perceptual, extra_mse: torch.Tensor | float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 5 (or fixed weights) over (L_r, L_MSE) of (H, W) images in [0, 1], compared in [-1, 1].
    extra_mse: a further squared error in those units (a pseudo-observation) that joins the MSE task, so the
    weighting treats it as it treats the data; the returned L_MSE is the data's alone."""
    pred, true = prediction[None, None] * 2 - 1, target[None, None] * 2 - 1
    loss_r, loss_mse = perceptual(pred, true), F.mse_loss(pred, true)
    return weighting(torch.stack([loss_r, loss_mse + extra_mse])), loss_r, loss_mse


def _row(stage, iteration, loss, loss_r, loss_mse, weighting, prediction, target_u8) -> dict:
    psnr, ssim_value = input_view_metrics(prediction, target_u8)
    sigma = weighting.sigmas().detach().cpu().tolist()
    return {"stage": stage, "iteration": iteration, "loss": float(loss.detach()), "loss_r": float(loss_r.detach()),
            "loss_mse": float(loss_mse.detach()), "sigma_1": sigma[0], "sigma_2": sigma[1], "psnr": psnr, "ssim": ssim_value}


def fit_latent(atlas: torch.Tensor, target: torch.Tensor, camera: DrrCamera, view: int, phys: PhysicalConfig,
               weighting, perceptual, steps: int, pose_prior: float, rows: list | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Member weights (n,) and pose (4,) whose DRR at `view` matches target (h, w) in [0, 1] (projector
    orientation, camera size). Returns (weights, pose, final data loss).

    With phys.shape_prior 0 the weights are softmax(logits), a convex blend. Above 0 they are
    `shape_weights(modes, c)` over the atlas's `population_modes` with the prior phys.shape_prior * |c|^2: a
    Gaussian over the population's principal components, which pulls toward the atlas mean instead of letting
    the one view pick a member."""
    samples, step_mm = ray_samples(camera, [view], phys.samples)
    modes = population_modes(atlas) if phys.shape_prior > 0 else None
    latent = torch.zeros(len(atlas) if modes is None else modes.shape[1], requires_grad=True)

    def member_weights(values: torch.Tensor) -> torch.Tensor:
        return torch.softmax(values, 0) if modes is None else shape_weights(modes, values)

    pose = torch.zeros(4, requires_grad=True)
    learned = [latent, pose, *weighting.parameters()]
    optimiser = torch.optim.Adam(learned, lr=phys.fit_lr)
    angle = camera.geometry.start_angle_deg + view * camera.geometry.angle_step_deg
    target_u8 = minmax_to_uint8(target.numpy())
    data_loss = math.inf
    for iteration in range(1, steps + 1):
        # combining and warping are both linear and the warp is shared, so combine first: one warp, not n
        volume = warp_volumes(combine(atlas, member_weights(latent))[None], similarity_matrix(pose, angle))[0]
        integrals = line_integrals(volume, samples, step_mm)
        prediction = (fit_scale(integrals, target[None]) * integrals)[0]
        loss, loss_r, loss_mse = weighted_loss(prediction, target, weighting, perceptual)
        data_loss = float(loss_mse.detach())
        total = loss + pose_prior * (pose ** 2).sum() + (0.0 if modes is None else phys.shape_prior * (latent ** 2).sum())
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        if rows is not None:
            rows.append(_row("latent", iteration, loss, loss_r, loss_mse, weighting, prediction, target_u8))
    return member_weights(latent.detach()), pose.detach(), data_loss


def initial_gain(prior_integrals: torch.Tensor, target: torch.Tensor, max_gain: float) -> torch.Tensor:
    """Closed-form start of the gain: target / (a L_A) where the prior casts a shadow, 1 elsewhere; (S, S)."""
    scaled = fit_scale(prior_integrals[None], target[None])[0] * prior_integrals
    shadow = scaled > 0.02 * float(scaled.max())
    ratio = target / scaled.clamp(min=1e-6)
    return torch.where(shadow, ratio, torch.ones_like(ratio)).clamp(1.0 / max_gain, max_gain)


def carve_air(gain: torch.Tensor, target: torch.Tensor, level: float) -> torch.Tensor:
    """Gain (S, S) set to 0 where the X-ray target (S, S) in [0, 1] is at or below `level`: a ray whose line
    integral is 0 crosses nothing but air (attenuation is non-negative), whatever the prior put there. The gain
    fit alone stops at 1/max_gain. level 0 carves nothing."""
    if level <= 0:
        return gain
    return torch.where(target > level, gain, torch.zeros_like(gain))


def voxel_points(shape) -> torch.Tensor:
    """Box-normalised centres (D, H, W, 3) of a (D, H, W) grid, in the (x, y, z) order of `samples_of`."""
    axes = [(torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1 for n in shape]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def unfillable_rays(prior_integrals: torch.Tensor, cleared_integrals: torch.Tensor, target: torch.Tensor,
                    level: float, max_gain: float) -> torch.Tensor:
    """(S, S) bool: input rays whose X-ray pixel shows tissue (target > level, [0, 1]) that the cleared prior
    cannot cast within the gain's bound, a L_c max_gain < target, with a the prior's closed-form scale."""
    scale = fit_scale(prior_integrals[None], target[None])[0]
    return (target > level) & (scale * cleared_integrals * max_gain < target)


def clear_blend_floor(volume: torch.Tensor, camera: DrrCamera, view: int, target: torch.Tensor, fraction: float,
                      level: float, max_gain: float, n_samples: int) -> torch.Tensor:
    """The posed blend (D, H, W) with voxels below `fraction` of its 99th percentile set to air, except along
    the input view's `unfillable_rays` (the X-ray (S, S) in [0, 1], projector orientation), where that floor is
    all the prior has to fill the patient's silhouette with; fraction 0 keeps the blend.

    The tomography's floor (about 1 % of soft tissue in the air around each member) sums across the box to a
    haze of a few grey levels in the air of every other view, where DRRs are exactly 0 and SSIM's luminance
    term punishes an offset hardest. Cleared everywhere (`atlas.clear_air` at training), it also leaves the rim
    of a patient wider than the prior with nothing for the gain to scale (a knee's input view fell from 46 to
    35 dB), hence the exception."""
    if fraction <= 0:
        return volume
    cleared = clear_air(volume, fraction)
    samples, step_mm = ray_samples(camera.at_size(target.shape[-1]), [view], n_samples)
    prior, kept = (line_integrals(v, samples, step_mm)[0] for v in (volume, cleared))
    keep = unfillable_rays(prior, kept, target, level, max_gain).to(volume.dtype)
    return torch.where(gain_at(keep, camera, view, voxel_points(volume.shape)) > 0, volume, cleared)


def axis_closeness(depth_mm: torch.Tensor, sigma_mm: float) -> torch.Tensor:
    """c = exp(-d^2 / 2 sigma^2) of depths d (...) in mm from the isocentre -> (...); sigma 0: ones (off)."""
    if sigma_mm <= 0:
        return torch.ones_like(depth_mm)
    return torch.exp(-0.5 * (depth_mm / sigma_mm) ** 2)


def central_ray(camera: DrrCamera, view: int) -> torch.Tensor:
    """Unit vector (3,) along `view`'s central ray, source to detector, in mm (x, y, z)."""
    frames = view_frames(camera.geometry, [view], dtype=torch.float64)
    axis = (frames["detector_centre"][0] - frames["source"][0]).float()
    return axis / axis.norm()


def input_depth_mm(camera: DrrCamera, view: int, points: torch.Tensor) -> torch.Tensor:
    """Depth (mm) of box-normalised points (..., 3) along `view`'s central ray, from the isocentre (positive
    toward the detector) -> (...)."""
    isocentre = torch.tensor(camera.geometry.isocenter_mm, dtype=torch.float32)
    ray = central_ray(camera, view)
    return points @ (ray * (camera.box_mm / 2.0)) - isocentre @ ray


def closeness_at(camera: DrrCamera, view: int, points: torch.Tensor, sigma_mm: float) -> torch.Tensor | None:
    """c at box-normalised points (..., 3) for input view `view` -> (...), or None when sigma_mm is 0 (off), so
    q keeps its shortcuts for the plain gain."""
    return axis_closeness(input_depth_mm(camera, view, points), sigma_mm) if sigma_mm > 0 else None


def depth_profile(values: torch.Tensor, depth_norm: torch.Tensor, power: float,
                  closeness: torch.Tensor | None = None) -> torch.Tensor:
    """q(x) of the gain (module docstring): values mu_A (..., n), N(u) broadcast to (..., 1) and the axis
    closeness c (..., n) (None: ones) -> (..., n)."""
    if power == 1.0 and closeness is None:
        return torch.ones_like(values)
    weight = values.clamp(min=0).pow(power - 1.0)
    return ((weight if closeness is None else weight * closeness) / depth_norm).clamp(max=MAX_DEPTH_EXPONENT)


def depth_norm_map(ray_values: torch.Tensor, power: float, closeness: torch.Tensor | None = None) -> torch.Tensor:
    """N(u) = sum mu^p c / sum mu along each input ray: (S, S, n) samples (and c, None: ones) -> (S, S)
    (ones for p = 1 without c).

    Rays that cross (almost) no prior take the smallest N of the rays that do: the renders look N up between
    rays, and an empty ray's N of 0 next to a sample with attenuation would make q, and g^q, overflow.
    """
    if power == 1.0 and closeness is None:
        return torch.ones(ray_values.shape[:-1])
    values = ray_values.clamp(min=0)
    mass = values.sum(-1)
    weighted = values.pow(power) if closeness is None else values.pow(power) * closeness
    norm = weighted.sum(-1) / mass.clamp(min=1e-12)
    crossing = mass > 0.01 * mass.max()
    floor = norm[crossing].min() if bool(crossing.any()) else torch.tensor(1.0)
    return norm.clamp(min=float(floor))


def shade(ray_values: torch.Tensor, gain: torch.Tensor, depth_norm: torch.Tensor, power: float,
          step_mm: float, closeness: torch.Tensor | None = None) -> torch.Tensor:
    """Line integrals of mu_A g^q: samples (..., n), g and N (...), c (..., n) or None -> (...); p = 1 without
    c is g * L_A."""
    if power == 1.0 and closeness is None:
        return gain * ray_values.sum(-1) * step_mm
    q = depth_profile(ray_values, depth_norm[..., None], power, closeness)
    return (ray_values * torch.exp(gain.log()[..., None] * q)).sum(-1) * step_mm


def fit_gain(ray_values: torch.Tensor, step_mm: float, target: torch.Tensor, phys: PhysicalConfig, weighting,
             perceptual, steps: int, rows: list | None = None, psnr_target: float | None = None,
             closeness: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounded gain (S, S) with a * render(g) ~ target at the input view; ray_values (S, S, n) are mu_A at the
    samples of the input view's rays, the same samples that view is rendered with, so the fit is exact;
    closeness (S, S, n) is c at those samples (None: off).
    psnr_target: stop at the first step whose input view reaches it (upstream's 25 dB protocol); None: run all.
    Returns (gain, N(u))."""
    power = phys.gain_depth_power
    depth_norm = depth_norm_map(ray_values, power, closeness)
    prior_integrals = ray_values.sum(-1) * step_mm
    raw = raw_from_gain(initial_gain(prior_integrals, target, phys.max_gain), phys.max_gain).requires_grad_(True)
    optimiser = torch.optim.Adam([raw, *weighting.parameters()], lr=phys.gain_lr)
    target_u8 = minmax_to_uint8(target.numpy())
    best, best_psnr = raw.detach().clone(), -math.inf
    for iteration in range(1, steps + 1):
        shaded = shade(ray_values, bounded_gain(raw, phys.max_gain), depth_norm, power, step_mm, closeness)
        prediction = (fit_scale(shaded[None], target[None]) * shaded)[0]
        loss, loss_r, loss_mse = weighted_loss(prediction, target, weighting, perceptual)
        row = _row("gain", iteration, loss, loss_r, loss_mse, weighting, prediction, target_u8)
        if row["psnr"] > best_psnr:  # keep the step that rendered the input best
            best, best_psnr = raw.detach().clone(), row["psnr"]
        if _log_then_step(row, rows, psnr_target, optimiser, loss):
            break
    return bounded_gain(best if steps else raw.detach(), phys.max_gain), depth_norm


def split_gain(gain: torch.Tensor, sigma_px: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A positive gain (S, S) -> (coarse, detail) with coarse * detail = gain: coarse is exp of the Gaussian
    (sigma_px pixels, edges extended) of log gain, detail the remainder."""
    log_gain = gain.clamp(min=1e-12).log()
    coarse = ndimage.gaussian_filter(log_gain.detach().double().cpu().numpy(), sigma_px, mode="nearest")
    coarse = torch.from_numpy(coarse).to(gain)
    return coarse.exp(), (log_gain - coarse).exp()


def fit_detail(ray_values: torch.Tensor, step_mm: float, target: torch.Tensor, gain: torch.Tensor,
               depth_norm: torch.Tensor, closeness: torch.Tensor | None, detail_closeness: torch.Tensor,
               sigma_px: float, phys: PhysicalConfig, weighting, perceptual, steps: int, rows: list | None = None,
               psnr_target: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fitted gain (S, S) split into a coarse gain g with the config's profile q and a detail gain h whose
    profile q_H = c_H / N_H sits in a slab at the axis (module docstring), then both refitted at the input view:
    a * sum mu_A g^q h^q_H ~ target (S, S), with DETAIL_ROW_WEIGHT x the mean square, over detector rows, of the
    net change h makes along each row joining the MSE task (`weighted_loss`). ray_values (S, S, n) are mu_A at
    the input view's samples, closeness and detail_closeness (S, S, n) c (None: off) and c_H there.
    psnr_target: stop at the first step whose input view reaches it. Returns (g, h, N_H)."""
    profile = depth_profile(ray_values, depth_norm[..., None], phys.gain_depth_power, closeness)
    detail_norm = depth_norm_map(ray_values, 1.0, detail_closeness)
    detail_profile = depth_profile(ray_values, detail_norm[..., None], 1.0, detail_closeness)
    coarse, detail = split_gain(gain, sigma_px)
    raw = raw_from_gain(coarse, phys.max_gain).requires_grad_(True)
    raw_detail = raw_from_gain(detail, phys.max_gain).requires_grad_(True)
    optimiser = torch.optim.Adam([raw, raw_detail, *weighting.parameters()], lr=phys.gain_lr)
    target_u8 = minmax_to_uint8(target.numpy())
    for iteration in range(1, steps + 1):
        base = ray_values * torch.exp(bounded_gain(raw, phys.max_gain).log()[..., None] * profile)
        change = torch.exp(bounded_gain(raw_detail, phys.max_gain).log()[..., None] * detail_profile) - 1.0
        shaded, added = (base * (1.0 + change)).sum(-1) * step_mm, (base * change).sum(-1) * step_mm
        scale = fit_scale(shaded[None], target[None])[0]
        stripe = ((2.0 * scale * added).mean(dim=1) ** 2).mean()  # rows: axis 0 (the rotation axis is vertical)
        loss, loss_r, loss_mse = weighted_loss(scale * shaded, target, weighting, perceptual,
                                               DETAIL_ROW_WEIGHT * stripe)
        row = _row("detail", iteration, loss, loss_r, loss_mse, weighting, scale * shaded, target_u8)
        if _log_then_step(row, rows, psnr_target, optimiser, loss):
            break
    return (bounded_gain(raw.detach(), phys.max_gain), bounded_gain(raw_detail.detach(), phys.max_gain),
            detail_norm)


def fit_two_gains(volume: torch.Tensor, camera: DrrCamera, view: int, far_view: int, target: torch.Tensor,
                  phys: PhysicalConfig, weighting, perceptual, steps: int, rows: list | None = None,
                  psnr_target: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The gain g (S, S) at the input view and a far gain f (S, S) at `far_view`, mu = mu_A g(u_K) f(u_F), with
    a * render_K ~ target (S, S) (the loss of `weighting`) plus phys.mirror_view_weight x the MSE of
    a' * render_F against the target mirrored left-right: one view of a transmission image seen from behind is
    its mirror image in the parallel-beam limit, which the trivial "mirrored copy" answer relies on; here it
    pulls the depth distribution of the change toward that, through the cone-beam rays. With
    phys.far_gain_grid G > 0, f is bilinear between G x G control points (`control_map`): only the pseudo-view's
    coarse content, since its fine detail is displaced by the cone beam. Both gains start at `initial_gain`
    and 1; the last step is kept (or the first to reach psnr_target)."""
    samples, step_mm = ray_samples(camera, [view, far_view], phys.render_samples)
    values = samples_of(volume, samples)                                    # (2, S, S, n)
    lookups = [[detector_positions(camera, v, samples[k].reshape(-1, 3)) for v in (view, far_view)]
               for k in range(2)]

    def looked(gain: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return map_at(gain, where, values.shape[1:])

    mirrored = target.flip(-1)
    raw = raw_from_gain(initial_gain(values[0].sum(-1) * step_mm, target, phys.max_gain), phys.max_gain)
    raw = raw.requires_grad_(True)
    size = target.shape[-1]
    grid = phys.far_gain_grid or size
    raw_far = torch.zeros(grid, grid, requires_grad=True)

    def far_gain(raw_far: torch.Tensor) -> torch.Tensor:
        return bounded_gain(control_map(raw_far, size), phys.max_gain)

    optimiser = torch.optim.Adam([raw, raw_far, *weighting.parameters()], lr=phys.gain_lr)
    target_u8 = minmax_to_uint8(target.numpy())
    for iteration in range(1, steps + 1):
        gain, far = bounded_gain(raw, phys.max_gain), far_gain(raw_far)
        rendered = [(values[k] * looked(gain, lookups[k][0]) * looked(far, lookups[k][1])).sum(-1) * step_mm
                    for k in range(2)]
        prediction = (fit_scale(rendered[0][None], target[None]) * rendered[0])[0]
        far_prediction = (fit_scale(rendered[1][None], mirrored[None]) * rendered[1])[0]
        loss, loss_r, loss_mse = weighted_loss(prediction, target, weighting, perceptual)
        total = loss + phys.mirror_view_weight * F.mse_loss(far_prediction * 2 - 1, mirrored * 2 - 1)
        row = _row("gain", iteration, loss, loss_r, loss_mse, weighting, prediction, target_u8)
        if _log_then_step(row, rows, psnr_target, optimiser, total):
            break
    return bounded_gain(raw.detach(), phys.max_gain), far_gain(raw_far.detach())


def control_map(points: torch.Tensor, size: int) -> torch.Tensor:
    """A (G, G) grid of control values over the detector -> the (size, size) map through them, bilinear; the
    corner points sit on the corner pixels' centres (as `map_at` looks maps up). G = size returns the points."""
    if points.shape[-1] == size:
        return points
    return F.interpolate(points[None, None], size=(size, size), mode="bilinear", align_corners=True)[0, 0]


def _log_then_step(row: dict, rows: list | None, psnr_target: float | None, optimiser, objective) -> bool:
    """One gain-tuning step's end: log the row, then stop (True) if its input view reached psnr_target
    (upstream's 25 dB protocol), else take the optimiser step on `objective`."""
    if rows is not None:
        rows.append(row)
    if psnr_target is not None and row["psnr"] >= psnr_target:
        return True
    optimiser.zero_grad(set_to_none=True)
    objective.backward()
    optimiser.step()
    return False


def map_at(gain: torch.Tensor, where: torch.Tensor, shape) -> torch.Tensor:
    """A detector map (S, S) at detector positions `where` (P, 2) from `detector_positions` -> `shape` (P values;
    bilinear, the edge value beyond the detector)."""
    looked = F.grid_sample(gain[None, None], where[None, None], mode="bilinear", padding_mode="border",
                           align_corners=True)
    return looked.reshape(shape)


def gain_at(gain: torch.Tensor, camera: DrrCamera, view: int, points: torch.Tensor) -> torch.Tensor:
    """A detector map (S, S) of `view` looked up where box-normalised points (..., 3) project -> (...)
    (`camera` any size, the map's own is used)."""
    where = detector_positions(camera.at_size(gain.shape[-1]), view, points.reshape(-1, 3))
    return map_at(gain, where, points.shape[:-1])


def modulation(state: AtlasState, camera: DrrCamera, points: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """g(u_K(x))^q(x) (times the detail h(u_K(x))^q_H(x) and the far gain f(u_F(x)) when the fit has them) at
    box-normalised points (..., 3) where the prior is `values` (...) -> (...); the maps' edge values beyond the
    detector. `camera` is any size of the model's camera (the gain's own size is used)."""
    own = _input_modulation(state, camera, points, values)
    if state.far_gain is None:
        return own
    return own * gain_at(state.far_gain, camera, state.far_view, points)


def _input_modulation(state: AtlasState, camera: DrrCamera, points: torch.Tensor, values: torch.Tensor
                      ) -> torch.Tensor:
    """g(u_K(x))^q(x), times h(u_K(x))^q_H(x) when the fit has a detail gain (see `modulation`)."""
    closeness = closeness_at(camera, state.input_view, points, state.depth_sigma_mm)
    plain = state.depth_norm is None or (state.depth_power == 1.0 and closeness is None)
    if plain and state.detail is None:
        return gain_at(state.gain, camera, state.input_view, points)  # q = 1: the gain itself, one map to look up
    where = detector_positions(camera.at_size(state.gain.shape[-1]), state.input_view, points.reshape(-1, 3))
    # log of a carved (zero) gain is kept finite and the carving is applied as its own (interpolated) map, so a
    # small q cannot bring back what the X-ray shows is air
    norm = torch.ones_like(state.gain) if state.depth_norm is None else state.depth_norm
    maps = [state.gain.clamp(min=1e-12).log(), norm.log(), (state.gain > 0).to(values)]
    if state.detail is not None:
        maps += [state.detail.log(), state.detail_norm.log()]
    looked = F.grid_sample(torch.stack(maps)[None], where[None, None], mode="bilinear", padding_mode="border",
                           align_corners=True)
    looked = [looked[0, c].reshape(points.shape[:-1]) for c in range(len(maps))]
    power = 1.0 if state.depth_norm is None else state.depth_power
    exponent = looked[0] * depth_profile(values, looked[1].exp(), power, closeness)
    if state.detail is not None:
        detail_closeness = axis_closeness(input_depth_mm(camera, state.input_view, points), state.detail_sigma_mm)
        exponent = exponent + looked[3] * depth_profile(values, looked[4].exp(), 1.0, detail_closeness)
    return torch.exp(exponent) * looked[2]


def render_integrals(state: AtlasState, camera: DrrCamera, n_samples: int, views=None, chunk: int = 4,
                     progress=None, depth_shift_mm: float = 0.0) -> torch.Tensor:
    """(V, S, S) line integrals of mu_A(x) g(u_K(x))^q(x) at `views` (default all), projector orientation.

    depth_shift_mm moves the whole fitted patient (volume and gains together) this far along the input view's
    central ray (positive toward the detector): the one thing the input view barely sees, so a diagnostic of
    how much of the other views' error is the patient's unseen depth (benchmark.depth_study)."""
    views = list(range(camera.geometry.views)) if views is None else list(views)
    shift = depth_shift_mm * central_ray(camera, state.input_view) / (camera.box_mm / 2.0) if depth_shift_mm else None
    out = []
    for start in range(0, len(views), chunk):
        samples, step_mm = ray_samples(camera, views[start:start + chunk], n_samples)
        if shift is not None:
            samples = samples - shift
        values = samples_of(state.volume, samples)
        out.append((values * modulation(state, camera, samples, values)).sum(dim=-1) * step_mm)
        if progress is not None:
            progress(min(start + chunk, len(views)))
    return torch.cat(out)


def views_uint8(integrals: torch.Tensor) -> np.ndarray:
    """(V, S, S) projector-orientation integrals -> (V, S, S) uint8 in the release orientation, min-max."""
    flipped = to_release_orientation(integrals).cpu().numpy()
    return np.stack([minmax_to_uint8(image) for image in flipped])


def history_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
