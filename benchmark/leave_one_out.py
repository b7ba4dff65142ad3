"""Leave one training patient out: score a physical-family setting without touching an evaluation patient.

    python -m benchmark.leave_one_out --checkpoint RUN --data DRR_DIR [--patients P ...] [--views 0 18]
        [--set physical.KEY=VALUE ...] [--loss-weights learned|W_R,W_MSE] [--search-view] --out DIR [--overwrite]
        [--no-progress]

RUN's atlas holds one reconstructed volume per training patient. For each named training patient (default:
all of them) and input view, that patient's volume is dropped from the atlas, its DRR at the view is fitted as
`umed-finetune` fits an X-ray (with RUN's config and calibrated pose prior, changed by any --set), and the 72
renders are scored against its DRRs beside the three baselines of Table 1 (the mean training image here is the
mean of the other training patients). This is how the physical configs' settings are chosen: compare two
--set values on the training patients, never on the patients a table evaluates. With --search-view the fit is
not told the input view: it searches it as `umed-finetune` does without --input-view-index, and every view is
still scored against the truth, so a missed view costs what it costs a user.

Writes DIR/leave_one_out.csv (tidy, the columns of umed-bench's per-view rows, and fitted_view: the view the
fit took the X-ray for), DIR/verdicts.csv (each fit against its strongest baseline), DIR/leave_one_out.md and
DIR/per_view_psnr.png (angles counted from each fit's input view). Each fit's rows are kept in DIR/parts/ as it
finishes, so an interrupted study resumes; DIR/settings.json records what was fitted, and a study with other
settings needs --overwrite. Fits run one after another on torch's threads (the single-view fit's result depends
slightly on the thread count, so compare settings at the same one).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from model.atlas_fit import render_integrals, views_uint8
from model.checkpoint import read_checkpoint, resolve_run
from model.config import config_to_dict, parse_loss_weights, with_settings
from model.data import discover_drr_images
from model.physical import camera_for, fit_state
from umed_common.atomic import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic
from umed_common.errors import UserError, cli_entry
from umed_common.protocol import N_VIEWS, degrees_apart

from .exports import novel_view_verdicts, verdict_markdown
from .plots import per_view_psnr
from .single_view import BASELINES, PatientViews, baseline_views, load_patient, mean_training_views, score_rows

DATASET = "leave-one-out"
MODEL = "physical model"


def without_patient(payload: dict, patient: str) -> dict:
    """The checkpoint payload with `patient`'s volume dropped from the atlas (payload["patients"] names the
    atlas's members in order)."""
    names = list(payload["patients"])
    if patient not in names:
        raise UserError(f"patient {patient} did not train this run (its patients: {', '.join(names)})")
    keep = [i for i, name in enumerate(names) if name != patient]
    if not keep:
        raise UserError(f"patient {patient} is the run's only training patient: nothing is left to fit with")
    return {**payload, "atlas": payload["atlas"][keep], "patients": [names[i] for i in keep]}


def fit_rows(cfg, payload: dict, path: Path, truth: PatientViews, others_mean: PatientViews, patient: str,
             view: int, loss_weights: str, search_view: bool = False) -> pd.DataFrame:
    """One left-out fit's tidy per-view rows: the model and the three baselines; fitted_view is the view the fit
    took the X-ray for (searched when `search_view`, else `view`)."""
    state, _ = fit_state(cfg, without_patient(payload, patient), path, truth.images[view],
                         input_view_index=None if search_view else view, loss_weights=loss_weights)
    renders = views_uint8(render_integrals(state, camera_for(cfg, cfg.image_size), cfg.physical.render_samples))
    candidates = {MODEL: renders, **baseline_views(truth, view, others_mean)}
    rows = []
    for method, stack in candidates.items():
        rows += score_rows(stack, truth, ("paper",), dataset=DATASET, method=method, patient=patient,
                           input_view=view)
    return pd.DataFrame(rows).assign(fitted_view=state.input_view)


def summary_markdown(verdicts: pd.DataFrame, settings: dict) -> str:
    """The study's settings, its totals (with how far a searched input view landed), then each fit against its
    strongest baseline."""
    model = verdicts[verdicts.method == MODEL]
    changed = ", ".join(settings["set"]) or "none (the run's own config)"
    lines = [f"# Leave one training patient out: {settings['checkpoint']}", "",
             f"Settings changed: {changed}. Loss weights: {settings['loss_weights']}. "
             f"Fits: {len(model)} ({len(model.patient.unique())} patients, views "
             f"{', '.join(str(v) for v in sorted(model.input_view.unique()))}).", "",
             f"- mean novel-view PSNR {model.psnr_novel.mean():.3f} dB, SSIM {model.ssim_novel.mean():.4f}",
             f"- margin over the strongest baseline: mean {model.margin_db.mean():+.2f} dB, worst "
             f"{model.margin_db.min():+.2f} dB; wins (+1 dB and a higher SSIM) {int(model.wins.sum())} of "
             f"{len(model)}",
             f"- novel views at which the model is above every baseline there: PSNR "
             f"{int(model.views_psnr_ahead.sum())}, SSIM {int(model.views_ssim_ahead.sum())} of "
             f"{int(model.novel_views.sum())}"]
    if settings.get("search_view"):
        lines.append(f"- input view searched (not given): {view_search_line(model)}")
    return "\n".join([*lines, "", verdict_markdown(verdicts)])


def view_search_line(fits: pd.DataFrame) -> str:
    """How far the fitted views are from the true ones; `fits` has columns input_view and fitted_view, a row a fit."""
    apart = degrees_apart(fits.fitted_view.to_numpy(), fits.input_view.to_numpy())
    return (f"within 5 deg on {int((apart <= 5).sum())} of {len(apart)} fits, exact on {int((apart == 0).sum())}, "
            f"more than 90 deg off on {int((apart > 90).sum())}; off by (deg) {', '.join(str(a) for a in apart)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.leave_one_out", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a physical-family training folder (or its model.pt)")
    parser.add_argument("--data", required=True, help="folder of the run's training DRRs (all 72 views)")
    parser.add_argument("--patients", nargs="+", help="training patients to leave out in turn (default: all)")
    parser.add_argument("--views", type=int, nargs="+", default=[0, 18], help="input views (default: 0 18)")
    parser.add_argument("--set", dest="settings", action="extend", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="change config values for the fits (one or more, and repeatable), e.g. "
                             "physical.far_gain_grid=0 physical.mirror_view_weight=1")
    parser.add_argument("--loss-weights", default="learned", help="learned (Eq. 5) or fixed 'w_r,w_mse'")
    parser.add_argument("--search-view", action="store_true",
                        help="do not tell the fit its input view: search it (umed-finetune without --input-view-index)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier study in --out")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _check_inputs(args, payload: dict, discovered: dict) -> list[str]:
    """The patients to leave out; UserError for views or patients the run or the data folder lacks."""
    trained = list(payload.get("patients", []))
    patients = args.patients or trained
    if len(trained) < 2:
        raise UserError("leaving a patient out needs a run trained on at least two patients")
    for view in args.views:
        if not 0 <= view < N_VIEWS:
            raise UserError(f"--views {view}: must be 0-{N_VIEWS - 1}")
    for patient in patients:
        if patient not in trained:
            raise UserError(f"patient {patient} did not train the run (its patients: {', '.join(trained)})")
        if patient not in discovered:
            raise UserError(f"patient {patient} not in --data (found {', '.join(sorted(discovered)) or 'none'})")
        missing = [v for v in args.views if v not in discovered[patient]]
        if missing:
            raise UserError(f"patient {patient} has no view {missing[0]} in --data")
    return patients


def _prepare_out(out: Path, settings: dict, overwrite: bool) -> Path:
    """The parts folder; earlier parts are kept only when they were fitted with the same settings."""
    ensure_writable_dir(out)
    parts, record = out / "parts", out / "settings.json"
    if (out / "leave_one_out.csv").exists() or record.exists():
        try:
            earlier = json.loads(record.read_text()) if record.exists() else None
        except (OSError, ValueError):  # unreadable: treated as another study's
            earlier = None
        if overwrite or earlier != settings:
            if not overwrite:
                raise UserError(f"{out}: holds a study with other settings; pass --overwrite to replace it")
            for old in parts.glob("*.csv") if parts.is_dir() else []:
                old.unlink()
    write_json_atomic(record, settings)
    return parts


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    parse_loss_weights(args.loss_weights)
    path = resolve_run(args.checkpoint)
    cfg, payload = read_checkpoint(path)
    if cfg.family != "physical":
        raise UserError(f"{path}: not a physical-family checkpoint (leave-one-out refits its atlas)")
    cfg = with_settings(cfg, args.settings)
    discovered = discover_drr_images(args.data)
    patients = _check_inputs(args, payload, discovered)
    settings = {"checkpoint": str(path.resolve()), "set": list(args.settings), "loss_weights": args.loss_weights,
                "search_view": args.search_view, "config": config_to_dict(cfg)}
    out = Path(args.out)
    parts = _prepare_out(out, settings, args.overwrite)
    size = (cfg.image_size, cfg.image_size)
    trained = set(payload["patients"])
    frames, loaded = [], {}
    jobs = [(p, v) for p in patients for v in args.views]
    for patient, view in tqdm(jobs, desc="leave one out", unit="fit", disable=args.no_progress):
        part = parts / f"{patient}_view{view}.csv"
        if part.is_file():
            frames.append(pd.read_csv(part, dtype={"patient": str}))  # ids like 01 stay text
            continue
        if patient not in loaded:  # a patient's views share its DRRs and the others' mean: read them once
            untrained = tuple(p for p in discovered if p not in trained) + (patient,)
            loaded = {patient: (load_patient(discovered[patient], size),
                                mean_training_views(discovered, untrained, size))}
        frame = fit_rows(cfg, payload, path, *loaded[patient], patient, view, args.loss_weights, args.search_view)
        with atomic_path(part) as tmp:
            frame.to_csv(tmp, index=False)
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    fitted_views = rows.drop_duplicates(["patient", "input_view"])[["patient", "input_view", "fitted_view"]]
    verdicts = novel_view_verdicts(rows, BASELINES).merge(fitted_views, on=["patient", "input_view"])
    with atomic_path(out / "leave_one_out.csv") as tmp:
        rows.to_csv(tmp, index=False)
    with atomic_path(out / "verdicts.csv") as tmp:
        verdicts.to_csv(tmp, index=False)
    summary = summary_markdown(verdicts, settings)
    write_text_atomic(out / "leave_one_out.md", summary)
    per_view_psnr(rows, DATASET, out / "per_view_psnr.png", from_input=True)
    print(summary)
    print(f"written: {out / 'leave_one_out.csv'}, verdicts.csv, leave_one_out.md, per_view_psnr.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
