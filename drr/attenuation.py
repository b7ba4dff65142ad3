"""Hounsfield units -> linear attenuation per mm (Plastimatch's `preprocess` model).

REFERENCE section 2: mu = 0.022 * (1 + HU / 1000) per mm for HU > -800, else 0.
MedNeRF also clamped HU to [-1000, 1000] before projecting; the window is
configurable because a different clamp changes bone brightness.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

WATER_MU_PER_MM = 0.022
AIR_THRESHOLD_HU = -800.0


@dataclass(frozen=True)
class AttenuationModel:
    """HU window then the piecewise-linear HU -> mu map."""

    hu_min: float | None = -1000.0
    hu_max: float | None = 1000.0
    water_mu_per_mm: float = WATER_MU_PER_MM
    air_threshold_hu: float = AIR_THRESHOLD_HU

    def to_dict(self) -> dict:
        return {"model": "plastimatch-preprocess", "hu_min": self.hu_min, "hu_max": self.hu_max,
                "water_mu_per_mm": self.water_mu_per_mm, "air_threshold_hu": self.air_threshold_hu}


def hu_to_attenuation(hu: np.ndarray, model: AttenuationModel = AttenuationModel()) -> np.ndarray:
    """(Z, Y, X) HU -> (Z, Y, X) float32 mu per mm; the clamp is applied first.

    In-place torch ops on one float32 copy: ~4x faster than the numpy expression
    on a 512x512x133 CT, where this step was a third of a whole 72-view DRR run.
    """
    mu = torch.from_numpy(np.asarray(hu)).to(torch.float32, copy=True)
    if model.hu_min is not None or model.hu_max is not None:
        mu.clamp_(model.hu_min, model.hu_max)
    air = mu <= model.air_threshold_hu
    mu.mul_(model.water_mu_per_mm / 1000.0).add_(model.water_mu_per_mm)
    mu.masked_fill_(air, 0.0)
    return mu.numpy()
