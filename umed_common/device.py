"""Device choice shared by every command: --device auto|cpu|cuda[:N]."""
from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is a UserError."""
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
