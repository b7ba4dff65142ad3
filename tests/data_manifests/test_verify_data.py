"""umed-verify-data and the committed manifests."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from data_manifests.release import release_rows, to_csv
from data_manifests.verify import main

PACKAGE = Path(__file__).resolve().parents[2] / "data_manifests"
SHARED = Path(os.environ.get("UMED_SHARED_DATA") or Path(__file__).resolve().parents[2] / ".." / "shared" / "data")


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found (set UMED_SHARED_DATA to ../shared/data)")
    return path


def test_committed_release_manifest_matches_sha256sums():
    sums = need(SHARED / "mednerf_drr" / "RELEASE_SHA256SUMS")
    rows = release_rows(sums)
    assert len(rows) == 1796
    assert (PACKAGE / "mednerf_drr_release.csv").read_text() == to_csv(rows)


def test_bundled_chest_ct_verifies(capsys):
    need(SHARED / "ct" / "chest_ct.nii.gz")
    assert main([str(PACKAGE / "chest_ct_bundled.csv"), str(SHARED / "ct"), "--quiet"]) == 0
    assert "1 ok, 0 missing, 0 extra, 0 corrupt" in capsys.readouterr().out


def test_release_copy_reports_missing_extra_and_corrupt(tmp_path, capsys):
    source = need(SHARED / "mednerf_drr" / "knee")
    copy = tmp_path / "release"
    shutil.copytree(source, copy / "knee")
    manifest = tmp_path / "knee.csv"
    rows = [r for r in release_rows(SHARED / "mednerf_drr" / "RELEASE_SHA256SUMS") if r["body_part"] == "knee"]
    present = {p.relative_to(copy).as_posix() for p in copy.rglob("*.png")}
    manifest.write_text(to_csv([r for r in rows if r["path"] in present]))
    assert main([str(manifest), str(copy), "--quiet"]) == 0
    (copy / "knee" / "02_xray0005.png").unlink()
    (copy / "knee" / "03_xray0000.png").write_bytes(b"not the image")
    (copy / "knee" / "stray.txt").write_text("x")
    capsys.readouterr()
    assert main([str(manifest), str(copy), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "missing: knee/02_xray0005.png" in out
    assert "corrupt: knee/03_xray0000.png" in out
    assert "extra: knee/stray.txt" in out


def test_bad_manifest_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,hash\na,b\n")
    assert main([str(bad), str(tmp_path), "--quiet"]) == 2
    assert "needs 'path' and 'sha256' columns" in capsys.readouterr().err


@pytest.mark.parametrize("name, content", [
    ("manifest.csv", bytes(range(256)) * 8),          # binary, NUL bytes included
    ("manifest.sha256", bytes(range(128, 256)) * 8),  # not UTF-8
    ("manifest.csv", b"path,sha256\x00\n"),
    ("manifest.csv", b"path,sha256\nonly_a_path\n"),
])
def test_binary_or_broken_manifest_is_a_one_line_error(tmp_path, capsys, name, content):
    (tmp_path / name).write_bytes(content)
    (tmp_path / "data").mkdir()
    code = main([str(tmp_path / name), str(tmp_path / "data"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{name}" in err and "Traceback" not in err and err.count("\n") == 1
