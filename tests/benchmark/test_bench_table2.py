"""umed-bench --table 2 end to end on small folders of real DRRs and perturbed copies.

The Inception network has RANDOM weights built in the test (conftest): the
numbers check the pipeline (identical sets ~0, perturbed sets > 0), not FID's
published scale.
"""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from benchmark.cli import main

N_IMAGES = 6


@pytest.fixture(scope="module")
def folders(knee_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("table2")
    real, noisy, same = root / "real", root / "noisy", root / "same"
    for folder in (real, noisy, same):
        folder.mkdir()
    rng = np.random.default_rng(0)
    for path in sorted(knee_dir.glob("03_xray00*.png"))[:N_IMAGES]:
        shutil.copy(path, real / path.name)
        shutil.copy(path, same / f"copy_{path.name}")
        image = np.asarray(Image.open(path), dtype=np.float64)
        Image.fromarray(np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)).save(noisy / path.name)
    return root


def write_config(path, root, cache, methods, **table2):
    config = {"feature_cache_dir": str(cache), "datasets": {"knee": {"data_dir": str(root / "real")}},
              "table2": {"datasets": ["knee"], "ours": None, "repeats": 4, "fid_repeats": 2,
                         "methods": {m: {"knee": str(f)} for m, f in methods.items()}, **table2}}
    path.write_text(yaml.safe_dump(config))
    return path


def run(config, out, weights, *extra):
    return main(["--table", "2", "--config", str(config), "--out", str(out), "--inception-weights", str(weights),
                 "--device", "cpu", "--no-progress", *extra])


def test_table2_scores_folders(folders, tmp_path, random_weights_file, feature_cache_dir):
    config = write_config(tmp_path / "c.yaml", folders, feature_cache_dir,
                          {"GRAF": folders / "noisy", "copy": folders / "same"})
    out = tmp_path / "out"
    assert run(config, out, random_weights_file) == 0
    summary = pd.read_csv(out / "table2_summary.csv").set_index(["method", "metric"])
    assert summary.loc[("copy", "fid_full"), "mean"] == pytest.approx(0.0, abs=1e-6)
    assert summary.loc[("GRAF", "fid_full"), "mean"] > 1e3 * max(summary.loc[("copy", "fid_full"), "mean"], 1e-9)
    assert summary.loc[("GRAF", "kid"), "mean"] > summary.loc[("copy", "kid"), "mean"]
    assert (summary["n_real"] == N_IMAGES).all() and (summary["subset_size"] == N_IMAGES // 2).all()
    scores = pd.read_csv(out / "table2_scores.csv")
    assert len(scores[(scores.method == "GRAF") & (scores.metric == "kid")]) == 4
    markdown = (out / "table2.md").read_text()
    assert "| knee | GRAF |" in markdown and "76.70 +- 0.302" in markdown
    run_record = json.loads((out / "run.json").read_text())
    assert run_record["seed"] == 0 and run_record["code_version"]
    assert run_record["inception_weights"]["official_fid_weights"] is False
    assert (out / "config.yaml").read_text() == config.read_text()
    assert (out / "plots" / "table2_knee_bars.png").is_file()
    assert (out / "contact_sheets" / "table2_knee.png").is_file()
    assert run(config, out, random_weights_file) == 2  # never overwritten silently
    assert run(config, out, random_weights_file, "--overwrite") == 0


def test_without_inception_file_stops_cleanly(folders, tmp_path, monkeypatch, capsys, feature_cache_dir):
    monkeypatch.delenv("UMED_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    config = write_config(tmp_path / "c.yaml", folders, feature_cache_dir, {"GRAF": folders / "noisy"})
    out = tmp_path / "out"
    code = main(["--table", "2", "--config", str(config), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "pytorch-fid" in err
    assert not out.exists() and list(tmp_path.glob(".out.partial-*")) == []


def _bad_folder(kind, folders, tmp_path):
    bad = tmp_path / kind
    if kind == "missing":
        return bad
    bad.mkdir()
    if kind == "empty":
        return bad
    sources = sorted((folders / "real").iterdir())
    for path in sources[:3]:
        shutil.copy(path, bad / path.name)
    if kind == "other_size":
        Image.new("L", (64, 64)).save(bad / "small.png")
    elif kind == "other_mode":
        Image.new("RGB", (128, 128)).save(bad / "rgb.png")
    elif kind == "all_other_size":
        for path in bad.iterdir():
            Image.open(path).resize((64, 64)).save(path)
    elif kind == "sixteen_bit":
        for path in bad.iterdir():
            Image.fromarray(np.zeros((128, 128), np.uint16)).save(path)
    return bad


@pytest.mark.parametrize("kind", ["missing", "empty", "other_size", "other_mode", "all_other_size", "sixteen_bit"])
def test_bad_folders_are_one_line_errors(kind, folders, tmp_path, random_weights_file, feature_cache_dir, capsys):
    bad = _bad_folder(kind, folders, tmp_path)
    config = write_config(tmp_path / "c.yaml", folders, feature_cache_dir, {"GRAF": bad})
    out = tmp_path / "out"
    assert run(config, out, random_weights_file) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmark: error: table2.methods.GRAF.knee")
    assert not out.exists()


def test_yaml_with_unknown_key_is_a_one_line_error(folders, tmp_path, random_weights_file, feature_cache_dir, capsys):
    config = write_config(tmp_path / "c.yaml", folders, feature_cache_dir, {"GRAF": folders / "noisy"},
                          kid_subset=10)
    assert run(config, tmp_path / "out", random_weights_file) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key(s) kid_subset" in err[0]
