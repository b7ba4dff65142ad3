"""How much of a single-view fit's novel-view error is the patient's depth, which one view does not see.

    python -m benchmark.depth_study --checkpoint RUN --data DRR_DIR --patients phantom07 phantom08
        [--input-view 0] [--shifts -12 -6 0 6 12] [--leave-out] --out DIR [--overwrite] [--no-progress]

Each held-out patient's X-ray (its DRR at --input-view) is fitted once, as `umed-finetune` fits it (physical
family). The whole fitted patient, volume and gains together, is then rendered again moved by each shift along
the input view's central ray (`model.atlas_fit.render_integrals`), and each rotation is scored on the views other
than the input (paper convention) beside the three baselines. Shift 0 is the product's own render.
With --leave-out the patients are the run's training patients, each fitted with its own volume dropped from
the atlas and scored beside the others' mean image, as `benchmark.leave_one_out` fits them.

The best shift per patient is an oracle: it is picked by looking at the ground truth. The gap between it and
shift 0 is what knowing the patient's depth would be worth, an upper bound for any depth cue, not a method.
Writes DIR/depth_study.csv (tidy: patient, shift_mm, method, psnr, ssim), depth_study.md and depth_study.png;
each patient's rows are kept in DIR/parts/ as they finish, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from model.atlas_fit import render_integrals, views_uint8
from model.checkpoint import read_checkpoint, resolve_run
from model.data import discover_drr_images
from model.physical import camera_for, fit_state
from umed_common.atomic import atomic_path, ensure_writable_dir, write_text_atomic
from umed_common.errors import UserError, cli_entry
from umed_common.protocol import N_VIEWS

from .leave_one_out import without_patient
from .metrics import score_views
from .plots import depth_margins
from .single_view import PatientViews, baseline_views, load_patient, mean_training_views

MODEL = "physical model"


def novel_scores(renders: np.ndarray, truth: PatientViews, input_view: int) -> tuple[float, float]:
    """Mean PSNR and SSIM (paper convention) of (72, H, W) uint8 renders over the views with ground truth other
    than the input."""
    keep = truth.present.copy()
    keep[input_view] = False
    scores = score_views(renders[keep], truth.images[keep])
    return float(np.mean(scores["psnr"])), float(np.mean(scores["ssim"]))


def strongest_baseline(frame: pd.DataFrame) -> pd.DataFrame:
    """Per patient, the baseline with the highest novel-view PSNR: (patient, method, psnr, ssim) rows."""
    baselines = frame[frame.method != MODEL]
    return baselines.loc[baselines.groupby("patient")["psnr"].idxmax(), ["patient", "method", "psnr", "ssim"]]


def margins(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's rows with `margin_db`: its novel-view PSNR minus the patient's strongest baseline's."""
    best = strongest_baseline(frame).set_index("patient")["psnr"]
    model = frame[frame.method == MODEL].copy()
    model["margin_db"] = model.psnr - model.patient.map(best)
    return model


def study_patient(cfg, payload, path: Path, truth: PatientViews, mean_views: PatientViews | None, patient: str,
                  input_view: int, shifts: list[float]) -> pd.DataFrame:
    """One patient's rows: the model at every shift (mm) and the three baselines (shift_mm empty). payload is
    the atlas the patient is fitted with (for a training patient, `leave_one_out.without_patient`'s)."""
    state, _ = fit_state(cfg, payload, path, truth.images[input_view], input_view_index=input_view,
                         loss_weights="learned")
    camera = camera_for(cfg, cfg.image_size)
    rows = []
    for shift in shifts:
        renders = views_uint8(render_integrals(state, camera, cfg.physical.render_samples, depth_shift_mm=shift))
        psnr, ssim = novel_scores(renders, truth, input_view)
        rows.append({"patient": patient, "shift_mm": shift, "method": MODEL, "psnr": psnr, "ssim": ssim})
    for method, renders in baseline_views(truth, input_view, mean_views).items():
        psnr, ssim = novel_scores(renders, truth, input_view)
        rows.append({"patient": patient, "shift_mm": np.nan, "method": method, "psnr": psnr, "ssim": ssim})
    return pd.DataFrame(rows)


def summary_markdown(frame: pd.DataFrame, input_view: int) -> str:
    model = margins(frame)
    best = strongest_baseline(frame).set_index("patient")
    shifts = sorted(model.shift_mm.unique())
    lines = [f"Novel-view PSNR margin (dB) over each patient's strongest baseline, input view {input_view}, with "
             "the fitted patient moved along the input view's central ray (mm, + toward the detector). "
             "Shift 0 is the product's render; the best shift is an oracle (chosen on the ground truth).", "",
             "| patient | strongest baseline | " + " | ".join(f"{s:+g} mm" for s in shifts) + " | oracle gain |",
             "|---|---|" + "---|" * len(shifts) + "---|"]
    for patient, group in model.groupby("patient"):
        by_shift = group.set_index("shift_mm")["margin_db"]
        gain = by_shift.max() - by_shift.get(0.0, np.nan)
        lines.append(f"| {patient} | {best.loc[patient, 'method']} ({best.loc[patient, 'psnr']:.2f} dB) | "
                     + " | ".join(f"{by_shift[s]:+.2f}" for s in shifts) + f" | {gain:+.2f} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.depth_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a physical-family training folder (or its model.pt)")
    parser.add_argument("--data", required=True, help="folder of the patients' DRRs (all 72 views)")
    parser.add_argument("--patients", nargs="+", required=True, help="held-out patient ids to fit and score")
    parser.add_argument("--input-view", type=int, default=0, help="DRR view index given as the X-ray (default 0)")
    parser.add_argument("--shifts", type=float, nargs="+", default=[-12.0, -6.0, 0.0, 6.0, 12.0],
                        help="depth shifts in mm (0 is always added)")
    parser.add_argument("--leave-out", action="store_true",
                        help="the patients trained the run: fit each without its own atlas volume")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier study in --out")
    parser.add_argument("--no-progress", action="store_true")
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.input_view < N_VIEWS:
        raise UserError(f"--input-view {args.input_view}: must be 0-{N_VIEWS - 1}")
    shifts = sorted(set(args.shifts) | {0.0})
    path = resolve_run(args.checkpoint)
    cfg, payload = read_checkpoint(path)
    if cfg.family != "physical":
        raise UserError(f"{path}: not a physical-family checkpoint (the depth study re-renders the atlas fit)")
    trained = set(payload.get("patients", []))
    discovered = discover_drr_images(args.data)
    for patient in args.patients:
        if patient not in discovered:
            raise UserError(f"patient {patient} not in {args.data} (found {', '.join(sorted(discovered)) or 'none'})")
        if args.leave_out and patient not in trained:
            raise UserError(f"patient {patient} did not train {path}: --leave-out is for its training patients "
                            f"({', '.join(sorted(trained))})")
        if not args.leave_out and patient in trained:
            raise UserError(f"patient {patient} trained {path}: a held-out score needs a patient it never saw "
                            "(or --leave-out)")
        if args.input_view not in discovered[patient]:
            raise UserError(f"patient {patient} has no view {args.input_view} in {args.data}")
    out = Path(args.out)
    ensure_writable_dir(out)
    if (out / "depth_study.csv").exists() and not args.overwrite:
        raise UserError(f"{out / 'depth_study.csv'} exists; pass --overwrite to replace it")
    parts = out / "parts"
    if args.overwrite:
        for old in parts.glob("*.csv") if parts.is_dir() else []:
            old.unlink()
    size = (cfg.image_size, cfg.image_size)
    untrained = tuple(p for p in discovered if p not in trained)
    frames, means = [], {}  # the others' mean image per set of patients it leaves out, read once
    for patient in tqdm(args.patients, desc="depth study", unit="patient", disable=args.no_progress):
        part = parts / f"{patient}_view{args.input_view}.csv"
        if part.is_file():
            frame = pd.read_csv(part, dtype={"patient": str})  # ids like 04 stay text
            if sorted(frame.shift_mm.dropna().unique()) == shifts:
                frames.append(frame)
                continue
        atlas = without_patient(payload, patient) if args.leave_out else payload
        others = untrained + ((patient,) if args.leave_out else ())
        if others not in means:
            means[others] = mean_training_views(discovered, others, size) if trained else None
        frame = study_patient(cfg, atlas, path, load_patient(discovered[patient], size), means[others], patient,
                              args.input_view, shifts)
        with atomic_path(part) as tmp:
            frame.to_csv(tmp, index=False)
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    with atomic_path(out / "depth_study.csv") as tmp:
        frame.to_csv(tmp, index=False)
    summary = summary_markdown(frame, args.input_view)
    write_text_atomic(out / "depth_study.md", summary)
    depth_margins(margins(frame), out / "depth_study.png")
    print(summary)
    print(f"written: {out / 'depth_study.csv'}, depth_study.md, depth_study.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
