"""Perceptual distances for L_r: VGG16 ImageNet features (paper), or weight-free 1 - SSIM.

The VGG16 weights are torchvision's `vgg16-397923de.pth`, read from a given path or the torch hub
cache; nothing is downloaded and random weights are never substituted outside tests.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from umed_common.errors import UserError
from umed_common.measures import ssim

VGG16_FILE = "vgg16-397923de.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923de.pth"
_VGG_TAPS = (3, 8, 15, 22)          # relu1_2, relu2_2, relu3_3, relu4_3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class SSIMDistance(nn.Module):
    """1 - SSIM on images in [-1, 1]: a structural, weight-free stand-in for the VGG distance."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1.0 - ssim(x, y, data_range=2.0)).mean()


class VGG16Distance(nn.Module):
    """Mean squared difference of channel-normalised VGG16 features at relu1_2..relu4_3.

    Inputs in [-1, 1] with 1 or 3 channels; gray is replicated, then ImageNet-normalised.
    """

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features[: _VGG_TAPS[-1] + 1].eval()
        for param in self.features.parameters():
            param.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def _taps(self, x):
        x = (x.expand(-1, 3, -1, -1) + 1) / 2
        h, taps = (x - self.mean) / self.std, []
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in _VGG_TAPS:
                taps.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum((a - b).pow(2).sum(dim=1).mean() for a, b in zip(self._taps(x), self._taps(y)))

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()     # frozen feature extractor
        return self


def vgg16_weights_path(path: str | Path | None = None) -> Path:
    """The user-given file, else $TORCH_HOME/hub/checkpoints/vgg16-397923de.pth; UserError when absent."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: VGG16 weights file not found")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    if not cached.is_file():
        raise UserError(f"perceptual loss needs torchvision's ImageNet VGG16 weights {VGG16_FILE}: put it at "
                        f"{cached} (or pass its path); it comes from torchvision ({VGG16_URL}); "
                        f"or use 'perceptual: ssim' in the config")
    return cached


def build_vgg16_distance(weights_path: str | Path | None = None, *, random_weights_for_tests: bool = False
                         ) -> VGG16Distance:
    """VGG16 distance with torchvision's ImageNet weights; random weights only when tests ask explicitly."""
    from torchvision.models import vgg16
    net = vgg16(weights=None)
    if not random_weights_for_tests:
        file = vgg16_weights_path(weights_path)
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except PermissionError:
            raise UserError(f"{file}: VGG16 weights file is not readable (permission denied)") from None
        except Exception as err:  # torch raises many types (pickle, zip, EOF) for a file that is not weights
            raise UserError(f"{file}: not a readable weights file ({type(err).__name__})") from None
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, KeyError) as err:
            reason = (str(err).splitlines() or [type(err).__name__])[0][:80]
            raise UserError(f"{file}: not torchvision's VGG16 weights ({reason})") from None
    return VGG16Distance(net.features)


def build_perceptual(kind: str, weights_path: str | Path | None = None) -> nn.Module:
    """'vgg16' or 'ssim' (config key `perceptual`)."""
    if kind == "ssim":
        return SSIMDistance()
    return build_vgg16_distance(weights_path)
