import csv
import os
import subprocess
import sys

import pytest
import torch

from model.api import train

STATE_KEYS = ("generator", "generator_ema", "discriminator", "opt_g", "opt_d")


def _flatten(state, prefix=""):
    if isinstance(state, dict):
        for key, value in state.items():
            yield from _flatten(value, f"{prefix}/{key}")
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from _flatten(value, f"{prefix}/{index}")
    else:
        yield prefix, state


def _losses(run):
    with (run / "log.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)]


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, drr_folder):
    straight = train("tiny", drr_folder, tmp_path / "a", device="cpu", max_iters=4, progress=False)
    train("tiny", drr_folder, tmp_path / "b", device="cpu", max_iters=1, progress=False)
    resumed = train("tiny", drr_folder, tmp_path / "b", device="cpu", max_iters=4, resume=True, progress=False)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["iteration"] == b["iteration"] == 4
    flat_a, flat_b = dict(_flatten({k: a[k] for k in STATE_KEYS})), dict(_flatten({k: b[k] for k in STATE_KEYS}))
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        if torch.is_tensor(value):
            assert torch.equal(value, flat_b[key]), key      # bit for bit
        else:
            assert value == flat_b[key], key
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    # a different seed really changes the run (the comparison above can fail)
    other = train("tiny", drr_folder, tmp_path / "c", device="cpu", max_iters=1, seed=1, progress=False)
    assert not torch.equal(torch.load(other, weights_only=True)["generator"]["field.layers.0.weight"],
                           torch.load(tmp_path / "b" / "model.pt", weights_only=True)["generator"]["field.layers.0.weight"])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "model.cli_train", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_refuses_overwrite_and_foreign_resume(tmp_path, drr_folder, tiny_checkpoint):
    run = tiny_checkpoint.parent
    result = _cli("--config", "tiny", "--data", str(drr_folder), "--out", str(run), "--device", "cpu")
    assert result.returncode == 2 and "--resume" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    other = tmp_path / "other.yaml"
    other.write_text("train: {batch_size: 3}\nfield: {n_layers: 2, width: 32, skip_layer: 0}\n")
    result = _cli("--config", str(other), "--data", str(drr_folder), "--out", str(run), "--resume", "--device", "cpu")
    assert result.returncode == 2 and "another config" in result.stderr and "Traceback" not in result.stderr
    result = _cli("--config", "tiny", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "no such data folder" in result.stderr


@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_ends_the_run_with_a_checkpoint_and_a_non_zero_exit(tmp_path, drr_folder, signame, code):
    import signal
    import time
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "model.cli_train", "--config", "tiny", "--data", str(drr_folder),
                             "--out", str(run), "--max-iters", "100000", "--device", "cpu", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len((run / "log.csv").read_text().splitlines()
                                              if (run / "log.csv").exists() else []) < 2:
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr  # a scheduler must not take the run for finished
    assert f"stopped by {signame}" in stderr and "--resume" in stderr and "Traceback" not in stderr
    payload = torch.load(run / "model.pt", weights_only=True)
    assert 1 <= payload["iteration"] < 100000
    assert not list(run.glob(".*tmp*"))          # no half-written temporary left behind


def test_umed_train_on_a_full_disk_exits_2_with_one_line(tmp_path, drr_folder, monkeypatch, capsys):
    import errno

    from model.cli_train import main

    def full_disk(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    code = main(["--config", "tiny", "--data", str(drr_folder), "--out", str(run), "--max-iters", "1",
                 "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().endswith("model.pt: cannot write (No space left on device)")
    assert "Traceback" not in err and not (run / "model.pt").exists() and not list(run.glob(".*tmp*"))


def test_resume_refuses_another_holdout_or_other_data(tmp_path, drr_folder):
    import shutil
    from umed_common.errors import UserError
    drr_folder = shutil.copytree(drr_folder, tmp_path / "data")   # the fixture is shared: change a copy
    patients = sorted({p.name.split("_")[0] for p in drr_folder.glob("*_xray*.png")})
    train("tiny", drr_folder, tmp_path / "run", device="cpu", max_iters=1, progress=False)
    with pytest.raises(UserError, match="holdout"):
        train("tiny", drr_folder, tmp_path / "run", device="cpu", max_iters=2, resume=True, progress=False,
              holdout=[patients[0]])
    first = sorted(drr_folder.glob("*_xray*.png"))[0]
    first.rename(tmp_path / first.name)                     # one training image fewer
    with pytest.raises(UserError, match="other images"):
        train("tiny", drr_folder, tmp_path / "run", device="cpu", max_iters=2, resume=True, progress=False)
