"""The public contract other packages (benchmark, demo) code against."""
from __future__ import annotations

from .data import discover_drr_images
from .finetune import FinetuneResult, finetune
from .inference import LoadedModel, load_checkpoint, sample_images
from .train import train

__all__ = ["train", "LoadedModel", "load_checkpoint", "sample_images", "FinetuneResult", "finetune",
           "discover_drr_images"]
