"""Device choice shared by every command: --device auto|cpu|cuda[:N].

torch is imported by `resolve_device`, not at the top: drr-generate builds its parser and reads
its first case before torch is needed (drr.pipeline, "torch waits").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is a UserError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device (use auto, cpu or cuda)") from None


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (cuda when available), cpu, or cuda[:N] (default: auto)")
