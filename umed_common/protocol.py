"""The view protocol of the paper and the MedNeRF DRR release: 72 views, 5 degrees apart, one full turn.

DRR file KKKK is view k at k * VIEW_STEP_DEG degrees; fine-tuning renders all N_VIEWS and the tables
score them view by view.
"""
from __future__ import annotations

N_VIEWS = 72
VIEW_STEP_DEG = 5   # a whole number of degrees: N_VIEWS * VIEW_STEP_DEG == 360
