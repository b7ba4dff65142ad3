"""Figures: per-view PSNR over the 72 angles, bar charts, contact sheets of renders vs truth."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from umed_common.atomic import atomic_path  # noqa: E402
from umed_common.protocol import N_VIEWS, VIEW_STEP_DEG  # noqa: E402

SHEET_VIEWS = 8  # columns of a contact sheet: the input view, then every 45 degrees from it


def _save(figure, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(figure)


def per_view_psnr(rows: pd.DataFrame, dataset: str, path: Path, convention: str = "paper",
                  from_input: bool = False) -> None:
    """Mean PSNR per view angle over patients, one line per method and one panel per input view.

    Fits from different input views are never averaged at one angle: there the copied input is exact for one
    and 90 deg off for the other, so the mixed curve would describe neither. from_input: count every view's
    angle from its fit's input view instead, so all fits line up in one panel."""
    subset = rows[(rows.dataset == dataset) & (rows.metric == "psnr") & (rows.convention == convention)]
    subset = subset.replace([np.inf], np.nan)  # the copied input equals its own view exactly
    if from_input:
        subset = subset.assign(view=(subset.view - subset.input_view) % N_VIEWS, panel=0)
    else:
        subset = subset.assign(panel=subset.input_view)
    panels = subset.groupby("panel")
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 3.3 * len(panels)), sharey=True, squeeze=False)
    for axis, (input_view, fits) in zip(axes[:, 0], panels):
        for method, group in fits.groupby("method", sort=False):
            curve = group.groupby("view")["value"].mean()
            axis.plot(curve.index * VIEW_STEP_DEG, curve.values, marker=".", markersize=3, label=method)
        axis.axvline(input_view * VIEW_STEP_DEG, color="gray", linestyle=":", linewidth=1)
        cases = len(fits[["patient", "input_view"]].drop_duplicates())
        where = ("counted from each fit's input view" if from_input else
                 f"input view {input_view} ({input_view * VIEW_STEP_DEG} deg, dotted)")
        axis.set(ylabel="PSNR (dB)", xlim=(-3, 358), xticks=range(0, 360, 45),
                 title=f"{dataset}: PSNR per view, {where}, mean over {cases} fit{'s' if cases != 1 else ''}")
    axes[-1, 0].set_xlabel("degrees from the input view" if from_input else "view angle (degrees)")
    axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def single_view_bars(summary: pd.DataFrame, dataset: str, path: Path, convention: str = "paper") -> None:
    """PSNR and SSIM per method: input view vs all views, with std error bars."""
    subset = summary[(summary.dataset == dataset) & (summary.convention == convention)]
    methods = list(subset.method.unique())
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("psnr", "ssim")):
        for offset, protocol in ((-0.2, "input_view"), (0.2, "all_views")):
            stats = subset[(subset.metric == metric) & (subset.protocol == protocol)].set_index("method")
            means = [stats["mean"].get(m, np.nan) for m in methods]
            means = [np.nan if np.isinf(v) else v for v in means]
            stds = [stats["std"].get(m, np.nan) for m in methods]
            axis.bar(np.arange(len(methods)) + offset, means, width=0.4, yerr=stds, label=protocol, capsize=3)
        axis.set_xticks(np.arange(len(methods)), methods, rotation=20, ha="right", fontsize=8)
        axis.set(title=f"{dataset}: {metric.upper()}", ylabel=metric.upper())
        axis.legend(fontsize=8)
    _save(figure, path)


def generative_bars(summary: pd.DataFrame, dataset: str, path: Path) -> None:
    """FID and KID per method (mean +- std over subsets)."""
    subset = summary[summary.dataset == dataset]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("fid", "kid")):
        stats = subset[subset.metric == metric]
        axis.bar(stats.method, stats["mean"], yerr=stats["std"], capsize=3)
        axis.set(title=f"{dataset}: {metric.upper()} (lower is better)", ylabel=metric.upper())
        axis.tick_params(axis="x", rotation=20)
    _save(figure, path)


def depth_margins(margins: pd.DataFrame, path: Path) -> None:
    """benchmark.depth_study: each patient's novel-view margin over its strongest baseline against the depth
    shift of the fitted patient (columns patient, shift_mm, margin_db)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for patient, group in margins.groupby("patient"):
        group = group.sort_values("shift_mm")
        axis.plot(group.shift_mm, group.margin_db, marker="o", label=patient)
    axis.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    axis.axvline(0.0, color="gray", linestyle=":", linewidth=1)
    axis.set(xlabel="fitted patient moved along the input view's central ray (mm); dotted: the product's render",
             ylabel="margin over the strongest baseline (dB)", title="What the unseen depth is worth (dashed: +1 dB)")
    axis.legend(fontsize=8)
    _save(figure, path)


def _row_label(label: str, width: int = 18) -> str:
    """A row's label in lines of at most `width` characters, broken after "baseline:": a line longer than the
    row is tall runs into the next row's label."""
    head, colon, rest = label.rpartition(": ")
    return head + colon.rstrip() + "\n" + textwrap.fill(rest, width) if colon else textwrap.fill(label, width)


def contact_sheet(truth: np.ndarray, present: np.ndarray, renders: dict[str, np.ndarray], input_view: int,
                  title: str, path: Path) -> None:
    """Rows: ground truth then each method; columns: the input view and every 45 degrees after it."""
    views = [(input_view + k * 72 // SHEET_VIEWS) % 72 for k in range(SHEET_VIEWS)]
    rows = [("ground truth", truth)] + list(renders.items())
    figure, axes = plt.subplots(len(rows), len(views), figsize=(1.4 * len(views), 1.5 * len(rows)), squeeze=False)
    for r, (label, stack) in enumerate(rows):
        for c, view in enumerate(views):
            axis = axes[r, c]
            missing = r == 0 and not present[view]
            axis.imshow(np.zeros_like(stack[view]) if missing else stack[view], cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([]), axis.set_yticks([])
            if r == 0:
                axis.set_title(f"{view * VIEW_STEP_DEG} deg" + (" (input)" if c == 0 else ""), fontsize=7)
            if c == 0:
                axis.set_ylabel(_row_label(label), fontsize=7)
    figure.suptitle(title, fontsize=9)
    _save(figure, path)


def generative_sheet(samples: dict[str, list[Path]], title: str, path: Path, per_row: int = 8) -> None:
    """A few images of each set, one row per set (real DRRs first)."""
    from umed_common.images import read_gray

    figure, axes = plt.subplots(len(samples), per_row, figsize=(1.4 * per_row, 1.5 * len(samples)), squeeze=False)
    for r, (label, paths) in enumerate(samples.items()):
        picks = [paths[i] for i in np.linspace(0, len(paths) - 1, per_row).astype(int)]
        for c, image_path in enumerate(picks):
            axes[r, c].imshow(read_gray(image_path), cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=7)
    figure.suptitle(title, fontsize=9)
    _save(figure, path)
