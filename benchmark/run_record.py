"""Where a run's results go: staged, never overwritten silently, with their provenance beside them."""
from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterator

import torch

from umed_common.atomic import ensure_writable_dir, write_json_atomic, write_text_atomic
from umed_common.errors import UserError


def code_version() -> str:
    """`git describe` of this checkout when it has one, else the installed package version."""
    repo = Path(__file__).resolve().parents[1]
    try:
        described = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=repo,
                                   capture_output=True, text=True, timeout=10)
        if described.returncode == 0 and described.stdout.strip():
            return f"git {described.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"umednerf {metadata.version('umednerf')} (no git revision)"
    except metadata.PackageNotFoundError:
        return "umednerf (unknown version)"


@contextlib.contextmanager
def staged_output(out_dir: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder beside `out_dir`; move it into place only on success.

    An error (or Ctrl-C) leaves nothing at `out_dir`: no partial results.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir}: already holds results (pass --overwrite to replace them)")
    ensure_writable_dir(out_dir.resolve().parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.resolve().parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_provenance(folder: Path, config_text: str, effective_config: dict, extra: dict) -> None:
    """The exact input config, the effective one (after --quick), code version, seeds and machine."""
    write_text_atomic(folder / "config.yaml", config_text)
    record = {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "code_version": code_version(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "effective_config": effective_config, **extra,
    }
    write_json_atomic(folder / "run.json", record)
