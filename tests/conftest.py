"""Helpers shared by the per-package conftests (tests/drr, tests/model, tests/benchmark)."""
from __future__ import annotations

import os
import signal
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


@pytest.fixture(autouse=True)
def foreground_signal_handlers():
    """Every test starts with the signal handlers of a command typed at a shell: Python's SIGINT handler
    (KeyboardInterrupt) and the default SIGTERM action, and gets back whatever was there after.

    A shell starts a background job (`pytest ... &`) with SIGINT ignored, and Python then keeps it ignored:
    the Ctrl-C tests would see their own SIGINT vanish, and the commands rightly leave an ignored signal
    alone (umed_common.errors.sigterm_raises)."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)
