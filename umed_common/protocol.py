"""The view protocol of the paper and the MedNeRF DRR release: 72 views, 5 degrees apart, one full turn.

DRR file KKKK is view k at k * VIEW_STEP_DEG degrees; fine-tuning renders all N_VIEWS and the tables
score them view by view.
"""
from __future__ import annotations

import numpy as np

N_VIEWS = 72
VIEW_STEP_DEG = 5   # a whole number of degrees: N_VIEWS * VIEW_STEP_DEG == 360


def view_file_name(view: int) -> str:
    """The file name of view `view`'s image (drr-generate's DRRs, umed-finetune's renders): xrayKKKK.png."""
    return f"xray{view:04d}.png"


def degrees_apart(view_a, view_b):
    """The angle (deg) between views, the short way round the turn; ints or integer arrays, broadcast."""
    steps = np.abs(np.asarray(view_a) - np.asarray(view_b)) % N_VIEWS
    return np.minimum(steps, N_VIEWS - steps) * VIEW_STEP_DEG


def copy_views(image: np.ndarray, input_view: int, mirror_far_side: bool) -> np.ndarray:
    """The trivial answers to single-view rendering. (H, W) input at view `input_view` -> (72, H, W): the
    input at every view, mirrored left-right at views more than 90 degrees away when `mirror_far_side`
    (a transmission image seen from the far side is nearly the mirror image; the view axis is vertical)."""
    views = np.repeat(image[None], N_VIEWS, axis=0)
    if mirror_far_side:
        far = degrees_apart(np.arange(N_VIEWS), input_view) > 90
        views[far] = image[:, ::-1]
    return views
