"""Write one table's results: tidy CSV, summary CSV, Markdown, plots, contact sheets, renders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from umed_common.atomic import atomic_path, write_text_atomic
from umed_common.outputs import inside
from umed_common.protocol import VIEW_STEP_DEG

from . import plots
from .config import SingleViewSpec
from .exports import (generative_markdown, novel_view_verdicts, single_view_markdown, summarise_generative,
                      summarise_single_view, verdict_markdown)
from .generative import GenerativeResult
from .single_view import BASELINES, SingleViewResult


def _csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name).strip("_")


def write_single_view(table: str, spec: SingleViewSpec, result: SingleViewResult, folder: Path) -> None:
    """<table>_scores.csv (tidy), _summary.csv, .md, plots/, contact_sheets/, renders/, finetune_history/."""
    summary = summarise_single_view(result.rows)
    _csv(result.rows.assign(table=table)[["table", *result.rows.columns]], inside(folder, f"{table}_scores.csv"))
    _csv(summary, inside(folder, f"{table}_summary.csv"))
    _csv(pd.DataFrame(result.jobs), inside(folder, f"{table}_finetune_jobs.csv"))
    markdown = single_view_markdown(table, summary, spec.methods, spec.conventions)
    verdicts = novel_view_verdicts(result.rows, BASELINES)
    if not verdicts.empty:
        _csv(verdicts, inside(folder, f"{table}_novel_views.csv"))
        markdown += "\n" + verdict_markdown(verdicts)
    write_text_atomic(inside(folder, f"{table}.md"), markdown)
    for dataset in spec.datasets:
        plots.per_view_psnr(result.rows, dataset, inside(folder, "plots", f"{table}_{dataset}_psnr_per_view.png"))
        plots.single_view_bars(summary, dataset, inside(folder, "plots", f"{table}_{dataset}_bars.png"))
    for (dataset, method, patient, view), history in result.histories.items():
        name = f"{table}_{dataset}_{_slug(method)}_{patient}_v{view:02d}.csv"
        _csv(history, inside(folder, "finetune_history", name))
    for (dataset, method, patient, view), renders in result.renders.items():
        path = inside(folder, "renders", table, dataset, f"{patient}_v{view:02d}", f"{_slug(method)}.npy")
        with atomic_path(path, suffix=".npy") as tmp:
            np.save(tmp, renders, allow_pickle=False)
    _contact_sheets(table, result, folder)


def _contact_sheets(table: str, result: SingleViewResult, folder: Path) -> None:
    cases = sorted({(d, p, v) for d, _, p, v in result.renders})
    for dataset, patient, view in cases:
        truth = result.truth[(dataset, patient)]
        renders = {m: r for (d, m, p, v), r in result.renders.items() if (d, p, v) == (dataset, patient, view)}
        plots.contact_sheet(truth.images, truth.present, renders, view,
                            f"{table} {dataset} patient {patient}, input view {view} ({view * VIEW_STEP_DEG} deg)",
                            inside(folder, "contact_sheets", f"{table}_{dataset}_{patient}_v{view:02d}.png"))


def write_generative(result: GenerativeResult, folder: Path) -> None:
    """table2_scores.csv (tidy, one row per repeat), _summary.csv, .md, plots/, contact_sheets/."""
    summary = summarise_generative(result.rows, result.sizes)
    _csv(result.rows.assign(table="table2")[["table", *result.rows.columns]], inside(folder, "table2_scores.csv"))
    _csv(summary, inside(folder, "table2_summary.csv"))
    write_text_atomic(inside(folder, "table2.md"), generative_markdown(summary, result.weights))
    for dataset in summary.dataset.unique():
        plots.generative_bars(summary[summary.metric != "fid_full"], dataset,
                              inside(folder, "plots", f"table2_{dataset}_bars.png"))
        sets = {"real DRRs": result.real_paths[dataset],
                **{m: p for (d, m), p in result.sample_paths.items() if d == dataset}}
        plots.generative_sheet(sets, f"table2 {dataset}: real vs generated",
                               inside(folder, "contact_sheets", f"table2_{dataset}.png"))
