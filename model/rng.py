"""The model package's random streams, named in one place.

Every random draw of training, sampling and fine-tuning comes from its own torch.Generator whose state
is a pure function of (run seed, stream id[, counter]): adding draws to one stream never shifts another,
and a resumed or data-parallel run sees the same numbers. A new stream takes the next unused id here.
"""
from __future__ import annotations

import numpy as np
import torch

STREAM_DATA = 1            # umed-train: the order of the training images (+ epoch)
STREAM_ITER = 2            # umed-train: z, poses, patches and render noise of an iteration (+ iteration)
STREAM_INIT = 3            # umed-train: the networks' initial weights
STREAM_SAMPLES = 4         # umed-train: the fixed z of the sample grids
STREAM_SAMPLE_IMAGES = 5   # sample_images: z and poses of generated samples (table 2, demo figure)
STREAM_FINETUNE_Z = 6      # umed-finetune: the latent candidates (the first is the paper's one z)
STREAM_PHYSICAL_RECON = 11  # physical family: per-patient tomography (view batches)


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A torch.Generator whose state is a pure function of (seed, keys)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def physical_recon_generator(seed: int, patient_index: int) -> torch.Generator:
    """The tomography stream of the `patient_index`-th training patient (sorted ids) of the physical family.

    Seeded by seed * 1000 + id + index rather than seeded_generator, so checkpoints trained before this
    module existed are reproduced bit for bit.
    """
    return torch.Generator().manual_seed(seed * 1000 + STREAM_PHYSICAL_RECON + patient_index)
