import torch

from model.bench_iteration import plain_field_forward
from model.config import FieldConfig
from model.encoding import positional_encoding
from model.fields import RadianceField


def test_upstream_sizes_give_grafs_parameter_count():
    field = RadianceField(FieldConfig())
    assert sum(p.numel() for p in field.parameters()) == 677_764      # "about 0.68 M" (REFERENCE 3)
    assert field.layers[0].in_features == 63 + 128 and field.layers[5].in_features == 256 + 191
    assert field.colour_hidden.in_features == 256 + 27 + 128


def test_split_computation_equals_the_plain_concatenation():
    cfg = FieldConfig(n_layers=4, width=32, skip_layer=1, pos_freqs=3, dir_freqs=2, z_shape_dim=5, z_app_dim=6,
                      colour_width=8)
    field = RadianceField(cfg).double()
    gen = torch.Generator().manual_seed(0)
    points = positional_encoding(torch.randn(2, 5, 7, 3, generator=gen, dtype=torch.float64), 3)
    dirs = positional_encoding(torch.randn(2, 5, 3, generator=gen, dtype=torch.float64), 2)
    z = torch.randn(2, 11, generator=gen, dtype=torch.float64)
    fast = field(points, dirs, z)
    plain = plain_field_forward(field, points, dirs, z)
    assert fast[0].shape == (2, 5, 7) and fast[1].shape == (2, 5, 7, 3)
    assert torch.allclose(fast[0], plain[0], atol=1e-12) and torch.allclose(fast[1], plain[1], atol=1e-12)


def test_density_only_field_for_the_xray_renderer():
    field = RadianceField(FieldConfig(n_layers=2, width=8, skip_layer=0, z_shape_dim=2, z_app_dim=2),
                          with_colour=False)
    raw, colour = field(torch.zeros(1, 2, 3, 63), None, torch.zeros(1, 4))
    assert raw.shape == (1, 2, 3) and colour is None and not hasattr(field, "feature")


def test_bfloat16_precision_renders_close_to_float32():
    from model.config import ModelConfig
    from model.generator import Generator
    from model.ray_samplers import full_image_grid
    cfg = ModelConfig()
    cfg.field = FieldConfig(n_layers=3, width=32, skip_layer=0, pos_freqs=4, dir_freqs=2, z_shape_dim=4,
                            z_app_dim=4, colour_width=8)
    cfg.render.n_samples = 16
    generator = Generator(cfg)
    with torch.no_grad():
        generator.field.density.bias.fill_(0.5)        # some density, so the render is not empty
    z, pose = torch.randn(1, 8), torch.tensor([[10.0, 80.0, 10.0]])
    full = generator(z, pose, full_image_grid(8), 8)
    generator.cfg.field.precision = "bfloat16"
    half = generator(z, pose, full_image_grid(8), 8)
    assert half.dtype == torch.float32 and full.std() > 0.01
    assert (half - full).abs().max() < 0.05 and not torch.equal(half, full)
