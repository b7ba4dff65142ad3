"""umed-bench --out: the user's own files survive --overwrite, nothing is written outside --out,
no staging folder is left by an error, SIGTERM or a full disk (issue 13).

Table 2 on small synthetic PNG folders with the RANDOM-weight Inception of conftest: the numbers
are not the point here, the files are.
"""
import errno
import json
import os
import pathlib
import signal

import numpy as np
import pytest
import yaml
from PIL import Image

import benchmark.cli as bench_cli
from benchmark.cli import main


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    rng = np.random.default_rng(0)
    for name in ("real", "other"):
        (root / name).mkdir()
        for k in range(4):
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / name / f"x{k}.png")
    return root


def write_config(path, sets, cache, dataset="knee"):
    config = {"feature_cache_dir": str(cache), "datasets": {dataset: {"data_dir": str(sets / "real")}},
              "table2": {"datasets": [dataset], "ours": None, "repeats": 2, "fid_repeats": 2,
                         "methods": {"GRAF": {dataset: str(sets / "other")}}}}
    path.write_text(yaml.safe_dump(config))
    return path


def run(capsys, config, out, weights, *extra):
    code = main(["--table", "2", "--config", str(config), "--out", str(out), "--inception-weights", str(weights),
                 "--device", "cpu", "--no-progress", *extra])
    captured = capsys.readouterr()
    return code, captured.err


def tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_user_files_inside_out_survive_overwrite(image_folders, tmp_path, capsys, random_weights_file,
                                                 feature_cache_dir):
    config = write_config(tmp_path / "c.yaml", image_folders, feature_cache_dir)
    out = tmp_path / "out"
    assert run(capsys, config, out, random_weights_file)[0] == 0
    (out / "keep.txt").write_text("mine")
    (out / "mydata").mkdir()
    (out / "mydata" / "thesis.tex").write_text("\\chapter{}")
    (out / "table2.md").write_text("stale")  # a result of ours, replaced by the rerun
    code, err = run(capsys, config, out, random_weights_file)
    assert code == 2 and "--overwrite" in err and "Traceback" not in err
    code, err = run(capsys, config, out, random_weights_file, "--overwrite")
    assert code == 0, err
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "mydata" / "thesis.tex").read_text() == "\\chapter{}"
    assert "stale" not in (out / "table2.md").read_text()
    record = json.loads((out / ".umed-bench-outputs.json").read_text())
    assert "keep.txt" not in record["files"] and "table2.md" in record["files"] and record["staging"] == []
    assert not [p for p in tree(out) if "staging" in p] and tree(tmp_path).count("out") == 1


def test_folder_of_user_files_refused_without_overwrite(image_folders, tmp_path, capsys, random_weights_file,
                                                        feature_cache_dir):
    config = write_config(tmp_path / "c.yaml", image_folders, feature_cache_dir)
    out = tmp_path / "project"
    out.mkdir()
    (out / "setup.py").write_text("x = 1")
    code, err = run(capsys, config, out, random_weights_file)
    assert code == 2 and "did not write" in err and "setup.py" in err and "Traceback" not in err
    assert tree(out) == ["setup.py"]
    code, err = run(capsys, config, out, random_weights_file, "--overwrite")  # written beside them
    assert code == 0 and (out / "setup.py").read_text() == "x = 1" and (out / "table2.md").is_file()


def test_output_that_would_replace_a_user_file_is_refused(image_folders, tmp_path, capsys, random_weights_file,
                                                          feature_cache_dir):
    config = write_config(tmp_path / "c.yaml", image_folders, feature_cache_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "table2.md").write_text("my own notes")
    code, err = run(capsys, config, out, random_weights_file, "--overwrite")
    assert code == 2 and "table2.md: exists and was not written by umed-bench" in err
    assert (out / "table2.md").read_text() == "my own notes"
    assert tree(out) == [".umed-bench-outputs.json", "table2.md"]
    assert json.loads((out / ".umed-bench-outputs.json").read_text())["files"] == []


@pytest.mark.parametrize("name", ["../../../escaped", "a/b", "..", ".hidden"])
def test_dataset_name_that_leaves_out_is_refused(image_folders, tmp_path, capsys, random_weights_file,
                                                 feature_cache_dir, name):
    config = write_config(tmp_path / "c.yaml", image_folders, feature_cache_dir, dataset=name)
    before = tree(tmp_path)
    code, err = run(capsys, config, tmp_path / "deep" / "er" / "out", random_weights_file)
    assert code == 2 and "dataset name" in err and repr(name) in err and "Traceback" not in err
    assert tree(tmp_path) == before  # nothing written anywhere, no --out made


def test_sigterm_leaves_no_partial_folder(image_folders, tmp_path, capsys, random_weights_file,
                                         feature_cache_dir, monkeypatch):
    config = write_config(tmp_path / "c.yaml", image_folders, feature_cache_dir)
    out = tmp_path / "out"
    real_run_table = bench_cli.run_table

    def killed_midway(table, config, device, staging, progress):
        real_run_table(table, config, device, staging, progress)
        assert any(staging.iterdir())
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(bench_cli, "run_table", killed_midway)
    before = tree(tmp_path)
    code, err = run(capsys, config, out, random_weights_file)
    assert code == 143 and "terminated" in err
    assert tree(tmp_path) == before  # no out/, no .out.partial-* beside it
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_disk_full_is_one_line_and_keeps_earlier_results(image_folders, tmp_path, capsys, random_weights_file,
                                                         feature_cache_dir, monkeypatch):
    config = write_config(tmp_path / "c.yaml", image_folders, feature_cache_dir)
    out = tmp_path / "out"
    assert run(capsys, config, out, random_weights_file)[0] == 0
    earlier = {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()}
    real_write_bytes = pathlib.Path.write_bytes

    def full_disk(self, data):
        if ".run." in self.name:  # the temporary of run.json (umed_common.atomic)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    code, err = run(capsys, config, out, random_weights_file, "--overwrite")
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "run.json: cannot write (No space left on device)" in errors[0]
    assert {p: (out / p).read_bytes() for p in tree(out) if (out / p).is_file()} == earlier
