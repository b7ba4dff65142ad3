"""Fixtures for the benchmark tests: real DRRs read in place, random-weight FID network."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.inception import random_inception_state_dict
from tests.conftest import shared_data_or_skip


@pytest.fixture(scope="session")
def knee_dir() -> Path:
    return shared_data_or_skip("mednerf_drr/knee", "real knee DRRs")


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory) -> Path:
    """The FID Inception architecture with RANDOM weights, built explicitly for tests.

    Values computed with it exercise the code, not the published FID scale.
    """
    path = tmp_path_factory.mktemp("inception") / "random_fid_inception_for_tests.pth"
    torch.save(random_inception_state_dict(seed=0), path)
    return path


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    """Shared across tests: features are keyed by content, so later tests reuse earlier ones."""
    return tmp_path_factory.mktemp("feature_cache")
