"""Whole cases: discover -> load -> mu -> geometry -> project -> write, with a manifest.

`generate_all` is the Python entry point (drr-generate and the demo call it).
A failing case is recorded and the others go on.
"""
from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from umed_common.atomic import ensure_writable_dir, write_text_atomic
from umed_common.device import resolve_device
from umed_common.errors import UserError

from . import writer
from .attenuation import AttenuationModel, hu_to_attenuation
from .geometry import preset_geometry
from .orientation import Alignment, align_to_axes, traced_as_read
from .projector import AXIS_ALIGNED_ONLY, METHODS, project
from .volume_io import CaseSource, discover_cases, load_case

MANIFEST_COLUMNS = ["case_id", "status", "message", "source", "shape_xyz", "spacing_xyz", "sad_mm",
                    "sid_mm", "detector_mm", "detector_px", "views", "angle_step_deg", "projector",
                    "orientation", "hu_window", "seconds", "outputs", "png_sha256", "raw_sha256",
                    "geometry_sha256"]


@dataclass
class DrrOptions:
    """Every choice of a DRR run; defaults reproduce MedNeRF's chest recipe."""

    preset: str = "chest"
    projector: str = "fast"
    step_mm: float | None = None
    downsample: str | int = "auto"
    views: int = 72
    start_angle_deg: float = 0.0
    angle_step_deg: float = 5.0
    rows: int = 128
    cols: int = 128
    detector_mm: float | None = None
    sad_mm: float | None = None
    sid_mm: float | None = None
    hu_min: float | None = -1000.0
    hu_max: float | None = 1000.0
    layout: str = "standard"
    device: str = "auto"
    overwrite: bool = False
    workers: int = 1  # cases in parallel
    # Threads the fast projector runs views on (CPU); they want single-threaded torch ops,
    # which only the command sets (drr.cli.threads_for), so 1 for Python callers.
    projector_threads: int = 1


@dataclass
class CaseResult:
    case_id: str
    source: str
    status: str  # ok | failed | skipped (finished by an earlier run)
    message: str = ""
    seconds: float = 0.0
    record: dict = field(default_factory=dict)


def geometry_for(volume, options: DrrOptions):
    """Options > DICOM tags > MedNeRF defaults for SAD/SID; isocentre at the volume centre."""
    size = options.detector_mm
    return preset_geometry(options.preset, volume.centre_mm(),
                           sad_mm=options.sad_mm or volume.sad_mm, sid_mm=options.sid_mm or volume.sid_mm,
                           detector_rows=options.rows, detector_cols=options.cols,
                           detector_height_mm=size, detector_width_mm=size, views=options.views,
                           start_angle_deg=options.start_angle_deg, angle_step_deg=options.angle_step_deg)


def render_volume(volume, options: DrrOptions, device: torch.device):
    """Volume -> ((V, H, W) float32 numpy line integrals, Geometry, Alignment).

    The geometry comes from the volume as read (its centre is the isocentre, whatever
    the voxel order); the Alignment says what the projector was given (case record).
    """
    geometry = geometry_for(volume, options)
    model = AttenuationModel(hu_min=options.hu_min, hu_max=options.hu_max)
    mu = torch.from_numpy(hu_to_attenuation(volume.hu, model))
    index_to_world = volume.index_to_world()
    if options.projector in AXIS_ALIGNED_ONLY:
        mu, index_to_world, alignment = align_to_axes(mu, index_to_world, outside_value=0.0)
    else:
        alignment = traced_as_read(index_to_world)
    drrs = project(mu.to(device), index_to_world, geometry, method=options.projector,
                   step_mm=options.step_mm, downsample=options.downsample, workers=options.projector_threads)
    return drrs.cpu().numpy(), geometry, alignment


def generate_case(case: CaseSource, out_dir: Path, options: DrrOptions, device: torch.device) -> CaseResult:
    source = str(case.paths[0] if case.kind == "file" else case.paths[0].parent)
    if not options.overwrite:
        done = writer.finished_record(out_dir, case.case_id, options.layout)
        if done is not None:
            return CaseResult(case.case_id, source, "skipped", "finished by an earlier run", 0.0, done)
    start = time.perf_counter()
    try:
        volume = load_case(case)
        drrs, geometry, alignment = render_volume(volume, options, device)
        if not np.isfinite(drrs).all() or drrs.max() <= 0:
            raise UserError(f"{source}: the volume lies outside every ray (nothing but air projected)")
        seconds = time.perf_counter() - start
        record = _record(case.case_id, source, volume, geometry, options, alignment, seconds)
        if options.overwrite:
            writer.remove_case(out_dir, case.case_id, options.layout, options.views)
        record = writer.write_case(out_dir, case.case_id, drrs, geometry.to_dict(), record, options.layout)
        return CaseResult(case.case_id, source, "ok", "; ".join(volume.warnings), seconds, record)
    except UserError as err:
        return CaseResult(case.case_id, source, "failed", str(err), time.perf_counter() - start)
    except OSError as err:
        return CaseResult(case.case_id, source, "failed", f"{err.filename or out_dir}: {err.strerror}",
                          time.perf_counter() - start)


def _record(case_id, source, volume, geometry, options: DrrOptions, alignment: Alignment, seconds: float) -> dict:
    """The manifest row of a finished case; shape and spacing as read, `orientation` says
    what the projector was given (voxels as read, transposed/flipped, or resampled)."""
    return {"case_id": case_id, "status": "ok", "message": "; ".join(volume.warnings), "source": source,
            "shape_xyz": "x".join(str(s) for s in volume.shape_xyz),
            "spacing_xyz": "x".join(f"{s:.6g}" for s in volume.spacing_xyz),
            "sad_mm": geometry.source_to_isocenter_mm, "sid_mm": geometry.source_to_detector_mm,
            "detector_mm": f"{geometry.detector_height_mm:g}x{geometry.detector_width_mm:g}",
            "detector_px": f"{geometry.detector_rows}x{geometry.detector_cols}", "views": geometry.views,
            "angle_step_deg": geometry.angle_step_deg,
            "projector": options.projector + (f"(downsample={options.downsample})" if options.projector == "fast" else ""),
            "orientation": alignment.record(),
            "hu_window": f"{options.hu_min}..{options.hu_max}", "seconds": round(seconds, 3)}


def _check_options(options: DrrOptions) -> None:
    if options.projector not in METHODS:
        raise UserError(f"--projector {options.projector}: unknown (choose {', '.join(METHODS)})")
    if options.layout not in writer.LAYOUTS:
        raise UserError(f"--layout {options.layout}: unknown (choose {', '.join(writer.LAYOUTS)})")
    if options.workers < 1:
        raise UserError("--workers must be >= 1")
    if options.projector_threads < 1:
        raise UserError(f"projector_threads must be >= 1, got {options.projector_threads}")
    if options.step_mm is not None and options.step_mm <= 0:
        raise UserError("--step-mm must be positive")


def generate_all(inputs, out_dir, options: DrrOptions = DrrOptions(), show_progress: bool = True) -> list[CaseResult]:
    """Project every case found under `inputs` (paths) into `out_dir`; writes manifest.csv."""
    _check_options(options)
    device = resolve_device(options.device)
    cases, problems = [], []
    for root in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        found, bad = discover_cases(root)
        cases += found
        problems += bad
    out_dir = ensure_writable_dir(out_dir)
    results = [CaseResult(Path(p).name, p, "failed", f"{p}: {reason}") for p, reason in problems]
    bar = tqdm(total=len(cases), desc="drr-generate", unit="case", disable=not show_progress)
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        for result in pool.map(lambda c: generate_case(c, out_dir, options, device), cases):
            results.append(result)
            bar.update(1)
    bar.close()
    write_manifest(out_dir / "manifest.csv", results)
    return results


def write_manifest(path: Path, results: list[CaseResult]) -> None:
    """One row per case: successes carry their checksums, failures their reason."""
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
    table.writeheader()
    for result in sorted(results, key=lambda r: r.case_id):
        row = dict(result.record) or {"case_id": result.case_id, "source": result.source}
        row.update(status=result.status if result.status != "skipped" else "ok",
                   message=result.message if result.status != "skipped" else row.get("message", ""))
        table.writerow(row)
    write_text_atomic(path, buffer.getvalue())


def results_json(results: list[CaseResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
