"""Hounsfield units -> linear attenuation per mm (Plastimatch's `preprocess` model).

REFERENCE section 2: mu = 0.022 * (1 + HU / 1000) per mm for HU > -800, else 0.
MedNeRF also clamped HU to [-1000, 1000] before projecting; the window is
configurable because a different clamp changes bone brightness.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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

    Four passes over one float32 copy (clamp, scale, shift, threshold), in torch: ~6x
    faster than the numpy expression on a 512x512x133 CT. `hu` may be a strided numpy view
    (transposed, flipped): the copy that starts the conversion also makes it contiguous.
    """
    hu = np.asarray(hu)
    clamped = model.hu_min is not None or model.hu_max is not None
    if hu.flags.c_contiguous and hu.dtype == np.float32:  # the first pass makes the new tensor: `hu` is not touched
        hu_t = torch.from_numpy(hu)
        mu = torch.from_numpy(np.empty_like(hu))  # numpy's allocation: huge pages (drr.host_memory)
        torch.clamp(hu_t, model.hu_min, model.hu_max, out=mu) if clamped else mu.copy_(hu_t)
    else:  # a strided view (e.g. a flipped volume, drr.orientation) or another type: one copy, then in place
        mu = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))
        if clamped:
            mu.clamp_(model.hu_min, model.hu_max)
    scale = model.water_mu_per_mm / 1000.0
    mu.mul_(scale).add_(model.water_mu_per_mm)
    # The same float32 arithmetic on the threshold, so HU == threshold maps to air exactly.
    air_mu = torch.tensor([model.air_threshold_hu], dtype=torch.float32).mul_(scale).add_(model.water_mu_per_mm)
    F.threshold(mu, float(air_mu), 0.0, inplace=True)  # mu <= air_mu -> 0
    return mu.numpy()
