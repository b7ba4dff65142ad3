"""Tables 1 and 3: scoring and baselines on real DRRs, then umed-bench --quick end to end
with a tiny checkpoint trained in the test (model/configs/tiny.yaml: a valid model, not results)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.exports import paper_single_view, single_view_markdown, summarise_single_view
from benchmark.single_view import PatientViews, copy_views, mean_training_views, score_rows
from umed_common.protocol import N_VIEWS


def fake_discovery(knee_dir):
    found = {}
    for path in sorted(knee_dir.glob("0[1-3]_xray00[0-1]?.png")):
        patient, view = path.name[:2], int(path.stem[-4:])
        found.setdefault(patient, {})[view] = path
    return found


def test_mean_training_image_uses_only_training_patients(knee_dir):
    discovered = fake_discovery(knee_dir)
    mean = mean_training_views(discovered, ("03",), (32, 32))
    assert mean.images.shape == (N_VIEWS, 32, 32)
    # knee patient 01 lacks view 7, so view 7 comes from patient 02 alone; views >= 20 are absent here.
    assert mean.present[:20].all() and not mean.present[20:].any()
    assert mean_training_views(discovered, ("01", "02", "03"), (32, 32)) is None


def test_copy_baselines_mirror_only_beyond_90_degrees():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    plain, mirrored = copy_views(image, 70, False), copy_views(image, 70, True)
    assert (plain == image).all()
    # view 70 is the input: views 52..88 (mod 72) lie within 90 deg of it, 17..51 beyond
    near, far = [52, 70, 0, 16], [17, 34, 51]
    assert (mirrored[near] == image).all() and (mirrored[far] == image[:, ::-1]).all()


def test_scores_skip_missing_views_and_summary_handles_inf():
    rng = np.random.default_rng(0)
    truth = PatientViews(rng.integers(0, 256, (N_VIEWS, 16, 16)).astype(np.uint8), np.ones(N_VIEWS, bool))
    truth.present[[7, 25]] = False
    copied = np.repeat(truth.images[3][None], N_VIEWS, axis=0)
    rows = pd.DataFrame(score_rows(copied, truth, ("paper",), dataset="knee", method="copy",
                                   patient="04", input_view=3))
    assert len(rows) == 2 * (N_VIEWS - 2) and not set(rows.view) & {7, 25}
    summary = summarise_single_view(rows).set_index(["metric", "protocol"])
    assert summary.loc[("psnr", "input_view"), "n_inf"] == 1
    assert summary.loc[("psnr", "input_view"), "mean"] == np.inf
    assert np.isfinite(summary.loc[("psnr", "all_views"), "mean"])
    assert summary.loc[("psnr", "all_views"), "n"] == N_VIEWS - 2
    assert summary.loc[("ssim", "input_view"), "mean"] == pytest.approx(1.0)
    markdown = single_view_markdown("table1", summary.reset_index(), {"copy": "learned"}, ("paper",))
    assert "| knee | copy | - | inf |" in markdown


def test_paper_values_lookup():
    assert paper_single_view("table1", "UMedNeRF", "learned", "knee") == {"psnr": 31.62, "ssim": 0.723}
    assert paper_single_view("table3", "any name", (0.4, 0.6), "knee") == {"psnr": 31.26, "ssim": 0.70}
    assert paper_single_view("table3", "x", "learned", "knee")["psnr"] == 31.62
    assert paper_single_view("table1", "GIRAFFE", "learned", "knee") == {}
    assert paper_single_view("table3", "renders made elsewhere", None, "knee") == {}


@pytest.fixture(scope="module")
def tiny_checkpoint(knee_dir, tmp_path_factory):
    api = pytest.importorskip("model.api", reason="model.api is not available")
    out = tmp_path_factory.mktemp("tiny_model")
    return api.train("tiny", knee_dir, out, holdout=["04"], device="cpu", seed=0, progress=False)


@pytest.mark.slow
def test_tables_1_and_3_quick_end_to_end(knee_dir, tiny_checkpoint, tmp_path):
    from benchmark.cli import main

    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "datasets": {"knee": {"data_dir": str(knee_dir), "checkpoint": str(tiny_checkpoint),
                              "eval_patients": ["04", "01"], "input_views": [0, 36]}},
        # One fine-tune per table keeps this under a minute: fixed weights in table 3, learned in table 1.
        "table1": {"datasets": ["knee"], "methods": {"UMedNeRF": "learned"}, "max_iters": 2},
        "table3": {"datasets": "knee", "methods": {"0.6/0.4": [0.6, 0.4]},
                   "baselines": False, "max_iters": 2}}))
    for table in ("1", "3"):
        out = tmp_path / f"table{table}"
        assert main(["--table", table, "--config", str(config), "--out", str(out), "--quick",
                     "--device", "cpu", "--no-progress"]) == 0
        scores = pd.read_csv(out / f"table{table}_scores.csv", dtype={"patient": str})
        assert set(scores.patient) == {"04"} and set(scores.input_view) == {0}  # --quick: first case only
        record = json.loads((out / "run.json").read_text())
        assert record["quick"] is True and record["effective_config"][f"table{table}"]["finetune"]["max_iters"] == 2
        assert (out / f"table{table}.md").is_file() and (out / f"table{table}_summary.csv").is_file()
        assert (out / "plots" / f"table{table}_knee_psnr_per_view.png").is_file()
        assert (out / "contact_sheets" / f"table{table}_knee_04_v00.png").is_file()
    table1 = pd.read_csv(tmp_path / "table1" / "table1_scores.csv")
    assert set(table1.method) == {"UMedNeRF", "baseline: input copied", "baseline: mean training image",
                                  "baseline: input, mirrored on the far side"}
    assert len(table1[(table1.method == "UMedNeRF") & (table1.metric == "psnr")]) == N_VIEWS
    history = pd.read_csv(tmp_path / "table1" / "finetune_history" / "table1_knee_UMedNeRF_04_v00.csv")
    assert {"sigma_1", "sigma_2", "psnr"} <= set(history.columns)


def test_contact_sheet_row_labels_fit_their_row():
    from benchmark.plots import _row_label
    from benchmark.single_view import BASELINE_MIRROR

    label = _row_label(BASELINE_MIRROR)
    assert label.startswith("baseline:\n") and label.replace("\n", " ") == BASELINE_MIRROR
    assert max(len(line) for line in label.splitlines()) <= 18
    assert _row_label("ground truth") == "ground truth"


def write_views(folder, images):
    from umed_common.images import write_png
    from umed_common.protocol import view_file_name
    for view, image in enumerate(images):
        write_png(folder / view_file_name(view), image)


def test_rendered_methods_are_scored_as_read(tmp_path, capsys):
    """Renders made elsewhere: the truth itself scores inf at every view, the input copied scores exactly
    what the copy baseline does, and no checkpoint is needed."""
    from benchmark.cli import main
    from umed_common.images import write_png
    from umed_common.protocol import view_file_name

    rng = np.random.default_rng(0)
    truth = {p: rng.integers(0, 256, (N_VIEWS, 16, 16)).astype(np.uint8) for p in ("01", "02", "03")}
    data = tmp_path / "drr"
    data.mkdir()
    for patient, images in truth.items():
        for view, image in enumerate(images):
            write_png(data / f"{patient}_{view_file_name(view)}", image)
    write_views(tmp_path / "exact" / "03_v5", truth["03"])
    write_views(tmp_path / "copied" / "03" / "5", np.repeat(truth["03"][5][None], N_VIEWS, axis=0))
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "datasets": {"knee": {"data_dir": str(data), "eval_patients": ["03"], "input_views": [5]}},
        "table1": {"datasets": ["knee"], "rendered": {
            "exact": {"knee": str(tmp_path / "exact" / "{patient}_v{view}")},
            "copied": {"knee": str(tmp_path / "copied" / "{patient}" / "{view}")}}}}))
    out = tmp_path / "out"
    assert main(["--table", "1", "--config", str(config), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    scores = pd.read_csv(out / "table1_scores.csv", dtype={"patient": str})
    psnr = scores[scores.metric == "psnr"].pivot_table(index="view", columns="method", values="value")
    assert len(psnr) == N_VIEWS and np.isinf(psnr["exact"]).all()
    assert np.array_equal(psnr["copied"], psnr["baseline: input copied"])
    assert (out / "contact_sheets" / "table1_knee_03_v05.png").is_file()

    (tmp_path / "copied" / "03" / "5" / view_file_name(40)).unlink()
    code = main(["--table", "1", "--config", str(config), "--out", str(tmp_path / "out2"), "--device", "cpu",
                 "--no-progress"])
    assert code != 0 and "lacks xray0040.png" in capsys.readouterr().err
