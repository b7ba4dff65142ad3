"""Where a run's results go: staged, never overwritten silently, with their provenance beside them."""
from __future__ import annotations

import contextlib
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

from umed_common.atomic import write_json_atomic, write_text_atomic
from umed_common.outputs import staged_run


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


def staged_output(out_dir: str | Path, overwrite: bool) -> contextlib.AbstractContextManager[Path]:
    """An empty staging folder inside `out_dir`; its files replace umed-bench's earlier outputs
    only on success. `--overwrite` deletes only what umed-bench recorded there; the user's own
    files stay, and a result that would replace one is refused (umed_common.outputs).
    """
    return staged_run(out_dir, "umed-bench", overwrite)


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
