"""Helpers shared by the per-package conftests (tests/drr, tests/model, tests/benchmark)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """../shared/data from the repository root, or $UMED_SHARED_DATA; read in place, never committed."""
    env = os.environ.get("UMED_SHARED_DATA")
    return Path(env) if env else REPO_ROOT / ".." / "shared" / "data"


def shared_data_or_skip(relative: str, what: str) -> Path:
    """shared_data_dir() / relative; skips the calling test with a message naming `what` when absent."""
    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set UMED_SHARED_DATA to the shared data folder)")
    return path
