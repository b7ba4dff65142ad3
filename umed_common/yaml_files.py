"""The one YAML reader of the project's config files (model configs, bench configs).

`yaml.safe_load` only (DEVELOPERS.md: never execute what a file carries); a missing file or broken
YAML is a one-line UserError naming the file. What the document must hold is each schema's business.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


def read_yaml(path: str | Path, missing_hint: str = "") -> tuple[Any, str]:
    """The loaded document of a YAML file (None when empty) and the file's exact text.

    missing_hint: appended to the error for a missing file (e.g. the bundled names to choose from).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file{missing_hint}")
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
