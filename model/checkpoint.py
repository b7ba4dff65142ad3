"""Checkpoints: plain state dicts plus the config and a format version, written atomically and read
with torch.load(weights_only=True)."""
from __future__ import annotations

from pathlib import Path

import torch

from umed_common.atomic import atomic_path
from umed_common.errors import UserError

from .config import ModelConfig, config_from_dict, config_to_dict

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, cfg: ModelConfig, iteration: int, states: dict) -> None:
    """states: name -> state dict (generator, generator_ema, discriminator, optimisers, ...)."""
    payload = {"format_version": FORMAT_VERSION, "config": config_to_dict(cfg), "iteration": iteration,
               **states}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def resolve_run(path: str | Path) -> Path:
    """A training folder RUN stands for RUN/model.pt (what umed-train writes there)."""
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict]:
    """-> (config, payload); a missing, foreign or newer-format file is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or "format_version" not in payload or "config" not in payload:
        raise UserError(f"{path}: not a umednerf model checkpoint")
    if payload["format_version"] != FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {payload['format_version']}, this code reads {FORMAT_VERSION}")
    bad = first_non_finite(payload)
    if bad is not None:
        raise UserError(f"{path}: {bad} holds NaN or infinite values (a diverged or damaged run); not usable")
    try:
        cfg = config_from_dict(payload["config"])
    except UserError as err:
        raise UserError(f"{path}: its {err}") from None
    return cfg, payload


def first_non_finite(value, where: str = "") -> str | None:
    """Dotted name of the first floating tensor holding NaN/inf in a nested payload, else None."""
    if isinstance(value, torch.Tensor):
        return where if value.is_floating_point() and not bool(torch.isfinite(value).all()) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = first_non_finite(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def load_state(module: torch.nn.Module, state: dict, path: str | Path, what: str) -> None:
    """load_state_dict that reports a mismatching architecture as a one-line UserError."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise UserError(f"{path}: {what} does not match its config (checkpoint from another config? {first})") from None


def check_identity(payload: dict, identity: dict, checkpoint: Path) -> None:
    """A resumed run, of either family, must train on what its checkpoint records: the same --holdout and
    the same training data (identity["training_images"] for the GAN, ["patients"] for the physical family).
    Older checkpoints that lack a record pass."""
    if "holdout" in payload and list(payload["holdout"]) != list(identity["holdout"]):
        raise UserError(f"{checkpoint}: was trained with another --holdout ({' '.join(payload['holdout']) or 'none'}); "
                        "resume with the same holdout")
    for key, what in (("training_images", "images"), ("patients", "patients")):
        if key in identity and key in payload and list(payload[key]) != list(identity[key]):
            raise UserError(f"{checkpoint}: was trained on other {what} than the {len(identity[key])} found in "
                            "--data now; resume with the same data")
