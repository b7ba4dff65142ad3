"""Stage 2: fine-tune the generator on one X-ray with uncertainty-weighted losses (paper Eq. 5, REFERENCE 5),
then render the 72 views. z is drawn once and kept fixed; all generator weights are optimised."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from umed_common.errors import UserError
from umed_common.measures import minmax_to_uint8
from umed_common.protocol import N_VIEWS

from .checkpoint import read_checkpoint, resolve_run
from .fit_result import FinetuneResult, input_view_metrics, prepare_xray  # noqa: F401  (public here too)
from .config import parse_loss_weights, with_finetune_options
from .cameras import view_poses
from .generator import to_gray
from .inference import LoadedModel, model_from_checkpoint
from .losses import mse_loss
from .perceptual import build_perceptual
from .pose_search import search_latent_and_azimuth
from .rng import STREAM_FINETUNE_Z, seeded_generator
from .uncertainty import build_weighting

RMSPROP_ALPHA = 0.99  # torch's default smoothing constant


def rmsprop_bias_correction(step: int) -> float:
    """Learning-rate factor sqrt(1 - alpha^(step + 1)) that undoes the bias of RMSprop's running mean
    of squared gradients (which starts at 0): a constant gradient then moves a weight by lr per step."""
    return math.sqrt(1.0 - RMSPROP_ALPHA ** (step + 1))


def _step(loss: torch.Tensor, opt_g, opt_w) -> None:
    """One optimiser step of the generator and, when learned, the uncertainty weights."""
    opt_g.zero_grad(set_to_none=True)
    if opt_w is not None:
        opt_w.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    if opt_w is not None:
        opt_w.step()


def _optimise(model: LoadedModel, generator, z, pose, target, weights, max_iters, psnr_target,
              perceptual, progress) -> pd.DataFrame:
    """Fine-tune `generator` in place on the full render at `pose` and leave it at the step with the best
    input-view PSNR; returns the per-step history (PSNR of each step's render, before its update)."""
    cfg = model.config.finetune
    size = target.shape[-1]
    weighting = build_weighting(weights, cfg.uncertainty_form).to(model.device)
    opt_g = torch.optim.RMSprop(generator.parameters(), lr=cfg.lr, alpha=RMSPROP_ALPHA)
    warm = torch.optim.lr_scheduler.LambdaLR(opt_g, rmsprop_bias_correction) if cfg.rmsprop_bias_correction else None
    learned = list(weighting.parameters())
    opt_w = torch.optim.Adam(learned, lr=cfg.uncertainty_lr) if learned else None
    target_u8 = minmax_to_uint8(target.cpu().numpy())
    target_img = target[None, None].to(model.device)
    rows = []
    best_psnr, best_state = -math.inf, None
    bar = tqdm(range(1, max_iters + 1), disable=not progress, desc="fine-tune", unit="it")
    for iteration in bar:
        render = to_gray(generator.render(z, pose, size, cfg.render_chunk))[:, None]
        loss_r, loss_mse = perceptual(render, target_img), mse_loss(render, target_img)
        loss = weighting(torch.stack([loss_r, loss_mse]))
        psnr, ssim_value = input_view_metrics(render[0, 0], target_u8)
        if psnr > best_psnr:  # RMSprop steps make the input-view PSNR jump by dB; keep the best weights
            best_psnr, best_state = psnr, copy.deepcopy(generator.state_dict())
        reached = psnr_target is not None and psnr >= psnr_target
        if not reached:  # at the target, keep the weights that rendered it: one more step could lose it
            _step(loss, opt_g, opt_w)
            if warm is not None:
                warm.step()
        sigma = weighting.sigmas().cpu().tolist()
        rows.append({"iteration": iteration, "loss": loss.item(), "loss_r": loss_r.item(),
                     "loss_mse": loss_mse.item(), "sigma_1": sigma[0], "sigma_2": sigma[1],
                     "psnr": psnr, "ssim": ssim_value})
        bar.set_postfix(psnr=f"{psnr:.2f}")
        if reached:
            break
    bar.close()
    if best_state is not None:
        generator.load_state_dict(best_state)
    return pd.DataFrame(rows, columns=["iteration", "loss", "loss_r", "loss_mse", "sigma_1", "sigma_2",
                                       "psnr", "ssim"])


def finetune(checkpoint: str | Path, xray: np.ndarray, *, input_view_index: int | None = 0,
             loss_weights: str | tuple[float, float] = "learned", azimuth_deg: float | None = None,
             device: str = "auto", seed: int = 0, progress: bool = True,
             perceptual_weights: str | Path | None = None, **options) -> FinetuneResult:
    """Fine-tune on one X-ray ((H, W) uint8, any size) and render the 72 views at the config's size.

    options: config.FINETUNE_OPTIONS (max_iters, psnr_target, lr, ...) over the checkpoint config's `finetune`
    values, checked by the config schema; None keeps the config's value. A physical checkpoint takes
    max_iters (its gain steps) and psnr_target (None: every step).
    """
    if input_view_index is not None and not 0 <= input_view_index < N_VIEWS:
        raise UserError(f"input view index {input_view_index}: must be in 0..{N_VIEWS - 1}")
    weights = parse_loss_weights(loss_weights)
    path = resolve_run(checkpoint)
    saved_cfg, payload = read_checkpoint(path)   # read once: it picks the family and then loads the model
    saved_cfg.finetune = with_finetune_options(saved_cfg.finetune, options)
    if saved_cfg.family == "physical":
        from .physical import fit_physical
        return fit_physical(saved_cfg, payload, path, xray, input_view_index=input_view_index, loss_weights=weights,
                            perceptual_weights=perceptual_weights, progress=progress,
                            gain_steps=options.get("max_iters"), psnr_target=options.get("psnr_target"))
    input_view_index = 0 if input_view_index is None else input_view_index
    model = model_from_checkpoint(saved_cfg, payload, path, device)
    cfg = model.config
    ft = cfg.finetune
    perceptual = build_perceptual(cfg.perceptual, perceptual_weights).to(model.device)
    render_size = ft.render_size or cfg.image_size
    target = prepare_xray(xray, cfg.image_size)
    target_small = target if render_size == cfg.image_size else F.interpolate(
        target[None, None], size=(render_size, render_size), mode="bilinear", antialias=True)[0, 0]
    z_stream = seeded_generator(seed, STREAM_FINETUNE_Z)   # one draw per candidate: the first is the paper's z
    candidates = torch.cat([torch.randn(1, cfg.z_dim, generator=z_stream) for _ in range(ft.z_candidates)])
    candidates = candidates.to(model.device)
    if azimuth_deg is None or ft.z_candidates > 1:
        best, azimuth_deg, _ = search_latent_and_azimuth(
            model.generator, candidates, target_small, ft.polar_deg, ft.radius, ft.pose_search_step_deg,
            azimuth_deg, ft.render_chunk, progress)
    else:
        best = 0
    z = candidates[best:best + 1]
    generator = copy.deepcopy(model.generator).train().requires_grad_(True)
    pose = view_poses(torch.tensor([azimuth_deg]), ft.polar_deg, ft.radius).to(model.device)
    history = _optimise(model, generator, z, pose, target_small, weights, ft.max_iters, ft.psnr_target,
                        perceptual, progress)
    generator.eval().requires_grad_(False)
    views = render_views(generator, z, azimuth_deg, input_view_index, cfg, progress)
    return FinetuneResult(views, input_view_index, float(azimuth_deg), history, z, generator)


def view_azimuths(azimuth_deg: float, input_view_index: int, step_deg: float) -> torch.Tensor:
    """(72,) model azimuths of DRR views 0..71, anchored so view `input_view_index` is at `azimuth_deg`."""
    return (azimuth_deg + (torch.arange(N_VIEWS, dtype=torch.float64) - input_view_index) * step_deg) % 360.0


def render_views(generator, z, azimuth_deg: float, input_view_index: int, cfg, progress: bool) -> np.ndarray:
    """(72, S, S) uint8 at the config's image size, each min-max normalised."""
    azimuths = view_azimuths(azimuth_deg, input_view_index, cfg.finetune.view_step_deg).float()
    pose = view_poses(azimuths, cfg.finetune.polar_deg, cfg.finetune.radius).to(z.device)
    with torch.no_grad():
        images = to_gray(generator.render(z, pose, cfg.image_size, cfg.finetune.render_chunk, progress,
                                          f"{N_VIEWS} views"))
    return np.stack([minmax_to_uint8(image) for image in images.cpu().numpy()])
