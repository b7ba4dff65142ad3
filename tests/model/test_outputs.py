"""umed-finetune's outputs (model/outputs.py): all or nothing, the user's files kept, a full disk one line."""
import errno
import pathlib

import numpy as np
import pandas as pd
import pytest

from model.outputs import write_finetune_outputs
from umed_common.errors import UserError

HISTORY = pd.DataFrame({"iteration": [1, 2], "loss": [1.0, 0.5], "loss_r": [0.5, 0.2], "loss_mse": [0.5, 0.3],
                        "sigma_1": [1.0, 1.0], "sigma_2": [1.0, 1.0], "psnr": [10.0, 12.0], "ssim": [0.1, 0.2]})


def views(value=0):
    return np.full((72, 8, 8), value, dtype=np.uint8)


def disk_full_on(monkeypatch, fragment):
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        if fragment in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)


def test_outputs_are_written_and_replaced_whole_and_user_files_stay(tmp_path):
    out = tmp_path / "ft"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    write_finetune_outputs(out, views(10), HISTORY)
    assert len(list((out / "views").glob("xray*.png"))) == 72
    write_finetune_outputs(out, views(20), HISTORY)  # --overwrite
    assert (out / "notes.md").read_text() == "mine"
    assert not [p for p in out.rglob("*") if "staging" in p.name]


def test_a_user_file_with_an_output_name_is_refused(tmp_path):
    out = tmp_path / "ft"
    out.mkdir()
    (out / "history.csv").write_text("my own table")
    with pytest.raises(UserError, match="history.csv: exists and was not written by umed-finetune"):
        write_finetune_outputs(out, views(), HISTORY)
    assert (out / "history.csv").read_text() == "my own table" and not (out / "views").exists()


def test_disk_full_leaves_the_earlier_outputs_and_no_partial_files(tmp_path, monkeypatch):
    out = tmp_path / "ft"
    write_finetune_outputs(out, views(10), HISTORY)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    disk_full_on(monkeypatch, ".rotation.")  # after the 72 views were staged
    with pytest.raises(UserError, match=r"rotation\.gif: cannot write \(No space left on device\)"):
        write_finetune_outputs(out, views(200), HISTORY)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_umed_finetune_on_a_full_disk_exits_2_with_one_line(tmp_path, tiny_checkpoint, drr_folder, monkeypatch,
                                                           capsys):
    from model.cli_finetune import main
    disk_full_on(monkeypatch, ".history.")
    out = tmp_path / "ft"
    code = main(["--checkpoint", str(tiny_checkpoint), "--xray", str(drr_folder / "02_xray0009.png"), "--out",
                 str(out), "--max-iters", "2", "--device", "cpu", "--no-progress", "--azimuth", "0"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "history.csv: cannot write (No space left on device)" in errors[0]
    assert "Traceback" not in err and not (out / "views").exists()
