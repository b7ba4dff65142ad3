import shutil

import numpy as np
import pytest
import torch

from benchmark import features as features_module
from benchmark.features import FeatureCache, extract_features, images_to_batch
from benchmark.inception import (WEIGHTS_FILENAME, describe_weights, find_inception_weights, load_inception)
from umed_common.errors import UserError


@pytest.fixture(scope="module")
def network(random_weights_file):
    return load_inception(random_weights_file)  # random weights: exercises the code, not FID's scale


class CountingNetwork(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.images_seen = inner, 0

    def forward(self, batch):
        self.images_seen += len(batch)
        return self.inner(batch)


def test_missing_weights_message_names_file_place_and_source(tmp_path, monkeypatch):
    monkeypatch.delenv("UMED_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(UserError) as caught:
        find_inception_weights()
    message = str(caught.value)
    assert "\n" not in message and WEIGHTS_FILENAME in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message
    assert "github.com/mseitzer/pytorch-fid/releases" in message


def test_weights_found_by_option_env_and_torch_home(tmp_path, monkeypatch, random_weights_file):
    assert find_inception_weights(random_weights_file) == random_weights_file
    monkeypatch.setenv("UMED_INCEPTION_WEIGHTS", str(random_weights_file))
    assert find_inception_weights() == random_weights_file
    monkeypatch.delenv("UMED_INCEPTION_WEIGHTS")
    hub = tmp_path / "hub_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(random_weights_file, hub / WEIGHTS_FILENAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub_home"))
    assert find_inception_weights() == hub / WEIGHTS_FILENAME


def test_foreign_weights_file_is_a_user_error(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="does not fit the FID Inception architecture"):
        load_inception(bad)
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(UserError, match="not a readable torch weights file"):
        load_inception(tmp_path / "junk.pth")


def test_random_weights_are_flagged_as_not_official(random_weights_file, capsys):
    info = describe_weights(random_weights_file)
    assert info["official_fid_weights"] is False and len(info["sha256"]) == 64
    assert "not the official FID Inception file" in capsys.readouterr().err


def test_gray_images_become_three_equal_channels():
    batch = images_to_batch([np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8)])
    assert batch.shape == (2, 3, 8, 8) and batch[0].min() == 1.0 and batch[1].max() == 0.0
    assert torch.equal(batch[:, 0], batch[:, 2])


def test_features_cached_by_content(knee_dir, tmp_path, network):
    sources = sorted(knee_dir.glob("02_xray000[0-2].png"))
    copies = []
    for index, source in enumerate(sources):
        copies.append(tmp_path / f"renamed_{index}.png")
        shutil.copy(source, copies[-1])
    cache = FeatureCache(tmp_path / "cache", weights_sha256="random-test-weights")
    counting = CountingNetwork(network)
    first = extract_features(sources, counting, cache, progress=False)
    assert first.shape == (3, features_module.FEATURE_DIM) and counting.images_seen == 3
    assert np.std(first, axis=0).max() > 0  # different images give different features
    again = extract_features(copies, counting, cache, progress=False)  # same bytes, other names
    assert counting.images_seen == 3
    np.testing.assert_array_equal(first, again)
    changed = tmp_path / "changed.png"
    shutil.copy(knee_dir / "02_xray0010.png", changed)
    extract_features([changed, sources[0]], counting, cache, progress=False)
    assert counting.images_seen == 4  # only the new content is computed
    other_weights = FeatureCache(tmp_path / "cache", weights_sha256="other-weights")
    assert other_weights.get(features_module.content_sha256(sources[0])) is None
