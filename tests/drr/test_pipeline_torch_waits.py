"""torch waits (drr.pipeline): the read side imports no torch, the first case is read while torch is
imported, and the command's thread set-up and device check behave as before."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import nibabel as nib
import numpy as np
import pytest
import torch

import drr.pipeline
from drr.cli import main
from drr.projector import METHODS
from drr_test_volumes import small_hu_volume
from tests.conftest import REPO_ROOT

FAST = ["--projector", "fast", "--views", "3", "--angle-step-deg", "120", "--rows", "12", "--cols", "16",
        "--detector-mm", "60", "--quiet"]


def write_ct(path):
    hu = np.transpose(small_hu_volume(), (2, 1, 0)).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 3.0, 1.0])), path)
    return path


def test_the_command_and_a_case_read_import_no_torch(tmp_path):
    ct = write_ct(tmp_path / "ct.nii.gz")
    script = ("import sys, drr.cli\n"
              "from drr.volume_io import discover_cases, load_case\n"
              "from drr.pipeline import input_checksum\n"
              f"(case,), _ = discover_cases({str(ct)!r})\n"
              "input_checksum(case), load_case(case)\n"
              "print('torch' in sys.modules)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr


def test_the_first_case_is_read_while_torch_is_imported(tmp_path, monkeypatch):
    reading = threading.Event()
    real_read, real_resolve = drr.pipeline._read_stage, drr.pipeline.resolve_device

    def read(*args):
        reading.set()
        return real_read(*args)

    def resolve(name):  # where the command imports torch
        assert reading.wait(timeout=60), "the first case was not being read while torch was imported"
        return real_resolve(name)

    monkeypatch.setattr(drr.pipeline, "_read_stage", read)
    monkeypatch.setattr(drr.pipeline, "resolve_device", resolve)
    assert main([str(write_ct(tmp_path / "ct.nii.gz")), str(tmp_path / "out"), *FAST, "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "ct" / "case.json").is_file()


def test_the_fast_projector_threads_are_set_while_projecting_and_put_back(tmp_path, monkeypatch):
    seen = []
    real_render = drr.pipeline.render_volume

    def render(volume, options, device):
        seen.append((options.projector_threads, torch.get_num_threads()))
        return real_render(volume, options, device)

    monkeypatch.setattr(drr.pipeline, "render_volume", render)
    ct = write_ct(tmp_path / "ct.nii.gz")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two, so that the projector's share and torch's own setting differ
    try:
        assert main([str(ct), str(tmp_path / "out"), *FAST, "--device", "cpu"]) == 0
        assert seen == [(2, 1)]  # views on threads of their own, single-threaded torch ops
        assert torch.get_num_threads() == 2
        assert main([str(ct), str(tmp_path / "exact"), *FAST[2:], "--projector", "exact", "--device", "cpu"]) == 0
        assert seen[1] == (1, 2) and torch.get_num_threads() == 2  # exact keeps torch's threads
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("device", ["cuda", "nonsense"])
def test_a_device_not_there_is_refused_before_any_folder(tmp_path, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    code = main([str(write_ct(tmp_path / "ct.nii.gz")), str(tmp_path / "out"), *FAST, "--device", device])
    text = capsys.readouterr().err
    assert code == 2 and f"--device {device}: " in text and text.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_projector_names_kept_beside_their_torch_side_original():
    assert drr.pipeline.PROJECTORS == METHODS
