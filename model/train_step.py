"""One GAN iteration (discriminator step, then generator step) and the randomness it consumes.

Every random number of iteration `it` is drawn for the whole global batch from generators seeded by
(seed, it, stream), so (a) a resumed run draws exactly what an uninterrupted one would, with no RNG
state to restore, and (b) data-parallel rank r takes rows r*B..(r+1)*B-1 of the global batch, which
is what one process with the whole batch would see.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cameras import sample_pose_prior
from .config import ModelConfig
from .discriminators import build_discriminator, crop_quadrants, head_weights
from .generator import Generator, RenderNoise, density_noise_std
from .losses import hinge_d_loss, hinge_g_loss, nonsaturating_d_loss, nonsaturating_g_loss, r1_penalty
from .ray_samplers import min_patch_scale, sample_patch_grids, sample_real_patches
from .rng import STREAM_DATA, STREAM_INIT, STREAM_ITER, seeded_generator



@dataclass
class IterationSample:
    """Random inputs of one iteration; leading dim is the batch."""
    image_index: torch.Tensor   # (B,) rows of the training image stack
    z: torch.Tensor             # (B, Z)
    pose: torch.Tensor          # (B, 3) azimuth_deg, polar_deg, radius
    fake_grid: torch.Tensor     # (B, P, P, 2)
    real_grid: torch.Tensor     # (B, P, P, 2)
    noise: RenderNoise
    soft_real: torch.Tensor     # (B,) hinge soft labels
    soft_fake: torch.Tensor
    quadrant: torch.Tensor      # (B,) which quadrant the discriminator reconstructs

    def slice(self, start: int, stop: int) -> "IterationSample":
        return IterationSample(**{f.name: getattr(self, f.name)[start:stop] if f.name != "noise"
                                  else self.noise.slice(start, stop) for f in fields(self)})


def data_order(seed: int, iteration: int, batch: int, n_images: int) -> torch.Tensor:
    """(B,) image rows for an iteration: consecutive slices of per-epoch permutations."""
    positions = torch.arange(iteration * batch, (iteration + 1) * batch)
    rows = torch.empty(batch, dtype=torch.long)
    for epoch in positions.div(n_images, rounding_mode="floor").unique().tolist():
        perm = torch.randperm(n_images, generator=seeded_generator(seed, STREAM_DATA, epoch))
        mask = positions // n_images == epoch
        rows[mask] = perm[positions[mask] % n_images]
    return rows


def draw_iteration(cfg: ModelConfig, seed: int, iteration: int, batch: int, n_images: int) -> IterationSample:
    """All randomness of iteration `iteration` for a (global) batch of `batch`."""
    gen = seeded_generator(seed, STREAM_ITER, iteration)
    patch, low = cfg.patch.size, cfg.discriminator.soft_label_min
    return IterationSample(
        image_index=data_order(seed, iteration, batch, n_images),
        z=torch.randn(batch, cfg.z_dim, generator=gen),
        pose=sample_pose_prior(cfg.camera, batch, gen),
        fake_grid=sample_patch_grids(cfg.patch, batch, iteration, gen),
        real_grid=sample_patch_grids(cfg.patch, batch, iteration, gen),
        noise=RenderNoise.draw(batch, patch * patch, cfg.render.n_samples, gen),
        soft_real=low + (1 - low) * torch.rand(batch, generator=gen),
        soft_fake=low + (1 - low) * torch.rand(batch, generator=gen),
        quadrant=torch.randint(0, 4, (batch,), generator=gen))


@dataclass
class GANModels:
    cfg: ModelConfig
    generator: Generator
    generator_ema: Generator
    discriminator: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    perceptual: nn.Module


def build_models(cfg: ModelConfig, device: torch.device, seed: int, perceptual: nn.Module) -> GANModels:
    """Freshly initialised G, its EMA copy, D and RMSprop optimisers (REFERENCE 4)."""
    torch.manual_seed(int(seeded_generator(seed, STREAM_INIT).initial_seed()))
    generator = Generator(cfg).to(device)
    generator_ema = Generator(cfg).to(device)
    generator_ema.load_state_dict(generator.state_dict())
    generator_ema.eval().requires_grad_(False)
    discriminator = build_discriminator(cfg.discriminator, cfg.image_channels, cfg.patch.size).to(device)
    opt_g = torch.optim.RMSprop(generator.parameters(), lr=cfg.train.lr_g)
    opt_d = torch.optim.RMSprop(discriminator.parameters(), lr=cfg.train.lr_d)
    return GANModels(cfg, generator, generator_ema, discriminator, opt_g, opt_d, perceptual.to(device))


def learning_rate(base: float, iteration: int, milestones, gamma: float) -> float:
    """Step decay: base * gamma^(number of milestones already passed)."""
    return base * gamma ** sum(iteration >= m for m in milestones)


def _real_patches(cfg: ModelConfig, images: torch.Tensor, sample: IterationSample) -> torch.Tensor:
    device = images.device
    real = sample_real_patches(images[sample.image_index.to(device)], sample.real_grid.to(device))
    return real.expand(-1, cfg.image_channels, -1, -1).contiguous()


def discriminator_loss(models: GANModels, real: torch.Tensor, fake: torch.Tensor,
                       sample: IterationSample) -> tuple[torch.Tensor, dict[str, float]]:
    """Adversarial loss on real and (detached) fake patches + reconstruction L_r + R1."""
    cfg, disc, device = models.cfg.discriminator, models.discriminator, real.device
    weights = head_weights(disc.n_heads, cfg.augmented_head_weight).to(device)
    real = real.detach().requires_grad_(cfg.r1_gamma > 0)
    real_logits, recons = disc(real, sample.quadrant)
    fake_logits = disc(fake.detach())
    if cfg.loss == "hinge":
        adversarial = hinge_d_loss(real_logits, fake_logits, sample.soft_real.to(device),
                                   sample.soft_fake.to(device), weights)
    else:
        adversarial = nonsaturating_d_loss(real_logits, fake_logits)
    recon = torch.zeros((), device=device)
    if recons is not None:
        size = (cfg.recon_size, cfg.recon_size)
        target_whole = F.interpolate(real.detach(), size=size, mode="bilinear", align_corners=False)
        quadrant = crop_quadrants(real.detach(), sample.quadrant)
        target_quadrant = F.interpolate(quadrant, size=size, mode="bilinear", align_corners=False)
        recon = models.perceptual(recons[0], target_whole) + models.perceptual(recons[1], target_quadrant)
    r1 = r1_penalty(real_logits, real, cfg.r1_gamma) if cfg.r1_gamma > 0 else torch.zeros((), device=device)
    total = adversarial + cfg.recon_weight * recon + r1
    return total, {"loss_d": adversarial.detach().item(), "loss_recon": recon.detach().item(),
                   "r1": r1.detach().item()}


def generator_loss(models: GANModels, fake: torch.Tensor) -> torch.Tensor:
    cfg, disc = models.cfg.discriminator, models.discriminator
    logits = disc(fake)
    if cfg.loss == "hinge":
        return hinge_g_loss(logits, head_weights(disc.n_heads, cfg.augmented_head_weight).to(fake.device))
    return nonsaturating_g_loss(logits)


def train_iteration(models: GANModels, images: torch.Tensor, sample: IterationSample, iteration: int,
                    sync_gradients: Callable[[nn.Module], None] = lambda module: None) -> dict[str, float]:
    """D step then G step on one shared fake batch (docs/paper-faithful.md: equivalent to upstream's D-then-G
    order, with one generator forward instead of two). images: (N, 1, S, S) in [-1, 1] on the device."""
    cfg, device = models.cfg, images.device
    train = cfg.train
    lr_g = learning_rate(train.lr_g, iteration, train.lr_milestones, train.lr_gamma)
    lr_d = learning_rate(train.lr_d, iteration, train.lr_milestones, train.lr_gamma)
    for opt, lr in ((models.opt_g, lr_g), (models.opt_d, lr_d)):
        for group in opt.param_groups:
            group["lr"] = lr
    models.generator.train()
    models.discriminator.train()
    noise_std = density_noise_std(cfg, iteration)
    fake = models.generator(sample.z.to(device), sample.pose.to(device), sample.fake_grid.to(device),
                            cfg.image_size, sample.noise, noise_std)
    real = _real_patches(cfg, images, sample)
    loss_d, metrics = discriminator_loss(models, real, fake, sample)
    models.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    sync_gradients(models.discriminator)
    models.opt_d.step()
    models.discriminator.requires_grad_(False)     # G step: no gradient into D's weights
    loss_g = generator_loss(models, fake)
    models.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    models.discriminator.requires_grad_(True)
    sync_gradients(models.generator)
    models.opt_g.step()
    update_ema(models.generator_ema, models.generator, train.ema_beta)
    metrics.update(loss_g=loss_g.detach().item(), lr_g=lr_g, lr_d=lr_d, noise_std=noise_std,
                   patch_scale_min=min_patch_scale(cfg.patch, iteration))
    return metrics


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
