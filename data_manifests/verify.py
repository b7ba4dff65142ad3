"""`umed-verify-data MANIFEST DIR`: check a local copy against a manifest.

MANIFEST is a CSV with `path` and `sha256` columns (as in this package) or a
`sha256sum` list. Reports files missing from DIR, extra files in DIR and
corrupt files (checksum mismatch); exit status 1 when any is found.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from umed_common.checksums import sha256_file
from umed_common.errors import UserError, cli_entry

from .release import read_sha256sums


@dataclass
class Report:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    ok: int = 0

    def problems(self, allow_missing: bool = False) -> int:
        return len(self.extra) + len(self.corrupt) + (0 if allow_missing else len(self.missing))


def read_manifest(path: str | Path) -> dict[str, str]:
    """{relative path: sha256} from a CSV manifest or a sha256sum list."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such manifest")
    try:
        if path.suffix.lower() != ".csv":
            return dict(read_sha256sums(path))
        return _read_csv_manifest(path)
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: not a text manifest ({type(err).__name__}: {str(err)[:60]})") from None


def _read_csv_manifest(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "sha256"} <= set(reader.fieldnames):
            raise UserError(f"{path}: a manifest CSV needs 'path' and 'sha256' columns")
        manifest = {}
        for row in reader:
            if not row["path"] or not row["sha256"]:
                raise UserError(f"{path}:{reader.line_num}: a row without a path or a sha256")
            manifest[row["path"]] = row["sha256"].lower()
        return manifest


def verify(manifest: dict[str, str], root: str | Path, ignore=(), show_progress=False) -> Report:
    """Compare every manifest entry with `root`; files matching an `ignore` glob are not extra."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    report = Report()
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for rel, expected in tqdm(sorted(manifest.items()), desc="verify", unit="file", disable=not show_progress):
        if rel not in present:
            report.missing.append(rel)
        elif sha256_file(root / rel) != expected:
            report.corrupt.append(rel)
        else:
            report.ok += 1
    for rel in sorted(present - set(manifest)):
        if not any(fnmatch.fnmatch(rel, pattern) for pattern in ignore):
            report.extra.append(rel)
    return report


@cli_entry
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="umed-verify-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", help="manifest CSV (path,sha256) or sha256sum list")
    parser.add_argument("folder", help="local copy to check")
    parser.add_argument("--allow-missing", action="store_true",
                        help="a partial copy is fine (missing files are listed but do not fail)")
    parser.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                        help="files that are not extra (repeatable), e.g. 'README*'")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    ignore = [*args.ignore, Path(args.manifest).name]
    report = verify(manifest, args.folder, ignore, show_progress=not args.quiet)
    for kind in ("missing", "extra", "corrupt"):
        for rel in getattr(report, kind):
            print(f"{kind}: {rel}")
    print(f"umed-verify-data: {report.ok} ok, {len(report.missing)} missing, {len(report.extra)} extra, "
          f"{len(report.corrupt)} corrupt ({len(manifest)} in manifest)")
    return 1 if report.problems(args.allow_missing) else 0


if __name__ == "__main__":
    sys.exit(main())
