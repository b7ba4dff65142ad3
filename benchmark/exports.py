"""Tidy CSVs, summaries and Markdown tables with the paper's values beside ours."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .config import LossWeights

SUMMARY_KEYS_SINGLE = ["dataset", "method", "convention", "metric", "protocol"]


def paper_values() -> dict:
    """The paper's Tables 1-3 (benchmark/paper_values.yaml, shipped as package data)."""
    return yaml.safe_load((Path(__file__).with_name("paper_values.yaml")).read_text(encoding="utf-8"))


def _finite_stats(values: pd.Series) -> pd.Series:
    """mean/std (population) over finite values; identical images (PSNR inf) are counted apart."""
    finite = values[np.isfinite(values)]
    return pd.Series({"mean": finite.mean() if len(finite) else (math.inf if len(values) else math.nan),
                      "std": finite.std(ddof=0) if len(finite) else math.nan,
                      "n": len(values), "n_inf": int(np.isinf(values).sum())})


def summarise_single_view(rows: pd.DataFrame) -> pd.DataFrame:
    """mean, std, n, n_inf per dataset x method x convention x metric x protocol.

    protocol "input_view": the fine-tuned view only (the paper's); "all_views":
    every scored view of the 72; "novel_views": every scored view but the input (the honest one).
    """
    protocols = pd.concat([rows[rows["view"] == rows["input_view"]].assign(protocol="input_view"),
                           rows.assign(protocol="all_views"),
                           rows[rows["view"] != rows["input_view"]].assign(protocol="novel_views")])
    grouped = protocols.groupby(SUMMARY_KEYS_SINGLE, sort=False)["value"]
    summary = grouped.apply(_finite_stats).unstack().reset_index()
    return summary.astype({"n": int, "n_inf": int})


def summarise_generative(rows: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """mean, std (over repeats), n per dataset x method x metric, with the set sizes."""
    grouped = rows.groupby(["dataset", "method", "metric"], sort=False)["value"]
    summary = grouped.agg(mean="mean", std=lambda v: v.std(ddof=0), n="count").reset_index()
    return summary.merge(sizes, on=["dataset", "method"], how="left")


def _number(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _lookup(summary: pd.DataFrame, dataset: str, method: str, metric: str, protocol: str,
            convention: str = "paper") -> float:
    hit = summary[(summary.dataset == dataset) & (summary.method == method) & (summary.metric == metric)
                  & (summary.protocol == protocol) & (summary.convention == convention)]
    return float(hit["mean"].iloc[0]) if len(hit) else math.nan


def paper_single_view(table: str, method: str, weights: LossWeights | None, dataset: str) -> dict:
    """The paper's {psnr, ssim} for a method: table 1 by name, table 3 by loss weights."""
    values = paper_values()
    if table == "table1":
        by_name = {k.lower(): v for k, v in values["table1"].items()}
        return by_name.get(method.lower(), {}).get(dataset, {})
    if weights is None:  # a method scored from renders made elsewhere has no loss weights to match
        return {}
    for entry in values["table3"]:
        paper_weights = entry["loss_weights"]
        if weights == paper_weights or (weights != "learned" and paper_weights != "learned"
                                        and np.allclose(weights, paper_weights)):
            return entry.get(dataset, {})
    return {}


def single_view_markdown(table: str, summary: pd.DataFrame, methods: dict[str, LossWeights],
                         conventions: tuple[str, ...]) -> str:
    """Paper vs ours (input view), difference, and ours over all 72 views, per dataset and method."""
    lines = [f"# {table}: single-view rendering quality (PSNR dB / SSIM)", "",
             "input view = the fine-tuned view only (the paper's protocol); all 72 = mean over every view "
             "with ground truth; novel = every view but the input. diff = ours (input view) - paper. A PSNR of identical images (inf) is "
             "left out of a mean and counted in the summary CSV's n_inf.", ""]
    for convention in conventions:
        lines += [f"## convention: {convention}", "",
                  "| dataset | method | PSNR paper | PSNR ours (input view) | diff | PSNR ours (all 72) "
                  "| PSNR ours (novel) | SSIM paper | SSIM ours (input view) | diff | SSIM ours (all 72) "
                  "| SSIM ours (novel) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for dataset in summary.dataset.unique():
            for method in summary[summary.dataset == dataset].method.unique():
                paper = paper_single_view(table, method, methods.get(method), dataset)
                cells = [dataset, method]
                for metric, digits in (("psnr", 2), ("ssim", 3)):
                    ours = _lookup(summary, dataset, method, metric, "input_view", convention)
                    every = _lookup(summary, dataset, method, metric, "all_views", convention)
                    novel = _lookup(summary, dataset, method, metric, "novel_views", convention)
                    reference = paper.get(metric, math.nan)
                    cells += [_number(reference, digits), _number(ours, digits),
                              _number(ours - reference, digits), _number(every, digits), _number(novel, digits)]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def generative_markdown(summary: pd.DataFrame, weights: dict | None = None) -> str:
    """Paper vs ours for FID and KID (mean +- std over repeats), with n and the subset size."""
    paper = paper_values()["table2"]
    lines = ["# table2: FID / KID against the real DRRs (lower is better)", ""]
    if weights is not None and not weights.get("official_fid_weights", False):
        lines += [f"**Inception weights {weights.get('path')} are not the official FID file: "
                  "these values are not comparable with the paper's.**", ""]
    lines += [
             "FID full = both whole sets; FID and KID mean +- std over random subsets of m images per set "
             "(FID is biased upwards at small m). diff = ours - paper.", "",
             "| dataset | method | n real | n generated | m (FID x, KID x) | FID paper | FID ours (full) | diff "
             "| FID ours (subsets) | KID paper | KID ours | diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, method), group in summary.groupby(["dataset", "method"], sort=False):
        stat = {row.metric: row for row in group.itertuples()}
        first = group.iloc[0]
        ref = paper.get(method, {}).get(dataset, {})
        ref_fid, ref_kid = ref.get("fid", [math.nan, math.nan]), ref.get("kid", [math.nan, math.nan])
        fid_full, fid_sub, kid_sub = stat["fid_full"], stat["fid"], stat["kid"]
        lines.append("| " + " | ".join([
            dataset, method, str(int(first.n_real)), str(int(first.n_generated)),
            f"{int(first.subset_size)} ({int(first.fid_repeats)}x, {int(first.kid_repeats)}x)",
            f"{_number(ref_fid[0], 2)} +- {_number(ref_fid[1], 3)}", _number(fid_full.mean, 2),
            _number(fid_full.mean - ref_fid[0], 2), f"{_number(fid_sub.mean, 2)} +- {_number(fid_sub.std, 3)}",
            f"{_number(ref_kid[0], 3)} +- {_number(ref_kid[1], 4)}",
            f"{_number(kid_sub.mean, 4)} +- {_number(kid_sub.std, 4)}", _number(kid_sub.mean - ref_kid[0], 4),
        ]) + " |")
    return "\n".join(lines) + "\n"


def novel_view_verdicts(rows: pd.DataFrame, baselines: tuple[str, ...], margin_db: float = 1.0,
                        convention: str = "paper") -> pd.DataFrame:
    """Per dataset, patient, input view and model: mean novel-view PSNR/SSIM against the strongest baseline.

    The strongest baseline is the one with the highest mean novel-view PSNR for that case; a model wins when
    its PSNR is at least `margin_db` above it and its SSIM is above every baseline's. View by view, the counts
    `views_psnr_ahead` / `views_ssim_ahead` of `novel_views` say where the model is above every baseline scored
    at that view (the mean's, too, at views that have it): a mean can win while a band of views is lost.
    """
    novel = rows[(rows.view != rows.input_view) & (rows.convention == convention)]
    keys = ["dataset", "patient", "input_view"]
    means = novel.groupby([*keys, "method", "metric"]).value.mean().unstack("metric")
    per_view = novel.pivot_table(index=[*keys, "metric", "view"], columns="method", values="value")
    out = []
    for (dataset, patient, view), case in means.groupby(level=[0, 1, 2]):
        case = case.droplevel([0, 1, 2])
        base = case[case.index.isin(baselines)]
        if base.empty:
            continue
        strongest_psnr = base.psnr.max()
        views = per_view.loc[(dataset, patient, view)]
        best_per_view = views[[b for b in baselines if b in views.columns]].max(axis=1)
        for method in case.index.difference(base.index):
            psnr, ssim_value = case.loc[method, "psnr"], case.loc[method, "ssim"]
            ahead = {m: int((views.loc[m, method] > best_per_view.loc[m]).sum()) for m in ("psnr", "ssim")}
            out.append({"dataset": dataset, "patient": patient, "input_view": view, "method": method,
                        "psnr_novel": psnr, "ssim_novel": ssim_value, "strongest_baseline": base.psnr.idxmax(),
                        "baseline_psnr": strongest_psnr, "best_baseline_ssim": base.ssim.max(),
                        "margin_db": psnr - strongest_psnr,
                        "wins": bool(psnr >= strongest_psnr + margin_db and ssim_value > base.ssim.max()),
                        "novel_views": int(views.loc["psnr", method].notna().sum()),
                        "views_psnr_ahead": ahead["psnr"], "views_ssim_ahead": ahead["ssim"]})
    return pd.DataFrame(out)


def verdict_markdown(verdicts: pd.DataFrame, margin_db: float = 1.0) -> str:
    """The honest headline: each model case against its strongest baseline on the novel views."""
    lines = ["## novel views against the strongest baseline", "",
             f"Mean over the views other than the input. wins = PSNR at least {margin_db:g} dB above the "
             "strongest baseline (highest novel-view PSNR of: input copied; input mirrored beyond 90 deg; mean "
             "training image) and SSIM above every baseline's. Views ahead = the novel views at which the model "
             "is above every baseline at that view.", "",
             "| dataset | patient | input view | method | PSNR novel | SSIM novel | strongest baseline | its PSNR "
             "| best baseline SSIM | margin dB | wins | views ahead PSNR / SSIM |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in verdicts.itertuples():
        lines.append(f"| {row.dataset} | {row.patient} | {row.input_view} | {row.method} | {row.psnr_novel:.2f} "
                     f"| {row.ssim_novel:.3f} | {row.strongest_baseline} | {row.baseline_psnr:.2f} "
                     f"| {row.best_baseline_ssim:.3f} | {row.margin_db:+.2f} | {'yes' if row.wins else 'NO'} "
                     f"| {row.views_psnr_ahead} / {row.views_ssim_ahead} of {row.novel_views} |")
    return "\n".join(lines) + "\n"
