"""umed-demo (demo/cli.py) and its report (demo/report.py)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest

from demo import cli as demo
from demo import report as demo_report
from benchmark.config import parse_config
from benchmark.single_view import BASELINE_COPY, BASELINE_MEAN, BASELINE_MIRROR
from umed_common.errors import UserError

SETTINGS = demo.DemoSettings(seed=3, phantoms=5, phantom_size=48, drr_size=32, device="cpu", config="tiny",
                             train_iters=2, finetune_iters=2)


def test_plan_holds_out_the_last_phantoms_and_names_real_commands():
    stages = demo.plan(SETTINGS)
    assert [s.name for s in stages] == ["phantoms", "drr", "train", "finetune_phantom04", "finetune_phantom05",
                                        "bench"]
    train = demo.shown(stages[2].command)
    assert train.startswith("umed-train --config tiny --data drr --out train")
    assert "--holdout phantom04 phantom05" in train and "--max-iters 2" in train
    assert "--xray drr/phantom05_xray0000.png" in demo.shown(stages[4].command)
    assert demo.shown(stages[5].command).startswith("umed-bench --table 1 --config bench.yaml")


def test_held_out_pair_is_the_7th_and_8th_phantom_at_any_larger_population():
    assert replace(SETTINGS, phantoms=8).held_out() == ["phantom07", "phantom08"]
    assert replace(SETTINGS, phantoms=22).held_out() == ["phantom07", "phantom08"]
    assert replace(SETTINGS, phantoms=7).held_out() == ["phantom06", "phantom07"]
    train = demo.shown(demo.plan(replace(SETTINGS, phantoms=22))[2].command)
    assert "--holdout phantom07 phantom08 " in train


def test_more_held_out_phantoms_are_the_development_protocol():
    six = replace(SETTINGS, phantoms=40, held_out_count=6)
    assert six.held_out() == [f"phantom{i:02d}" for i in range(7, 13)]
    stages = demo.plan(six)
    assert "--holdout phantom07 phantom08 phantom09 phantom10 phantom11 phantom12 " in demo.shown(stages[2].command)
    assert [s.name for s in stages[3:9]] == [f"finetune_phantom{i:02d}" for i in range(7, 13)]
    assert demo.bench_config(six)["datasets"]["phantoms"]["eval_patients"] == six.held_out()
    assert replace(SETTINGS, phantoms=5, held_out_count=3).held_out() == ["phantom03", "phantom04", "phantom05"]


@pytest.mark.parametrize("argv, message", [(["--held-out", "0"], "--held-out 0: need at least 1"),
                                           (["--phantoms", "8", "--held-out", "7"], "--phantoms 8: need at least 9")])
def test_held_out_count_is_checked(argv, message):
    with pytest.raises(UserError, match=message):
        demo.settings_from(demo.parse_args(argv))


def test_sheets_draw_the_held_out_phantoms_and_the_first_training_ones():
    names = [f"phantom{i:02d}" for i in range(1, 23)]
    drawn = demo_report.figure_names(names, ["phantom07", "phantom08"])
    assert drawn == [f"phantom{i:02d}" for i in range(1, 9)]
    assert demo_report.figure_names(names[:4], ["phantom03", "phantom04"]) == names[:4]
    assert demo_report.figure_names(names, ["phantom21", "phantom22"]) == names[:6] + ["phantom21", "phantom22"]


def test_bench_config_is_valid_for_umed_bench():
    config = parse_config(demo.bench_config(SETTINGS))
    dataset = config.datasets["phantoms"]
    assert dataset.eval_patients == ("phantom04", "phantom05") and dataset.input_views == (0,)
    assert config.table1.methods == {"MedNeRF weights": (0.3, 0.1)}
    # the learned-weights row scores the views the umed-finetune stages write, not a fit of its own
    template = config.table1.rendered["learned weights"]["phantoms"]
    finetunes = {stage.name: stage.command for stage in demo.plan(SETTINGS) if stage.name.startswith("finetune_")}
    for name in SETTINGS.held_out():
        argv = finetunes[f"finetune_{name}"]
        assert template.format(patient=name, view=0) == argv[argv.index("--out") + 1] + "/views"
    assert config.seed == 3


def test_output_folder_rules(tmp_path):
    demo.prepare_out(tmp_path, SETTINGS, overwrite=False)
    demo.prepare_out(tmp_path, SETTINGS, overwrite=False)  # same settings: resume
    with pytest.raises(UserError, match="other settings \\(seed\\)"):
        demo.prepare_out(tmp_path, replace(SETTINGS, seed=4), overwrite=False)
    (tmp_path / "drr").mkdir()
    (tmp_path / "mine.txt").write_text("not the demo's")
    demo.prepare_out(tmp_path, replace(SETTINGS, seed=4), overwrite=True)
    assert not (tmp_path / "drr").exists() and (tmp_path / "mine.txt").exists()
    assert json.loads((tmp_path / "demo.json").read_text())["seed"] == 4

    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="not from a demo run"):
        demo.prepare_out(foreign, SETTINGS, overwrite=False)


def test_a_run_made_before_held_out_count_existed_resumes_with_its_default(tmp_path):
    earlier = {k: v for k, v in asdict(SETTINGS).items() if k != "held_out_count"}
    (tmp_path / "demo.json").write_text(json.dumps(earlier))
    demo.prepare_out(tmp_path, SETTINGS, overwrite=False)
    (tmp_path / "demo.json").write_text(json.dumps(earlier))
    with pytest.raises(UserError, match="other settings \\(held_out_count\\)"):
        demo.prepare_out(tmp_path, replace(SETTINGS, held_out_count=3), overwrite=False)


def test_finished_stage_is_skipped_only_for_the_same_commands(tmp_path):
    stage = demo.plan(SETTINGS)[1]
    assert demo.finished_record(stage, tmp_path) is None
    record = {"name": "drr", "command": demo.shown(stage.command), "planned": stage.planned, "seconds": 1.0}
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "drr.json").write_text(json.dumps(record))
    assert demo.finished_record(stage, tmp_path) == record
    other = demo.plan(replace(SETTINGS, device="cuda"))[1]
    assert demo.finished_record(other, tmp_path) is None


def test_interrupted_training_resumes_and_other_partial_output_is_discarded(tmp_path):
    train, drr = demo.plan(SETTINGS)[2], demo.plan(SETTINGS)[1]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "model.pt").write_bytes(b"checkpoint")
    (tmp_path / "drr").mkdir()
    (tmp_path / "drr" / "phantom01_xray0000.png").write_bytes(b"half a run")
    demo.discard_partial(train, tmp_path)
    demo.discard_partial(drr, tmp_path)
    assert train.command[-1] == "--resume" and "--resume" not in train.planned
    assert (tmp_path / "train" / "model.pt").exists() and not (tmp_path / "drr").exists()


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--phantoms", "3"]) == 2
    assert demo.main(["--out", str(tmp_path), "--config", str(tmp_path / "none.yaml")]) == 2
    assert demo.main(["--out", str(tmp_path), "--train-iters", "0"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all("error:" in line for line in errors)
    assert not (tmp_path / "demo.json").exists()


def _scores(psnr_novel: dict[tuple[str, str], float], ssim_novel: float = 0.5) -> pd.DataFrame:
    """Tidy rows as score_held_out writes them: view 0 is the input, views 1 and 2 novel."""
    rows = [{"dataset": demo_report.DATASET, "method": method, "patient": patient, "input_view": 0, "view": view,
             "convention": "paper", "metric": metric, "value": value}
            for (method, patient), psnr in psnr_novel.items() for view in range(3)
            for metric, value in (("psnr", 40.0 if view == 0 else psnr),
                                  ("ssim", 0.9 if view == 0 else ssim_novel + (method == demo_report.MODEL) / 10))]
    return pd.DataFrame(rows)


def test_verdict_is_the_benchmarks_against_the_strongest_baseline_per_phantom():
    methods = [demo_report.MODEL, BASELINE_COPY, BASELINE_MIRROR, BASELINE_MEAN]
    psnr = dict(zip([(m, p) for p in "ab" for m in methods], [21.0, 18.0, 19.5, 12.0, 19.0, 18.0, 19.2, 12.0]))
    beats, sentence = demo_report.verdict(_scores(psnr))
    assert not beats and "does NOT beat" in sentence
    assert "it does on 1 of 2 (" in sentence
    assert "b: 19.00 vs 19.20 dB (copy, mirrored far side), ahead of every baseline at 0 of 2 novel views in " \
           "PSNR and 2 in SSIM" in sentence
    beats, _ = demo_report.verdict(_scores({**psnr, (demo_report.MODEL, "b"): 20.3}))
    assert beats
    beats, _ = demo_report.verdict(_scores({**psnr, (demo_report.MODEL, "b"): 19.9}))
    assert not beats  # ahead by 0.7 dB: under umed-bench's 1 dB margin


def test_summary_separates_input_and_novel_views():
    rows = pd.DataFrame([{"method": "m", "patient": "p", "view": v, "metric": metric, "value": value}
                         for v in range(4) for metric, value in (("psnr", 10.0 + v), ("ssim", 0.1 * v))])
    summary = demo_report.summarise(rows, input_view=0).iloc[0]
    assert summary.psnr_input == 10.0 and summary.psnr_novel == pytest.approx(12.0)
    assert summary.ssim_input == 0.0 and summary.ssim_novel == pytest.approx(0.2)


def test_markdown_and_html_render_the_same_blocks():
    blocks = demo_report.markdown_to_blocks("# Title\n\n| a | b |\n|---|---|\n| 1 | `x<y` |\n\nsome **text**\n")
    assert blocks == [("h3", "Title"), ("table", ["a", "b"], [["1", "`x<y`"]]), ("p", "some **text**")]
    blocks.append(("img", "report_files/p.png", "a picture"))
    markdown, page = demo_report.to_markdown(blocks), demo_report.to_html(blocks)
    assert "| 1 | `x<y` |" in markdown and "![a picture](report_files/p.png)" in markdown
    assert "<code>x&lt;y</code>" in page and "<strong>text</strong>" in page
    assert '<img src="report_files/p.png"' in page


@pytest.mark.slow
def test_reduced_demo_end_to_end(tmp_path, capsys):
    """4 small phantoms, the tiny model config, 2 iterations: every stage runs and the report holds together."""
    out = tmp_path / "demo"
    args = ["--out", str(out), "--device", "cpu", "--phantoms", "4", "--phantom-size", "32", "--drr-size", "32",
            "--config", "tiny",
            "--train-iters", "2", "--finetune-iters", "2", "--seed", "1"]
    assert demo.main(args) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in printed
    for name in ("phantoms", "drr", "train", "finetune_phantom03", "finetune_phantom04", "bench"):
        record = json.loads((out / "stages" / f"{name}.json").read_text())
        assert record["command"] and record["seconds"] > 0 and record["cpu_s"] > 0
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (out / link).is_file(), link
        assert f'src="{link}"' in page
    assert "umed-train --config tiny --data drr --out train --holdout phantom03 phantom04" in markdown
    assert "baseline: input copied" in markdown
    summary = pd.read_csv(out / "report_files" / "held_out_summary.csv")
    assert set(summary.patient) == {"phantom03", "phantom04"} and len(summary) == 8

    before = summary.to_dict()
    assert demo.main(args) == 0  # a rerun skips every stage and rebuilds the same report
    assert printed.count("finished earlier") == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 6
    assert pd.read_csv(out / "report_files" / "held_out_summary.csv").to_dict() == before
