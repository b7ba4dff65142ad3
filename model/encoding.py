"""NeRF positional encoding gamma(p) = (p, sin(2^k p), cos(2^k p), k < L) (Mildenhall et al. 2020)."""
from __future__ import annotations

import torch


def encoded_dim(n_freqs: int, in_dim: int = 3) -> int:
    """3 + 2*3*L: 63 for L=10 (positions), 27 for L=4 (directions)."""
    return in_dim * (1 + 2 * n_freqs)


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """(..., D) -> (..., D * (1 + 2 L)), laid out as [x, sin(2^0 x), cos(2^0 x), ..., sin, cos].

    GRAF/NeRF use frequencies 2^k (no pi factor): the scene lives in a few units around the origin.
    """
    freqs = 2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)
    scaled = x.unsqueeze(-2) * freqs.unsqueeze(-1)              # (..., L, D)
    pairs = torch.stack([scaled.sin(), scaled.cos()], dim=-2)   # (..., L, 2, D)
    return torch.cat([x, pairs.flatten(-3)], dim=-1)
