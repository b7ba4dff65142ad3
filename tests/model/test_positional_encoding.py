import math

import torch

from model.encoding import encoded_dim, positional_encoding


def test_dimensions_match_nerf():
    assert encoded_dim(10) == 63 and encoded_dim(4) == 27
    assert positional_encoding(torch.zeros(5, 7, 3), 10).shape == (5, 7, 63)


def test_values_by_hand():
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    out = positional_encoding(x, 2)[0].tolist()
    expected = [0.5, -1.0, 2.0,
                math.sin(0.5), math.sin(-1.0), math.sin(2.0), math.cos(0.5), math.cos(-1.0), math.cos(2.0),
                math.sin(1.0), math.sin(-2.0), math.sin(4.0), math.cos(1.0), math.cos(-2.0), math.cos(4.0)]
    assert torch.allclose(torch.tensor(out, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), atol=1e-12)
