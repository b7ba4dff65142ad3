"""Hounsfield units -> linear attenuation per mm (Plastimatch's `preprocess` model).

REFERENCE section 2: mu = 0.022 * (1 + HU / 1000) per mm for HU > -800, else 0.
MedNeRF also clamped HU to [-1000, 1000] before projecting; the window is
configurable because a different clamp changes bone brightness.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    """(Z, Y, X) HU -> (Z, Y, X) float32 mu per mm; the clamp is applied first."""
    hu = np.asarray(hu, dtype=np.float32)
    if model.hu_min is not None or model.hu_max is not None:
        hu = np.clip(hu, model.hu_min, model.hu_max)
    mu = model.water_mu_per_mm * (1.0 + hu / 1000.0)
    return np.where(hu > model.air_threshold_hu, mu, 0.0).astype(np.float32)
