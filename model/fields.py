"""GRAF's conditional radiance field: an MLP of (encoded position, z_shape) -> density, and with
(encoded direction, z_app) -> colour (REFERENCE 3). All sizes come from FieldConfig.

Speed without changing the function: every layer that sees a per-image code (z) or a per-ray
direction is split into its per-sample part and the rest, so W [x; z] = W_x x + W_z z computes
W_z z once per image and W_d d once per ray instead of once per sample. The parameters keep the
plain nn.Linear layout of the concatenated input.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import FieldConfig
from .encoding import encoded_dim


def _split_linear(layer: nn.Linear, parts: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """layer(cat(parts)) for parts that broadcast against each other, each multiplied once.

    parts[i]: (..., sizes[i]) with broadcastable leading dims; the bias is added to the last part.
    """
    weights = torch.split(layer.weight, sizes, dim=1)
    out = None
    for index, (part, weight) in enumerate(zip(parts, weights)):
        term = F.linear(part, weight, layer.bias if index == len(parts) - 1 else None)
        out = term if out is None else out + term
    return out


class RadianceField(nn.Module):
    """raw density (B, R, S) and colour (B, R, S, 3) from encoded points, directions and z."""

    def __init__(self, cfg: FieldConfig, with_colour: bool = True):
        super().__init__()
        self.cfg = cfg
        self.pos_dim = encoded_dim(cfg.pos_freqs)
        self.dir_dim = encoded_dim(cfg.dir_freqs)
        in_dim = self.pos_dim + cfg.z_shape_dim
        layers = []
        for index in range(cfg.n_layers):
            fan_in = in_dim if index == 0 else cfg.width
            if index == cfg.skip_layer + 1:
                fan_in += in_dim
            layers.append(nn.Linear(fan_in, cfg.width))
        self.layers = nn.ModuleList(layers)
        self.density = nn.Linear(cfg.width, 1)
        self.with_colour = with_colour
        if with_colour:
            self.feature = nn.Linear(cfg.width, cfg.width)
            self.colour_hidden = nn.Linear(cfg.width + self.dir_dim + cfg.z_app_dim, cfg.colour_width)
            self.colour_out = nn.Linear(cfg.colour_width, 3)

    def forward(self, points_enc: torch.Tensor, dirs_enc: torch.Tensor | None, z: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """points_enc (B, R, S, pos_dim), dirs_enc (B, R, dir_dim) or None, z (B, z_shape + z_app)."""
        cfg = self.cfg
        z_shape = z[:, None, None, : cfg.z_shape_dim]           # (B, 1, 1, Zs): broadcast over rays, samples
        z_app = z[:, None, None, cfg.z_shape_dim:]
        sizes_in = [self.pos_dim, cfg.z_shape_dim]
        h = F.relu_(_split_linear(self.layers[0], [points_enc, z_shape], sizes_in))
        for index in range(1, cfg.n_layers):
            layer = self.layers[index]
            if index == cfg.skip_layer + 1:
                pre = _split_linear(layer, [h, points_enc, z_shape], [cfg.width] + sizes_in)
            else:
                pre = layer(h)
            h = F.relu_(pre)
        raw_density = self.density(h).squeeze(-1)
        if not self.with_colour or dirs_enc is None:
            return raw_density, None
        feature = self.feature(h)
        hidden = F.relu_(_split_linear(self.colour_hidden, [feature, dirs_enc[:, :, None, :], z_app],
                                       [cfg.width, self.dir_dim, cfg.z_app_dim]))
        return raw_density, torch.sigmoid(self.colour_out(hidden))
