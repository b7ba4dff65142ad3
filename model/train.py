"""Stage 1: GAN training loop with EMA, atomic checkpoints, exact resume, CSV log and sample grids."""
from __future__ import annotations

import csv
import signal
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from umed_common.atomic import ensure_writable_dir
from umed_common.errors import Interrupted, UserError
from umed_common.images import write_png

from .cameras import view_poses
from .checkpoint import check_identity, load_state, read_checkpoint, save_checkpoint
from .config import ModelConfig, config_to_dict, load_config
from .data import load_training_images
from .distributed import (DistContext, any_rank, average_gradients, average_metrics, broadcast_module,
                          finish_distributed, init_distributed)
from .generator import to_gray
from .perceptual import build_perceptual
from .rng import STREAM_SAMPLES, seeded_generator
from .train_step import GANModels, build_models, draw_iteration, train_iteration

LOG_FIELDS = ["iteration", "loss_d", "loss_g", "loss_recon", "r1", "lr_g", "lr_d", "noise_std",
              "patch_scale_min", "elapsed_s"]


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so the run ends with a checkpoint."""

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def model_states(models: GANModels, seed: int, identity: dict | None = None) -> dict:
    """identity: what the run trains on (holdout, training images), checked again by --resume."""
    return {"generator": models.generator.state_dict(), "generator_ema": models.generator_ema.state_dict(),
            "discriminator": models.discriminator.state_dict(), "opt_g": models.opt_g.state_dict(),
            "opt_d": models.opt_d.state_dict(), "seed": seed, "torch_rng": torch.get_rng_state(),
            **(identity or {})}


def run_identity(holdout: Sequence[str], keys: list[tuple[str, int]]) -> dict:
    """The held-out patients and every training image (patient/view), as a checkpoint records them."""
    return {"holdout": sorted(holdout), "training_images": [f"{patient}/{view}" for patient, view in keys]}


def restore_states(models: GANModels, payload: dict, path: Path) -> None:
    for name in ("generator", "generator_ema", "discriminator"):
        load_state(getattr(models, name), payload[name], path, name)
    models.opt_g.load_state_dict(payload["opt_g"])
    models.opt_d.load_state_dict(payload["opt_d"])
    torch.set_rng_state(payload["torch_rng"])


def _resume_payload(cfg: ModelConfig, checkpoint: Path, resume: bool, seed: int) -> dict | None:
    if not resume:
        if checkpoint.exists():
            raise UserError(f"{checkpoint}: already exists (pass --resume to continue that run)")
        return None
    if not checkpoint.exists():
        raise UserError(f"{checkpoint}: nothing to resume")
    saved_cfg, payload = read_checkpoint(checkpoint)
    if config_to_dict(saved_cfg) != config_to_dict(cfg):
        raise UserError(f"{checkpoint}: was trained with another config (resume with the same config)")
    if payload.get("seed") != seed:
        raise UserError(f"{checkpoint}: was trained with --seed {payload.get('seed')}, not {seed}")
    return payload


class CsvLog:
    """Append-only CSV; on resume rows after the resumed iteration are dropped (they will be redone)."""

    def __init__(self, path: Path, start_iteration: int):
        self.path = path
        rows = []
        if start_iteration > 0 and path.exists():
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= start_iteration]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, LOG_FIELDS, extrasaction="ignore").writerow(row)


def write_sample_grid(models: GANModels, path: Path, seed: int) -> None:
    """EMA renders of fixed z at evenly spaced azimuths, tiled into one PNG (pixels (x + 1) / 2 * 255)."""
    cfg = models.cfg
    n, size = cfg.train.n_sample_images, cfg.train.sample_size
    gen = seeded_generator(seed, STREAM_SAMPLES)
    device = next(models.generator_ema.parameters()).device
    z = torch.randn(n, cfg.z_dim, generator=gen).to(device)
    azimuth = torch.linspace(0, 360, n + 1)[:-1]
    pose = view_poses(azimuth, sum(cfg.camera.polar_deg) / 2, sum(cfg.camera.radius) / 2).to(device)
    with torch.no_grad():
        images = to_gray(models.generator_ema.render(z, pose, size)).cpu().numpy()
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    sheet = np.zeros((rows * size, cols * size), dtype=np.uint8)
    for index, image in enumerate(images):
        r, c = divmod(index, cols)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = np.clip((image + 1) * 127.5, 0, 255).round()
    write_png(path, sheet)


def _save(models, cfg, ctx: DistContext, out_dir: Path, iteration: int, seed: int, identity: dict) -> None:
    if not ctx.is_main:
        return
    states = model_states(models, seed, identity)
    save_checkpoint(out_dir / "model.pt", cfg, iteration, states)
    keep = cfg.train.keep_checkpoints_every
    if keep and iteration % keep == 0:
        save_checkpoint(out_dir / f"model_it{iteration:06d}.pt", cfg, iteration, states)


def train(config: str | Path | ModelConfig, data_dir: str | Path, out_dir: str | Path, *,
          holdout: Sequence[str] = (), device: str = "auto", max_iters: int | None = None,
          time_budget_s: float | None = None, resume: bool = False, seed: int = 0, progress: bool = True,
          perceptual_weights: str | Path | None = None) -> Path:
    """Train the GAN; returns out_dir / "model.pt" (EMA generator, D, optimisers, config)."""
    cfg = config if isinstance(config, ModelConfig) else load_config(config)
    if cfg.family == "physical":
        from .physical import train_physical
        return train_physical(cfg, data_dir, out_dir, holdout=holdout, device=device, resume=resume, seed=seed,
                              progress=progress, perceptual_weights=perceptual_weights)
    ctx = init_distributed(device)
    checkpoint = Path(out_dir) / "model.pt"
    payload = _resume_payload(cfg, checkpoint, resume, seed)
    images, keys = load_training_images(data_dir, holdout, cfg.image_size)
    identity = run_identity(holdout, keys)
    if payload is not None:
        check_identity(payload, identity, checkpoint)
    perceptual = build_perceptual(cfg.perceptual, perceptual_weights)
    out_dir = ensure_writable_dir(out_dir)       # only after every input checked: no empty run folders
    images = images.to(ctx.device)
    models = build_models(cfg, ctx.device, seed, perceptual)
    start = 0
    if payload is not None:
        restore_states(models, payload, checkpoint)
        start = int(payload["iteration"])
    broadcast_module(models.generator, ctx)
    broadcast_module(models.discriminator, ctx)
    total = max_iters if max_iters is not None else cfg.train.max_iters
    log = CsvLog(out_dir / "log.csv", start) if ctx.is_main else None
    batch, began = cfg.train.batch_size, time.monotonic()
    with StopRequest() as stop:
        bar = tqdm(range(start, total), initial=start, total=total, disable=not progress or not ctx.is_main,
                   desc="train", unit="it", dynamic_ncols=True)
        for iteration in bar:
            sample = draw_iteration(cfg, seed, iteration, batch * ctx.world_size, len(images))
            sample = sample.slice(ctx.rank * batch, (ctx.rank + 1) * batch)
            metrics = train_iteration(models, images, sample, iteration,
                                      lambda module: average_gradients(module, ctx))
            done = iteration + 1
            elapsed = time.monotonic() - began
            over_budget = time_budget_s is not None and elapsed >= time_budget_s
            halt = any_rank(stop.requested or over_budget, ctx)
            if halt or done % cfg.train.log_every == 0 or done == total:
                metrics = average_metrics(metrics, ctx)
                if log is not None:
                    log.append({"iteration": done, "elapsed_s": round(elapsed, 3), **metrics})
                    bar.set_postfix(d=f"{metrics['loss_d']:.3f}", g=f"{metrics['loss_g']:.3f}")
            if halt or done == total or done % cfg.train.checkpoint_every == 0:
                _save(models, cfg, ctx, out_dir, done, seed, identity)
            if ctx.is_main and cfg.train.sample_every and (done % cfg.train.sample_every == 0 or halt):
                write_sample_grid(models, out_dir / f"samples_it{done:06d}.png", seed)
            if halt:
                break
        bar.close()
    if start >= total and ctx.is_main and not checkpoint.exists():
        _save(models, cfg, ctx, out_dir, start, seed, identity)
    finish_distributed(ctx)
    if stop.signum is not None:  # the checkpoint is written; the exit status still says "stopped"
        raise Interrupted(f"stopped by {signal.Signals(stop.signum).name} after the checkpoint {checkpoint} "
                          "was written (continue with --resume)", 128 + stop.signum)
    return checkpoint
