"""One guarded way to fill an output folder: the tool only ever deletes what it wrote itself.

Inside `--out` each tool keeps a record (`.<tool>-outputs.json`) of the files it wrote,
as paths relative to the folder. `--overwrite` deletes only what that record lists;
any other file in the folder ("foreign": the user's notes, another tool's results) is
left untouched, and an output that would replace one is refused. Every output path is
resolved inside the folder, so a name taken from a config or a file cannot point outside.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from .atomic import ensure_writable_dir, write_json_atomic
from .errors import UserError


def check_name(name: str, what: str) -> str:
    """A name used as one path component (dataset, case, method): refused if it could leave a folder."""
    text = str(name)
    if (not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text
            or text.startswith(".")):
        raise UserError(f"{what} {text!r}: not usable as a file or folder name "
                        "(no '/', '\\', leading '.', or empty name)")
    return text


def inside(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """root / parts, refused (UserError) when it resolves outside `root` (`..`, absolute parts, links)."""
    root_path = Path(root).resolve()
    path = Path(root, *parts)
    resolved = path.resolve()
    if resolved != root_path and root_path not in resolved.parents:
        raise UserError(f"{path}: resolves to {resolved}, outside the output folder {root_path}")
    return path


_RECORD_LOCKS: dict[Path, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _record_lock(path: Path) -> threading.RLock:
    """One lock per record file: cases written by parallel threads update the same record."""
    with _LOCKS_GUARD:
        return _RECORD_LOCKS.setdefault(path.resolve(), threading.RLock())


class OutputFolder:
    """An output folder plus the record of the files one tool wrote into it."""

    def __init__(self, root: str | os.PathLike, tool: str):
        self.root = Path(root)
        self.tool = tool
        self.record_path = self.root / f".{tool}-outputs.json"
        self.lock = _record_lock(self.record_path)

    # -- the record ---------------------------------------------------------------------------------
    def _load(self) -> dict:
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"tool": self.tool, "files": [], "staging": []}
        except (OSError, ValueError):
            raise UserError(f"{self.record_path}: unreadable record of {self.tool}'s outputs "
                            "(remove it only if the folder holds nothing you want to keep)") from None
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise UserError(f"{self.record_path}: not a record of {self.tool}'s outputs")
        data.setdefault("staging", [])
        return data

    def _save(self, data: dict) -> None:
        data = {**data, "tool": self.tool, "files": sorted(set(data["files"])),
                "staging": sorted(set(data["staging"]))}
        write_json_atomic(self.record_path, data)

    def owned(self) -> set[str]:
        """Relative POSIX paths of the files this tool recorded writing here (some may be gone since)."""
        return {rel for rel in self._load()["files"] if _is_relative_inside(rel)}

    def _staging_names(self) -> set[str]:
        return {name for name in self._load()["staging"] if _is_relative_inside(name) and "/" not in name}

    def foreign(self) -> list[str]:
        """Files (relative POSIX paths) in the folder that this tool did not write."""
        if not self.root.is_dir():
            return []
        owned, staging = self.owned(), self._staging_names()
        found = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path == self.record_path or rel.split("/")[0] in staging or path.is_dir():
                continue
            if rel not in owned:
                found.append(rel)
        return found

    def path(self, *parts: str | os.PathLike) -> Path:
        """A path inside the folder (UserError when it would resolve outside)."""
        return inside(self.root, *parts)

    # -- claiming and releasing files ---------------------------------------------------------------
    def check_free(self, rels: Iterable[str]) -> None:
        """UserError when any of `rels` exists and was not written by this tool (a foreign file)."""
        owned = self.owned()
        for rel in rels:
            target = self.path(rel)
            if (target.exists() or target.is_symlink()) and rel not in owned:
                raise UserError(f"{target}: exists and was not written by {self.tool}; it is left untouched "
                                "(move it away or choose another output folder)")

    def claim(self, rels: Iterable[str]) -> None:
        """Add `rels` to the record before they are written (a crash then leaves them ours)."""
        rels = [PurePosixPath(rel).as_posix() for rel in rels]
        for rel in rels:
            self.path(rel)
        with self.lock:
            data = self._load()
            data["files"] = [*data["files"], *rels]
            self._save(data)

    def release(self, rels: Iterable[str]) -> None:
        """Delete `rels` that this tool wrote (others are refused), then drop them from the record."""
        rels = set(rels)
        with self.lock:
            owned = self.owned()
            strangers = sorted(r for r in rels if r not in owned and (self.root / r).exists())
            if strangers:
                self.check_free(strangers)
            for rel in sorted(rels & owned):
                self.path(rel).unlink(missing_ok=True)
                _remove_empty_parents(self.root / rel, self.root)
            data = self._load()
            data["files"] = [f for f in data["files"] if f not in rels]
            self._save(data)

    def release_all(self) -> None:
        """--overwrite: delete every file this tool recorded here; foreign files stay."""
        self.release(self.owned())

    # -- a staged run -------------------------------------------------------------------------------
    def clear_stale_staging(self) -> None:
        """Remove staging folders a killed run left behind (only those the record names)."""
        with self.lock:
            data = self._load()
            for name in self._staging_names():
                shutil.rmtree(self.root / name, ignore_errors=True)
            if data["staging"]:
                data["staging"] = []
                self._save(data)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A hidden folder inside the output folder, named in the record before it exists."""
        self.root.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{self.tool}-staging-", dir=self.root))
        try:
            with self.lock:
                data = self._load()
                data["staging"] = [*data["staging"], stage.name]
                self._save(data)
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            with self.lock:
                data = self._load()
                if stage.name in data["staging"]:
                    data["staging"] = [n for n in data["staging"] if n != stage.name]
                    self._save(data)

    def commit(self, staging: Path, replace_old: bool) -> list[str]:
        """Move every file of `staging` into the folder; with `replace_old` first drop the earlier outputs.

        A staged file that would replace a foreign file is refused before anything moves.
        """
        staged = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        with self.lock:
            self.check_free(staged)
            old = self.owned() if replace_old else set()
            self.claim(staged)
            for rel in staged:
                target = self.path(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
            self.release(old - set(staged))
        return staged


def _is_relative_inside(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not PurePosixPath(rel).is_absolute() and ".." not in parts


def _remove_empty_parents(path: Path, root: Path) -> None:
    parent = path.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        parent = parent.parent


def prepare_output(out_dir: str | os.PathLike, tool: str, overwrite: bool) -> OutputFolder:
    """Check (and create) `out_dir` for a whole-run tool such as umed-bench.

    Refused without `overwrite` when the folder already holds files (ours or anyone's).
    With `overwrite`, nothing is deleted here: the earlier outputs are replaced at commit,
    and foreign files are never touched.
    """
    folder = OutputFolder(out_dir, tool)
    if folder.root.exists() and not folder.root.is_dir():
        raise UserError(f"{folder.root}: exists and is not a folder")
    if folder.root.is_dir():
        folder.clear_stale_staging()
        owned = {rel for rel in folder.owned() if (folder.root / rel).is_file()}
        foreign = folder.foreign()
        if (owned or foreign) and not overwrite:
            what = (f"{len(owned)} earlier {tool} output(s)" if owned else "") + \
                   (" and " if owned and foreign else "") + \
                   (f"{len(foreign)} file(s) {tool} did not write, e.g. {foreign[0]}" if foreign else "")
            raise UserError(f"{folder.root}: already holds {what} (pass --overwrite to replace {tool}'s own "
                            "outputs; other files are never touched)")
    ensure_writable_dir(folder.root)
    return folder


@contextlib.contextmanager
def staged_run(out_dir: str | os.PathLike, tool: str, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging folder inside `out_dir`; its files replace the tool's earlier
    outputs only when the block succeeds. On an error, Ctrl-C or SIGTERM (see errors.cli_entry)
    nothing changes in `out_dir`, and a folder this call created is removed again.
    """
    created = not Path(out_dir).exists()
    folder = prepare_output(out_dir, tool, overwrite)
    succeeded = False
    try:
        with folder.staging() as staging:
            yield staging
            folder.commit(staging, replace_old=True)
            succeeded = True
    finally:
        if created and not succeeded and not folder.foreign() \
                and not any((folder.root / rel).exists() for rel in folder.owned()):
            folder.record_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.root.rmdir()
