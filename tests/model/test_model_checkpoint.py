import pytest
import torch

from model.checkpoint import FORMAT_VERSION, read_checkpoint
from model.config import config_to_dict, load_config
from model.inference import load_checkpoint
from umed_common.errors import UserError


def test_round_trip_and_contents(tiny_checkpoint):
    cfg, payload = read_checkpoint(tiny_checkpoint)
    assert payload["format_version"] == FORMAT_VERSION and payload["iteration"] == 2
    assert config_to_dict(cfg) == config_to_dict(load_config("tiny"))
    model = load_checkpoint(tiny_checkpoint, device="cpu")
    assert model.image_size == 32 and not model.generator.training
    assert all(not p.requires_grad for p in model.generator.parameters())


def test_foreign_files_and_other_configs_are_one_line_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(UserError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        read_checkpoint(junk)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a umednerf"):
        read_checkpoint(tmp_path / "other.pt")
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["field"]["width"] = 64          # weights of one config, config of another
    torch.save(payload, tmp_path / "mixed.pt")
    with pytest.raises(UserError, match="another config") as err:
        load_checkpoint(tmp_path / "mixed.pt", device="cpu")
    assert "\n" not in str(err.value)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(UserError, match="format"):
        read_checkpoint(tmp_path / "newer.pt")


def test_checkpoint_with_nan_weights_is_refused_naming_the_tensor(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    name = next(k for k, v in payload["generator_ema"].items() if v.is_floating_point())
    payload["generator_ema"][name] = torch.full_like(payload["generator_ema"][name], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "nan.pt", device="cpu")
    assert f"nan.pt: generator_ema.{name} holds NaN or infinite values" in str(err.value)


def test_checkpoint_config_with_unknown_key_names_the_file(tmp_path, tiny_checkpoint):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["config"]["train"]["warmup"] = 3
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(UserError, match=r"future\.pt: its config train: unknown key\(s\) warmup"):
        read_checkpoint(tmp_path / "future.pt")
