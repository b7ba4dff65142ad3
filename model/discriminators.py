"""Discriminators on 32x32 patches: MedNeRF's self-supervised one (REFERENCE 4) and GRAF's plain one.

Both return logits (B, K), one column per augmentation head (K = 4 for MedNeRF: identity, flip H,
flip W, rot90; K = 1 for GRAF). Batch norm in the MedNeRF discriminator uses the statistics of the
batch each process sees (as upstream on several GPUs); the GRAF discriminator has no batch statistics.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .config import DiscriminatorConfig

AUGMENTATIONS = ("identity", "flip_h", "flip_w", "rot90")


def augment(x: torch.Tensor, name: str) -> torch.Tensor:
    """(B, C, H, W) -> the same patch flipped vertically / horizontally / rotated by 90 degrees."""
    if name == "flip_h":
        return x.flip(-2)
    if name == "flip_w":
        return x.flip(-1)
    if name == "rot90":
        return torch.rot90(x, 1, dims=(-2, -1))
    return x


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
    return spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias))


class DownBlock(nn.Module):
    """Mean of a strided conv path and an average-pool path (FastGAN's DownBlockComp)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.main = nn.Sequential(
            _conv(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2),
            _conv(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))
        self.direct = nn.Sequential(
            nn.AvgPool2d(2, 2), _conv(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))

    def forward(self, x):
        return (self.main(x) + self.direct(x)) / 2


class SkipExcitation(nn.Module):
    """Channel gates for a low-resolution feature computed from a higher-resolution one."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), _conv(c_in, c_out, 4, bias=False), nn.LeakyReLU(0.2),
            _conv(c_out, c_out, 1, bias=False), nn.Sigmoid())

    def forward(self, low_res, high_res):
        return low_res * self.gate(high_res)


class Decoder(nn.Module):
    """(B, c_in, 8, 8) features -> (B, channels, size, size) in [-1, 1]; nearest upsampling + conv."""

    def __init__(self, c_in: int, channels: int, size: int):
        super().__init__()
        blocks, width = [], c_in
        for _ in range(int(math.log2(size // 8))):
            out = max(width // 2, 8)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(width, out, 3, 1, 1, bias=False),
                       nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            width = out
        blocks += [_conv(width, channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, x):
        return self.net(x)


class MedNeRFDiscriminator(nn.Module):
    """Self-supervised discriminator: 32 -> 16 -> 8 features, four logit heads, two decoders."""

    def __init__(self, cfg: DiscriminatorConfig, channels: int):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(_conv(channels, w, 3, 1, 1), nn.LeakyReLU(0.2))
        self.down_16, self.down_8 = DownBlock(w, 2 * w), DownBlock(2 * w, 4 * w)
        self.excite_16, self.excite_8 = SkipExcitation(w, 2 * w), SkipExcitation(2 * w, 4 * w)
        self.trunk = nn.Sequential(_conv(4 * w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2))
        self.heads = nn.ModuleList([_conv(4 * w, 1, 4) for _ in AUGMENTATIONS])
        self.decode_whole = Decoder(4 * w, channels, cfg.recon_size)
        self.decode_quadrant = Decoder(2 * w, channels, cfg.recon_size)
        self.n_heads = len(AUGMENTATIONS)

    def features(self, x):
        """(B, C, 32, 32) -> features at 16x16 (B, 2w, 16, 16) and 8x8 (B, 4w, 8, 8)."""
        f32 = self.stem(x)
        f16 = self.excite_16(self.down_16(f32), f32)
        f8 = self.excite_8(self.down_8(f16), f16)
        return f16, f8

    def forward(self, x: torch.Tensor, quadrant: torch.Tensor | None = None):
        """x (B, C, 32, 32) -> logits (B, 4); with quadrant (B,) in 0..3 also the reconstructions
        (whole, quadrant), each (B, C, recon_size, recon_size), decoded from the identity view."""
        batch = x.shape[0]
        stacked = torch.cat([augment(x, name) for name in AUGMENTATIONS])
        f16, f8 = self.features(stacked)
        trunk = self.trunk(f8)
        logits = torch.stack([head(trunk[i * batch:(i + 1) * batch]).mean(dim=(1, 2, 3))
                              for i, head in enumerate(self.heads)], dim=1)
        if quadrant is None:
            return logits
        crops = crop_quadrants(f16[:batch], quadrant)
        return logits, (self.decode_whole(f8[:batch]), self.decode_quadrant(crops))


def crop_quadrants(x: torch.Tensor, quadrant: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), (B,) in 0..3 (row-major: top-left, top-right, bottom-left, bottom-right) -> (B, C, H/2, W/2)."""
    half_h, half_w = x.shape[-2] // 2, x.shape[-1] // 2
    rows = [x[i, :, (int(q) // 2) * half_h:(int(q) // 2 + 1) * half_h, (int(q) % 2) * half_w:(int(q) % 2 + 1) * half_w]
            for i, q in enumerate(quadrant)]
    return torch.stack(rows)


class GRAFDiscriminator(nn.Module):
    """GRAF's patch discriminator: spectral-norm strided convs 3 -> 128 -> 256 -> 512, instance norm,
    LeakyReLU 0.2, a 4x4 conv to one logit. Extra halvings are added for larger patches."""

    def __init__(self, channels: int, patch_size: int):
        super().__init__()
        widths = [channels, 128, 256, 512]
        n_down = max(1, int(math.log2(patch_size // 4)))
        widths = widths[: n_down + 1] + [512] * max(0, n_down + 1 - len(widths))
        layers = []
        for index in range(n_down):
            # a bias before instance norm is cancelled by it: its true gradient is 0, and RMSprop would
            # turn the rounding noise of that 0 into full-size steps
            layers.append(_conv(widths[index], widths[index + 1], 4, 2, 1, bias=index == 0))
            if index > 0:
                layers.append(nn.InstanceNorm2d(widths[index + 1], affine=True))
            layers.append(nn.LeakyReLU(0.2))
        layers.append(_conv(widths[n_down], 1, 4))
        self.net = nn.Sequential(*layers)
        self.n_heads = 1

    def forward(self, x: torch.Tensor, quadrant: torch.Tensor | None = None):
        """(B, C, P, P) -> logits (B, 1); no reconstructions (quadrant ignored)."""
        logits = self.net(x).mean(dim=(2, 3))
        return logits if quadrant is None else (logits, None)


def build_discriminator(cfg: DiscriminatorConfig, channels: int, patch_size: int) -> nn.Module:
    if cfg.kind == "graf":
        return GRAFDiscriminator(channels, patch_size)
    return MedNeRFDiscriminator(cfg, channels)


def head_weights(n_heads: int, augmented_weight: float) -> torch.Tensor:
    """(K,) weights: 1 for the identity head, `augmented_weight` (0.2/3) for each augmented one."""
    weights = torch.full((n_heads,), augmented_weight)
    weights[0] = 1.0
    return weights
