"""Using a trained generator: load it from a checkpoint (either family) and sample images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from umed_common.device import resolve_device
from umed_common.measures import minmax_to_uint8

from .cameras import sample_pose_prior
from .checkpoint import load_state, read_checkpoint, resolve_run
from .config import ModelConfig
from .generator import Generator, to_gray
from .rng import STREAM_SAMPLE_IMAGES, seeded_generator


@dataclass
class LoadedModel:
    config: ModelConfig
    generator: Generator        # the EMA generator, eval mode
    image_size: int
    device: torch.device


def load_checkpoint(path: str | Path, device: str = "auto") -> LoadedModel:
    """The EMA generator of a training checkpoint; a foreign or mismatching file is a UserError."""
    return model_from_checkpoint(*read_checkpoint(resolve_run(path)), path, device)


def model_from_checkpoint(cfg: ModelConfig, payload: dict, path: str | Path, device: str = "auto") -> LoadedModel:
    """load_checkpoint for a checkpoint already read (read_checkpoint's config and payload)."""
    target = resolve_device(device)
    if cfg.family == "physical":   # an attenuation atlas, no generator network (model.physical)
        return LoadedModel(cfg, None, cfg.image_size, target)
    generator = Generator(cfg)
    load_state(generator, payload["generator_ema"], path, "generator")
    generator.to(target).eval().requires_grad_(False)
    return LoadedModel(cfg, generator, cfg.image_size, target)


def sample_images(checkpoint: str | Path, n: int, *, device: str = "auto", seed: int = 0, batch_size: int = 8,
                  progress: bool = True) -> np.ndarray:
    """(n, H, W) uint8: EMA renders of random z at poses from the prior, each min-max normalised.
    For a physical checkpoint: DRRs of its atlas volumes (training patients) at random view indices."""
    model = load_checkpoint(checkpoint, device)
    cfg = model.config
    if cfg.family == "physical":
        from .physical import sample_atlas_images
        return sample_atlas_images(checkpoint, n, seed=seed)
    gen = seeded_generator(seed, STREAM_SAMPLE_IMAGES)
    z = torch.randn(n, cfg.z_dim, generator=gen)
    pose = sample_pose_prior(cfg.camera, n, gen)
    out = np.zeros((n, cfg.image_size, cfg.image_size), dtype=np.uint8)
    bar = tqdm(total=n, disable=not progress, desc="sample", unit="img")
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        with torch.no_grad():
            images = model.generator.render(z[start:stop].to(model.device), pose[start:stop].to(model.device),
                                            cfg.image_size, cfg.finetune.render_chunk)
        for offset, image in enumerate(to_gray(images).cpu().numpy()):
            out[start + offset] = minmax_to_uint8(image)
        bar.update(stop - start)
    bar.close()
    return out
