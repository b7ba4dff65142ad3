"""Large CPU tensors allocated by numpy, so that they get transparent huge pages.

numpy asks the kernel for huge pages on large arrays (madvise MADV_HUGEPAGE); torch's
CPU allocator does not, so a fresh 139 MB tensor (a 512x512x133 float32 volume) costs
~34,000 page faults instead of a few hundred: 55 ms against 15 ms to fill on the
development machine, paid again for every case of a batch.
"""
from __future__ import annotations

import numpy as np
import torch


def empty(shape, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """torch.empty(shape, dtype=dtype, device=device), numpy-allocated on the CPU."""
    if torch.device(device).type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    numpy_dtype = torch.empty((), dtype=dtype).numpy().dtype
    return torch.from_numpy(np.empty(shape, dtype=numpy_dtype))
