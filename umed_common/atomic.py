"""Atomic output: write to a temporary sibling, then rename into place."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DISK_FULL_ERRNOS, UserError, disk_full_error


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`.

    The temporary keeps `path`'s suffix (or `suffix`) so libraries that pick
    a format from the extension still work. On error the temporary is removed;
    a full disk becomes a one-line UserError naming `path`.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ext = suffix if suffix is not None else "".join(path.suffixes)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{ext}", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        # mkstemp makes owner-only files; give outputs the usual umask-derived mode
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(err, path) from None
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and check it can be written; UserError otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-probe.", delete=True)
        probe.close()
    except OSError as err:
        raise UserError(f"{path}: output folder is not writable ({err.strerror or err})") from None
    return path


def refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> None:
    """UserError when `path` exists and `overwrite` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists (pass --overwrite to replace it)")
