"""Time one training iteration at the upstream configuration (batch 8, 32x32 patches, 64 samples, 8x256 MLP).

    python -m model.bench_iteration [--config knee] [--repeats 1] [--threads N] [--skip-plain]

Prints, on this machine: the generator forward+backward written plainly (z and the view direction
concatenated to every sample, as upstream does) and as this package computes it, their ratio, and
one whole iteration (shared G forward, D step, G step, EMA).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from umed_common.errors import UserError

from .config import load_config
from .generator import Generator, density_noise_std
from .perceptual import SSIMDistance, build_perceptual
from .train_step import build_models, draw_iteration, train_iteration


def plain_field_forward(field, points_enc: torch.Tensor, dirs_enc: torch.Tensor | None, z: torch.Tensor):
    """The same function as RadianceField.forward, computed the plain way: every per-image and per-ray
    input is expanded to every sample and concatenated before each linear layer. (B, R, S, .) inputs."""
    cfg = field.cfg
    batch, rays, samples, _ = points_enc.shape
    z_shape = z[:, None, None, : cfg.z_shape_dim].expand(batch, rays, samples, -1)
    z_app = z[:, None, None, cfg.z_shape_dim:].expand(batch, rays, samples, -1)
    inputs = torch.cat([points_enc, z_shape], dim=-1)
    h = inputs
    for index, layer in enumerate(field.layers):
        if index == cfg.skip_layer + 1:
            h = torch.cat([h, inputs], dim=-1)
        h = F.relu(layer(h))
    raw = field.density(h).squeeze(-1)
    if not field.with_colour or dirs_enc is None:
        return raw, None
    dirs = dirs_enc[:, :, None, :].expand(batch, rays, samples, -1)
    hidden = F.relu(field.colour_hidden(torch.cat([field.feature(h), dirs, z_app], dim=-1)))
    return raw, torch.sigmoid(field.colour_out(hidden))


class PlainGenerator(Generator):
    """Generator whose field runs `plain_field_forward` (the baseline being timed)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        fast = self.field
        self.field.forward = lambda p, d, z: plain_field_forward(fast, p, d, z)


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_generator(generator: Generator, sample, cfg, repeats: int) -> float:
    def step():
        generator.zero_grad(set_to_none=True)
        out = generator(sample.z, sample.pose, sample.fake_grid, cfg.image_size, sample.noise,
                        density_noise_std(cfg, 0))
        out.sum().backward()
    return _time(step, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.bench_iteration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="knee", help="config (default knee: the upstream sizes)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--skip-plain", action="store_true", help="do not time the plain generator")
    parser.add_argument("--precision", choices=["config", "float32", "bfloat16", "both"], default="both",
                        help="MLP precision of this package's timings (default: float32 and bfloat16)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    # A VGG16 file may be absent here; timing the D step with 1 - SSIM instead is stated in the output.
    try:
        perceptual, perceptual_name = build_perceptual(cfg.perceptual), cfg.perceptual
    except UserError:
        perceptual, perceptual_name = SSIMDistance(), "ssim (VGG16 weights absent)"
    precisions = {"config": [cfg.field.precision], "both": ["float32", "bfloat16"]}.get(
        args.precision, [args.precision])
    images = torch.rand(16, 1, cfg.image_size, cfg.image_size) * 2 - 1
    sample = draw_iteration(cfg, 0, 0, cfg.train.batch_size, len(images))
    f = cfg.field
    print(f"config {cfg.name}: batch {cfg.train.batch_size}, patch {cfg.patch.size}x{cfg.patch.size}, "
          f"{cfg.render.n_samples} samples, MLP {f.n_layers}x{f.width}, D {cfg.discriminator.kind}, "
          f"L_r {perceptual_name}, torch threads {torch.get_num_threads()}")
    times = {}
    for precision in precisions:
        cfg.field.precision = precision
        torch.manual_seed(0)
        models = build_models(cfg, torch.device("cpu"), 0, perceptual)
        train_iteration(models, images, sample, 0)           # warm-up: allocator, oneDNN primitives
        times[precision] = time_generator(models.generator, sample, cfg, args.repeats)
        print(f"generator forward+backward (this package, {precision}): {times[precision]:.2f} s", flush=True)
        whole = _time(lambda: train_iteration(models, images, sample, 1), args.repeats)
        print(f"whole training iteration, G and D (this package, {precision}): {whole:.2f} s", flush=True)
    if not args.skip_plain:
        cfg.field.precision = "float32"
        plain = PlainGenerator(cfg)
        plain.load_state_dict(models.generator.state_dict())
        slow = time_generator(plain, sample, cfg, args.repeats)
        ratios = ", ".join(f"{p} x{slow / t:.2f}" for p, t in times.items())
        print(f"generator forward+backward (plain PyTorch, float32): {slow:.2f} s -> speed-up {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
