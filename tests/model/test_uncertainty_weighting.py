import math

import torch

from model.uncertainty import FixedWeighting, Log1pWeighting, LogVarianceWeighting, build_weighting


def test_gradient_by_hand():
    weighting = LogVarianceWeighting(2)
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor([0.3, -1.2]))
    losses = torch.tensor([0.5, 0.02])
    weighting(losses).backward()
    expected = -0.5 * torch.exp(-torch.tensor([0.3, -1.2])) * losses + 0.5
    assert torch.allclose(weighting.log_variance.grad, expected, atol=1e-7)


def test_equals_equation_5_up_to_a_constant():
    weighting = LogVarianceWeighting(2)
    with torch.no_grad():
        weighting.log_variance.copy_(torch.tensor([0.4, -0.7]))
    s1, s2 = math.exp(0.2), math.exp(-0.35)
    losses = torch.tensor([0.8, 0.05])
    eq5 = 0.8 / (2 * s1 ** 2) + 0.05 / (2 * s2 ** 2) + math.log(s1 * s2)
    assert abs(weighting(losses).item() - eq5) < 1e-6


def minimise(weighting, losses: torch.Tensor, lr: float, steps: int):
    """Adam on the weighting's own parameters with the losses held fixed."""
    opt = torch.optim.Adam(weighting.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        weighting(losses).backward()
        opt.step()
    return weighting


def test_learned_log_variances_converge_to_log_of_fixed_losses():
    losses = torch.tensor([0.5, 0.02])
    weighting = minimise(LogVarianceWeighting(2), losses, 0.1, 600)
    assert torch.allclose(weighting.log_variance.detach(), losses.log(), atol=1e-3)
    assert torch.allclose(weighting.sigmas() ** 2, losses, rtol=1e-3)


def test_public_code_variant_converges_to_its_stationary_point():
    losses = torch.tensor([0.5, 0.02])
    weighting = minimise(Log1pWeighting(2), losses, 0.02, 1500)
    p2 = weighting.p.detach() ** 2
    assert torch.allclose(losses * (1 + p2), 2 * p2 ** 2, rtol=1e-3)   # d/dp = 0  <=>  L (1 + p^2) = 2 p^4


def test_fixed_weights_and_builder():
    fixed = build_weighting((0.3, 0.1))
    assert isinstance(fixed, FixedWeighting) and not list(fixed.parameters())
    assert abs(fixed(torch.tensor([2.0, 5.0])).item() - 1.1) < 1e-6
    assert torch.isnan(fixed.sigmas()).all()
    assert isinstance(build_weighting(None, "log1p"), Log1pWeighting)
