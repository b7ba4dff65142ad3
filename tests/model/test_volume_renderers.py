import math

import torch
import torch.nn as nn

from model.config import ModelConfig
from model.generator import Generator
from model.renderers import emission_composite, line_integral, xray_intensity


def test_emission_two_samples_by_hand():
    density = torch.tensor([[[0.7, 3.0]]])
    colour = torch.tensor([[[[0.2], [0.9]]]])
    depths = torch.tensor([[[1.0, 1.5]]])
    pixel = emission_composite(density, colour, depths, torch.tensor([[2.0]]))
    w0 = 1 - math.exp(-0.7 * 0.5 * 2.0)          # delta 0.5 along a direction of length 2
    w1 = math.exp(-0.7 * 0.5 * 2.0)              # the open last interval absorbs the rest
    assert abs(pixel.item() - (0.2 * w0 + 0.9 * w1)) < 1e-6


def test_emission_of_empty_space_is_black():
    pixel = emission_composite(torch.zeros(1, 4, 8), torch.rand(1, 4, 8, 3), torch.linspace(7, 12, 8).expand(1, 4, 8),
                               torch.ones(1, 4))
    assert torch.equal(pixel, torch.zeros(1, 4, 3))


def test_line_integral_of_constant_attenuation():
    mu = torch.full((1, 1, 16), 0.3)
    integral = line_integral(mu, torch.tensor([7.0]), torch.tensor([12.0]), torch.tensor([[1.5]]))
    assert abs(integral.item() - 0.3 * 5.0 * 1.5) < 1e-6
    assert torch.all(torch.diff(xray_intensity(torch.linspace(0, 5, 11))) > 0)


class SphereField(nn.Module):
    """Attenuation mu inside a sphere of radius R at the origin; reads raw xyz from the encoding."""

    def __init__(self, mu: float, radius: float):
        super().__init__()
        self.mu, self.radius, self.with_colour = mu, radius, False

    def forward(self, points_enc, dirs_enc, z):
        inside = points_enc[..., :3].norm(dim=-1) <= self.radius
        return inside.to(points_enc.dtype) * self.mu, None


def test_xray_render_of_a_sphere_matches_the_analytic_line_integral():
    cfg = ModelConfig()
    cfg.render.renderer, cfg.render.n_samples, cfg.field.pos_freqs = "xray", 2048, 0
    generator = Generator(cfg)
    generator.field = SphereField(mu=0.8, radius=0.6)
    size, radius_cam = 32, 10.0
    pose = torch.tensor([[40.0, 90.0, radius_cam]])
    with torch.no_grad():
        image = generator.render(torch.zeros(1, cfg.z_dim), pose, size)[0, 0]
    integral = -torch.log1p(-(image + 1) / 2)                           # invert pixel = 1 - exp(-L)
    focal = size / 2 / math.tan(math.radians(5))
    for col in (15, 20, 24, 27):
        offset = col - (size - 1) / 2
        b = radius_cam * math.sin(math.atan(abs(offset) / focal))          # ray's distance to the centre
        expected = 2 * 0.8 * math.sqrt(max(0.0, 0.6 ** 2 - b ** 2))
        assert abs(integral[15, col].item() - expected) < 0.01 * 1.2 + 1e-3, (col, expected)
    assert integral[0, 0].item() < 1e-6                                 # corner ray misses the sphere
