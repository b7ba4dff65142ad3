"""The demo's report: one Markdown file and its HTML twin, pictures by relative path.

Reads what the demo's stages wrote below --out (phantoms, DRRs, training,
fine-tuning, benchmark) and adds what a reader needs to judge the result:
phantom slices, a DRR contact sheet, renders beside ground truth and the two
baselines, per-view PSNR over the 72 angles, and the novel-view scores of every
held-out phantom. The report is a list of blocks rendered twice (Markdown and
HTML), so the two never disagree.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from benchmark.exports import novel_view_verdicts
from benchmark.plots import contact_sheet, per_view_psnr
from benchmark.single_view import (BASELINE_COPY, BASELINE_MEAN, BASELINE_MIRROR, BASELINES, baseline_views,
                                   load_patient, mean_training_views, score_rows)
from drr.volume_io import discover_cases, load_case
from model.api import discover_drr_images, sample_images
from umed_common.atomic import atomic_path, write_text_atomic
from umed_common.errors import UserError
from umed_common.images import read_gray
from umed_common.protocol import N_VIEWS, VIEW_STEP_DEG, view_file_name

from .phantoms import phantom_name

MODEL = "model (umed-finetune)"
DATASET = "phantoms"
DRR_SHEET_VIEWS = (0, 9, 18, 27, 36, 54)  # 0, 45, 90, 135, 180 and 270 degrees
WINDOW_HU = (-200.0, 1500.0)  # soft tissue to cortex
FIGURE_PHANTOMS = 8  # phantoms drawn in the phantom and DRR sheets
SHORT_LABELS = {MODEL: "model", BASELINE_COPY: "copy input", BASELINE_MIRROR: "copy, mirrored far side",
                BASELINE_MEAN: "mean training"}
FILES = "report_files"
VIEW_FILE = re.compile(r"(\d{4})\.png$")

Block = tuple  # ("h1"|"h2"|"p"|"pre", text) | ("img", path, alt) | ("table", header, rows)


def rendered_views(folder: Path) -> dict[int, Path]:
    """The 72 rendered views umed-finetune wrote below `folder` (names ending in KKKK.png)."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.rglob("*.png")):
        match = VIEW_FILE.search(path.name)
        if match:
            found.setdefault(str(path.parent), {})[int(match.group(1))] = path
    complete = [views for views in found.values() if set(views) >= set(range(N_VIEWS))]
    if not complete:
        raise UserError(f"{folder}: no complete set of {N_VIEWS} rendered views (…0000.png to …0071.png)")
    return {k: complete[0][k] for k in range(N_VIEWS)}


def score_held_out(out: Path, held_out: Sequence[str], input_view: int) -> tuple[pd.DataFrame, dict]:
    """Tidy PSNR/SSIM rows of the model and both baselines for every held-out phantom.

    Returns (rows, images) with images[(method, patient)] = (72, H, W) uint8.
    """
    discovered = discover_drr_images(out / "drr")
    first = rendered_views(out / "finetune" / held_out[0])
    size = np.asarray(read_gray(first[0])).shape
    mean_views = mean_training_views(discovered, tuple(held_out), size)
    rows, images = [], {}
    for patient in held_out:
        truth = load_patient(discovered[patient], size)
        renders = np.stack([read_gray(p) for p in rendered_views(out / "finetune" / patient).values()])
        candidates = {MODEL: renders, **baseline_views(truth, input_view, mean_views)}
        for method, stack in candidates.items():
            images[(method, patient)] = stack
            rows += score_rows(stack, truth, ("paper",), dataset=DATASET, method=method, patient=patient,
                               input_view=input_view)
        images[("ground truth", patient)] = truth.images
    return pd.DataFrame(rows), images


def summarise(rows: pd.DataFrame, input_view: int) -> pd.DataFrame:
    """Mean PSNR/SSIM over the novel views (all but the input) and at the input view, per method and phantom."""
    novel = rows[rows.view != input_view].groupby(["method", "patient", "metric"]).value.mean()
    at_input = rows[rows.view == input_view].groupby(["method", "patient", "metric"]).value.mean()
    table = pd.DataFrame({"novel": novel, "input": at_input}).unstack("metric")
    table.columns = [f"{metric}_{where}" for where, metric in table.columns]
    return table.reset_index()


def verdict(rows: pd.DataFrame) -> tuple[bool, str]:
    """Does the model win against the strongest baseline (per phantom) on the novel views of every held-out
    phantom? A win as umed-bench counts it (benchmark.exports.novel_view_verdicts)."""
    verdicts = novel_view_verdicts(rows, BASELINES)
    model = verdicts[verdicts.method == MODEL]
    parts = ", ".join(f"{r.patient}: {r.psnr_novel:.2f} vs {r.baseline_psnr:.2f} dB "
                      f"({SHORT_LABELS[r.strongest_baseline]}), ahead of every baseline at {r.views_psnr_ahead} "
                      f"of {r.novel_views} novel views in PSNR and {r.views_ssim_ahead} in SSIM"
                      for r in model.itertuples())
    beats = bool(len(model)) and bool(model.wins.all())
    claim = "beats" if beats else "does NOT beat"
    count = "" if beats else f"; it does on {int(model.wins.sum())} of {len(model)}"
    return beats, (f"Novel-view PSNR of the model {claim} the strongest baseline on every held-out "
                   f"phantom by at least 1 dB with a higher SSIM{count} ({parts}).")


def stage_blocks(records: Sequence[dict]) -> list[Block]:
    rows = [[r["name"], f"`{r['command']}`", f"{r['seconds']:.1f}", f"{r['cpu_s']:.1f}"] for r in records]
    total, total_cpu = sum(r["seconds"] for r in records), sum(r["cpu_s"] for r in records)
    return [("h2", "Commands run"),
            ("p", f"Each stage is the real console command, run in the output folder; logs in `logs/`. "
                  f"Total {total:.0f} s wall-clock ({total / 60:.1f} min), {total_cpu:.0f} s of CPU time "
                  "(CPU time above wall time: several cores busy; below: a shared or waiting machine)."),
            ("table", ["stage", "command", "wall s", "CPU s"], rows)]


def gallery(out: Path, folder: Path, title: str) -> list[Block]:
    """The pictures a stage wrote at the top of `folder` (contact sheets, GIFs, plots)."""
    pictures = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".gif"))
    return [("img", p.relative_to(out).as_posix(), f"{title}: {p.name}") for p in pictures]


def bench_blocks(out: Path) -> list[Block]:
    """umed-bench's own Markdown table(s), carried over."""
    tables = sorted((out / "bench").rglob("*.md"))
    blocks: list[Block] = [("h2", "Benchmark table 1 (umed-bench --table 1)")]
    if not tables:
        return blocks + [("p", "(umed-bench wrote no Markdown table)")]
    for path in tables:
        blocks += [("p", f"From `{path.relative_to(out).as_posix()}`:")] + markdown_to_blocks(path.read_text("utf-8"))
        blocks += gallery(out, path.parent, "benchmark")
    return blocks


def markdown_to_blocks(text: str) -> list[Block]:
    """Headings, pipe tables and paragraphs of a simple Markdown text as blocks."""
    blocks: list[Block] = []
    table: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set(":- ") for c in cells):
                table.append(cells)
            continue
        if table:
            blocks.append(("table", table[0], table[1:]))
            table = []
        if line.startswith("#"):
            blocks.append(("h3", line.lstrip("#").strip()))
        elif line.strip():
            blocks.append(("p", line.strip()))
    return blocks


def write_report(out: Path, settings: dict, held_out: Sequence[str], input_view: int,
                 records: Sequence[dict]) -> Path:
    """Write out/report.md and out/report.html (figures in out/report_files/); returns the .md path."""
    files = out / FILES
    files.mkdir(exist_ok=True)
    rows, images = score_held_out(out, held_out, input_view)
    with atomic_path(files / "held_out_scores.csv") as tmp:
        rows.to_csv(tmp, index=False)
    summary = summarise(rows, input_view)
    with atomic_path(files / "held_out_summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    beats, sentence = verdict(rows)
    drawn = figure_names(settings_names(settings), held_out)
    phantom_figure(out / "phantoms", drawn, held_out, files / "phantoms.png")
    drr_sheet_figure(out / "drr", drawn, held_out, files / "drrs.png")
    per_view_psnr(rows, DATASET, files / "psnr_per_view.png")
    training_figure(out / "train", settings["device"], settings["seed"], files / "training.png")
    for patient in held_out:
        renders = {label: images[(m, patient)] for m, label in SHORT_LABELS.items()}
        truth = images[("ground truth", patient)]
        contact_sheet(truth, np.ones(N_VIEWS, dtype=bool), renders, input_view,
                      f"held-out {patient}: fine-tuned on view {input_view}", files / f"compare_{patient}.png")
    blocks = report_blocks(out, settings, held_out, input_view, records, summary, sentence)
    write_text_atomic(out / "report.md", to_markdown(blocks))
    write_text_atomic(out / "report.html", to_html(blocks))
    return out / "report.md"


def figure_names(names: Sequence[str], held_out: Sequence[str]) -> list[str]:
    """The phantoms the two sheets draw, in order: every held-out one and the first training ones,
    FIGURE_PHANTOMS in all (a sheet of every phantom of a large population is too big to read)."""
    training = [name for name in names if name not in held_out][:max(FIGURE_PHANTOMS - len(held_out), 0)]
    return [name for name in names if name in held_out or name in training]


def phantom_figure(folder: Path, names: Sequence[str], held_out: Sequence[str], path: Path) -> None:
    """Central coronal and sagittal slice of the named phantoms, read back through drr's volume reader."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cases = sorted((case for case in discover_cases(folder)[0] if case.case_id in names),
                   key=lambda case: case.case_id)
    figure, axes = plt.subplots(2, len(cases), figsize=(1.5 * len(cases), 3.4), squeeze=False,
                                layout="constrained")
    for column, case in enumerate(cases):
        hu = load_case(case).hu
        slices = (hu[::-1, hu.shape[1] // 2, :], hu[::-1, :, hu.shape[2] // 2])  # superior up
        for row, (image, view) in enumerate(zip(slices, ("coronal", "sagittal"))):
            axes[row, column].imshow(image, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1])
            axes[row, column].set_xticks([]), axes[row, column].set_yticks([])
            if column == 0:
                axes[row, column].set_ylabel(view, fontsize=7)
        mark = " (held out)" if case.case_id in held_out else ""
        kind = "DICOM series" if case.kind == "dicom" else "NIfTI"
        axes[0, column].set_title(f"{case.case_id}{mark}\n{kind}", fontsize=6)
    figure.suptitle(f"phantoms, HU window {WINDOW_HU[0]:.0f}..{WINDOW_HU[1]:.0f}", fontsize=8)
    _save(figure, path)


def drr_sheet_figure(folder: Path, names: Sequence[str], held_out: Sequence[str], path: Path) -> None:
    """DRRs of the named phantoms (rows) at a few angles (columns)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(len(names), len(DRR_SHEET_VIEWS),
                                figsize=(1.4 * len(DRR_SHEET_VIEWS), 1.45 * len(names)), squeeze=False,
                                layout="constrained")
    for row, name in enumerate(names):
        for column, view in enumerate(DRR_SHEET_VIEWS):
            axis = axes[row, column]
            axis.imshow(read_gray(folder / f"{name}_{view_file_name(view)}"), cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([]), axis.set_yticks([])
            if row == 0:
                axis.set_title(f"{view * VIEW_STEP_DEG:g} deg", fontsize=7)
        axes[row, 0].set_ylabel(name + ("\n(held out)" if name in held_out else ""), fontsize=6)
    figure.suptitle("DRRs (drr-generate, knee preset)", fontsize=8)
    _save(figure, path)


def _calibration_bars(axis, calibration: dict) -> None:
    """Mean novel-view PSNR of the left-out training fits (chosen setting) beside the trivial answers."""
    fits = calibration["fits"][str(calibration["chosen_pose_prior"])]
    keys = [k for k in ("novel_view_psnr", "baseline_copy", "baseline_mirror", "baseline_mean") if k in fits[0]]
    means = [float(np.mean([f[k] for f in fits])) for k in keys]
    axis.bar(range(len(keys)), means, color=["tab:blue"] + ["tab:gray"] * (len(keys) - 1))
    axis.set_xticks(range(len(keys)), [k.replace("baseline_", "").replace("novel_view_psnr", "model") for k in keys])
    axis.set(ylabel="PSNR dB (novel views)", title="calibration: training phantoms left out in turn")


def training_figure(train: Path, device: str, seed: int, path: Path) -> None:
    """umed-train's losses over iterations, and eight samples of the trained generator (random z and pose)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    samples = sample_images(train / "model.pt", 8, device=device, seed=seed, progress=False)
    figure = plt.figure(figsize=(11, 3.2), layout="constrained")
    top, bottom = figure.subfigures(1, 2, width_ratios=(1, 1.6))
    axis = top.subplots()
    if (train / "log.csv").is_file():   # GAN runs log losses per iteration
        log = pd.read_csv(train / "log.csv")
        for column in ("loss_d", "loss_g", "loss_recon"):
            if column in log:
                axis.plot(log.iteration, log[column], label=column)
        axis.set(xlabel="iteration", title="training losses")
        axis.legend(fontsize=7)
        title = "generator samples (random z and pose)"
    else:                                # physical runs calibrate on left-out training patients
        _calibration_bars(axis, json.loads((train / "calibration.json").read_text()))
        title = "DRRs of the trained atlas (training phantoms, random views)"
    for axis, image in zip(bottom.subplots(2, 4).ravel(), samples):
        axis.imshow(image, cmap="gray", vmin=0, vmax=255)
        axis.set_xticks([]), axis.set_yticks([])
    bottom.suptitle(title, fontsize=9)
    _save(figure, path)


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(figure)


def settings_names(settings: dict) -> list[str]:
    return [phantom_name(i) for i in range(settings["phantoms"])]


def report_blocks(out: Path, settings: dict, held_out: Sequence[str], input_view: int, records: Sequence[dict],
                  summary: pd.DataFrame, sentence: str) -> list[Block]:
    names = ", ".join(held_out)
    table_rows = [[r.method, r.patient, f"{r.psnr_novel:.2f}", f"{r.ssim_novel:.3f}", f"{r.psnr_input:.2f}",
                   f"{r.ssim_input:.3f}"] for r in summary.itertuples()]
    angles = ", ".join(f"{v * VIEW_STEP_DEG:g}°" for v in DRR_SHEET_VIEWS)
    return [
        ("h1", "umed-demo report"),
        ("p", "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()) + "."),
        ("p", f"**{sentence}**"),
        ("h2", "Held-out phantoms: novel views"),
        ("p", f"Fine-tuned on view {input_view} ({input_view * VIEW_STEP_DEG:g}°) of each held-out phantom ({names}), scored on "
              f"the other {N_VIEWS - 1} views (novel) and on the input view, PSNR dB / SSIM on min-max "
              "normalised 8-bit images. Baselines: the input copied to every view; the input copied and "
              "mirrored left-right beyond 90 degrees; the mean training image of each view."),
        ("table", ["method", "phantom", "PSNR novel", "SSIM novel", "PSNR input", "SSIM input"], table_rows),
        ("img", f"{FILES}/psnr_per_view.png", "PSNR per view angle"),
        *[("img", f"{FILES}/compare_{p}.png", f"{p}: ground truth, model and baselines") for p in held_out],
        ("p", f"Scores per view: `{FILES}/held_out_scores.csv`; summary: `{FILES}/held_out_summary.csv`."),
        ("h2", "Fine-tuning outputs (umed-finetune)"),
        *[b for p in held_out for b in gallery(out, out / "finetune" / p, p)],
        *bench_blocks(out),
        ("h2", "Data: procedural knee phantoms and their DRRs"),
        ("img", f"{FILES}/phantoms.png", "Phantom slices (coronal and sagittal, HU -200..1500)"),
        ("p", f"DRRs at {angles}; held-out phantoms marked."),
        ("img", f"{FILES}/drrs.png", "DRR contact sheet"),
        ("h2", "Training (umed-train)"),
        ("img", f"{FILES}/training.png", "training losses and generator samples"),
        *gallery(out, out / "train", "training"),
        *stage_blocks(records),
    ]


def to_markdown(blocks: Sequence[Block]) -> str:
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the report uses: **bold** and `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def to_html(blocks: Sequence[Block]) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "img":
            body.append(f'<figure><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(str(c))}</th>" for c in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>"
                           for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:3px 8px}"
             "img{max-width:100%}figure{margin:1em 0}code{background:#eee;font-size:90%}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>umed-demo report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
