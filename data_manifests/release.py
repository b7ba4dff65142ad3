"""Build the MedNeRF DRR release manifest (CSV) from its SHA256SUMS list.

    python -m data_manifests.release ../shared/data/mednerf_drr/RELEASE_SHA256SUMS \
        data_manifests/mednerf_drr_release.csv

File names are `PP_xrayKKKK.png` (chest patient 01 is `01_bbg_xrayKKKK.png`);
patients and views are parsed from the names, never assumed.
"""
from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

from umed_common.atomic import write_text_atomic
from umed_common.errors import UserError, cli_entry

NAME = re.compile(r"^(?P<part>[^/]+)/(?P<patient>\d+)(?:_[a-z]+)?_xray(?P<view>\d{4})\.png$")
COLUMNS = ["path", "sha256", "body_part", "patient", "view", "angle_deg"]


def read_sha256sums(path: str | Path) -> list[tuple[str, str]]:
    """[(relative path, sha256)] from `sha256sum` output ('HASH  PATH' lines)."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise UserError(f"{path}:{number}: not a 'SHA256  PATH' line")
        rows.append((parts[1].strip().lstrip("*"), parts[0]))
    return rows


def release_rows(sums_path: str | Path) -> list[dict]:
    rows = []
    for rel, digest in read_sha256sums(sums_path):
        match = NAME.match(rel)
        if match is None:
            raise UserError(f"{sums_path}: unexpected file name {rel}")
        view = int(match["view"])
        rows.append({"path": rel, "sha256": digest, "body_part": match["part"],
                     "patient": match["patient"], "view": view, "angle_deg": view * 5})
    return rows


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    table.writeheader()
    table.writerows(rows)
    return buffer.getvalue()


@cli_entry
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise UserError("usage: python -m data_manifests.release SHA256SUMS OUT.csv")
    write_text_atomic(argv[1], to_csv(release_rows(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
