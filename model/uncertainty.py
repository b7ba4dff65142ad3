"""Weighting the fine-tuning losses by learned task uncertainty (paper Eq. 5, Kendall et al. 2018).

Eq. 5: L = 1/(2 s1^2) L_r + 1/(2 s2^2) L_MSE + log(s1 s2). We learn t_i = log s_i^2 and minimise
sum_i 0.5 exp(-t_i) L_i + 0.5 t_i, which equals Eq. 5 exactly and has no division by a parameter
that can reach zero; its minimum over t_i is at t_i = log L_i (s_i^2 = L_i).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class LogVarianceWeighting(nn.Module):
    """Stable Eq. 5; parameters t = log s^2, initialised to 0 (s = 1)."""

    def __init__(self, n_tasks: int = 2):
        super().__init__()
        self.log_variance = nn.Parameter(torch.zeros(n_tasks))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        """losses (n,) -> scalar."""
        return (0.5 * torch.exp(-self.log_variance) * losses + 0.5 * self.log_variance).sum()

    def sigmas(self) -> torch.Tensor:
        return torch.exp(0.5 * self.log_variance.detach())


class Log1pWeighting(nn.Module):
    """The public UMedNeRF code's variant: sum 0.5 / p^2 L + log(1 + p^2), p initialised to 1."""

    def __init__(self, n_tasks: int = 2):
        super().__init__()
        self.p = nn.Parameter(torch.ones(n_tasks))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        p2 = self.p.pow(2)
        return (0.5 / p2 * losses + torch.log1p(p2)).sum()

    def sigmas(self) -> torch.Tensor:
        return self.p.detach().abs()


class FixedWeighting(nn.Module):
    """Fixed weights (the ablation of Table 3; MedNeRF used 0.3 * L_r + 0.1 * L_MSE)."""

    def __init__(self, weights: tuple[float, ...]):
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights.to(losses.dtype) * losses).sum()

    def sigmas(self) -> torch.Tensor:
        return torch.full_like(self.weights, float("nan"))


def build_weighting(weights: tuple[float, float] | None, form: str = "logvar") -> nn.Module:
    """None -> learned (form 'logvar' or 'log1p'); (w_r, w_mse) -> fixed."""
    if weights is not None:
        return FixedWeighting(weights)
    return LogVarianceWeighting(2) if form == "logvar" else Log1pWeighting(2)
