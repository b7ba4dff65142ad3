"""python -m drr.bench_speed --quick: one run gives every row, and missing peers do not stop it."""
from __future__ import annotations

import csv

import pytest

import drr.bench_speed as bench
from drr.peers import installed


def read_rows(out):
    with open(out / "bench_speed.csv", newline="") as handle:
        return {(row["part"], row["tool"], row["device"]): row for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_quick_run_reports_whole_commands_and_projectors(tmp_path, capsys):
    projectors = ["ours fast", "DiffDRR Siddon", "nanodrr 128 samples"]
    assert bench.main(["--quick", "--out", str(tmp_path), "--projectors", *projectors]) == 0
    rows = read_rows(tmp_path)
    ours = rows[("projector alone", "ours fast", "cpu")]
    assert float(ours["seconds"]) > 0 and float(ours["peak_memory_gb"]) > 0
    # the coarse quick phantom: every Siddon-like projector is a few % from the analytic truth
    assert float(ours["worst_view_ncc"]) > 0.99 and float(ours["worst_view_rel_rms"]) < 0.08
    for part in ("whole command, 1 CT", "whole command, batch of 2"):
        assert float(rows[(part, "drr-generate", "cpu")]["seconds"]) > 0
    plastimatch = rows[("projector alone", "Plastimatch exact", "cpu")]
    if bench.find_plastimatch() is None:
        assert plastimatch["note"] == "not installed"
    else:
        assert float(ours["ratio_vs_plastimatch"]) > 0 and float(plastimatch["worst_view_ncc"]) > 0.99
    for tool, package in (("DiffDRR Siddon", "diffdrr"), ("nanodrr 128 samples", "nanodrr")):
        row = rows[("projector alone", tool, "cpu")]
        if installed(package):
            assert float(row["worst_view_ncc"]) > 0.99, tool
        else:
            assert row["note"].startswith("not installed")
    assert "| projector alone | ours fast |" in (tmp_path / "bench_speed.md").read_text()
    assert bench.main(["--quick", "--out", str(tmp_path), "--no-whole", "--projectors", "ours fast"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_missing_plastimatch_and_peers_are_rows_not_crashes(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "find_plastimatch", lambda: None)
    monkeypatch.setattr(bench, "installed", lambda package: False)
    assert bench.main(["--quick", "--no-whole", "--out", str(tmp_path),
                       "--projectors", "ours fast", "DiffDRR Siddon"]) == 0
    rows = read_rows(tmp_path)
    assert rows[("projector alone", "Plastimatch exact", "cpu")]["note"] == "not installed"
    assert rows[("projector alone", "DiffDRR Siddon", "cpu")]["note"].startswith("not installed")
    assert rows[("projector alone", "ours fast", "cpu")]["ratio_vs_plastimatch"] == ""
    assert float(rows[("projector alone", "ours fast", "cpu")]["worst_view_ncc"]) > 0.99
