"""The installed `drr-generate` console script (drr.cli.command): main() run as a user runs it,
leaving by os._exit; exit status, outputs and messages must be main()'s."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import drr.cli
from drr_test_volumes import small_hu_volume
from umed_common.errors import cli_entry

SCRIPT = Path(sys.executable).parent / "drr-generate"
FAST = ["--projector", "fast", "--views", "3", "--angle-step-deg", "120", "--rows", "12", "--cols", "16",
        "--detector-mm", "60", "--quiet", "--device", "cpu"]


def installed_script() -> Path:
    if not SCRIPT.is_file():
        pytest.skip(f"{SCRIPT} not installed (pip install -e . in the virtualenv)")
    return SCRIPT


def run_script(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(installed_script()), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_the_installed_script_is_the_fast_exit_entry():
    # the script's own text: importlib.metadata may find a stale umednerf.egg-info in the repo root first
    assert "from drr.cli import command" in installed_script().read_text()


def test_a_case_through_the_console_script(tmp_path):
    hu = np.transpose(small_hu_volume(), (2, 1, 0)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "ct.nii.gz")
    done = run_script(tmp_path / "ct.nii.gz", tmp_path / "out", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"drr-generate: 1 done, 0 already done, 0 failed -> {tmp_path / 'out'}/manifest.csv\n"
    assert done.stderr == ""
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert [(r["case_id"], r["status"]) for r in rows] == [("ct", "ok")] and len(rows[0]["raw_sha256"]) == 64
    assert np.load(tmp_path / "out" / "ct" / "drr_line_integrals.npy").shape == (3, 12, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "out"]  # no staging or temporaries left


def test_a_bad_input_through_the_console_script(tmp_path):
    done = run_script(tmp_path / "missing.nii.gz", tmp_path / "out", *FAST, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"drr: error: {tmp_path / 'missing.nii.gz'}: no such file or folder\n"
    assert not (tmp_path / "out").exists()


def test_ctrl_c_leaves_with_its_message_and_status(monkeypatch, capsys):
    @cli_entry
    def interrupted(argv=None):
        raise KeyboardInterrupt

    exits = []
    monkeypatch.setattr(drr.cli, "main", interrupted)
    monkeypatch.setattr(drr.cli.os, "_exit", exits.append)
    drr.cli.command()
    assert exits == [130] and capsys.readouterr().err == "interrupted\n"
