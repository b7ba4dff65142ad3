"""Whole cases: discover -> load -> mu -> geometry -> project -> write, with a manifest.

`generate_all` is the Python entry point (drr-generate and the demo call it).
A failing case is recorded and the others go on.

torch waits: `import torch` takes ~1.4 s, several times the read of a CT (checksum,
decompression, HU: ~0.4 s), and nothing before the projection needs it. So this module and
the ones it reads with (volume_io, orientation, writer) import no torch at their top; the
projection side (attenuation, geometry, projector; torch itself in umed_common.device's
resolve_device) is imported where it is used, first by `run_cases` on its calling thread
while its read thread reads the first case (decompression and hashing release the GIL, so
the two overlap).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import time
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from umed_common.atomic import ensure_writable_dir, write_text_atomic
from umed_common.checksums import sha256_file
from umed_common.device import resolve_device  # imports torch only when called
from umed_common.errors import DISK_FULL_ERRNOS, UserError, disk_full_error
from umed_common.interrupts import check_stop, wait_heeding_signals

from . import writer
from .orientation import Alignment, align_to_axes, traced_as_read
from .volume_io import CaseSource, discover_cases, load_case

if TYPE_CHECKING:
    import torch

# drr.projector.METHODS (a test keeps them equal), named here too: options are checked before
# torch is imported (see "torch waits" above)
PROJECTORS = ("exact", "trilinear", "fast")
# Devices that are always there; another (cuda without a GPU) may be refused, before any folder is made.
ALWAYS_AVAILABLE_DEVICES = ("auto", "cpu")

MANIFEST_COLUMNS = ["case_id", "status", "message", "source", "shape_xyz", "spacing_xyz", "sad_mm",
                    "sid_mm", "detector_mm", "detector_px", "views", "angle_step_deg", "projector",
                    "orientation", "hu_window", "seconds", "outputs", "png_sha256", "raw_sha256",
                    "geometry_sha256", "input_sha256"]
# The options that change a case's pixels: a finished case made with others is not "done".
RESULT_OPTIONS = ("preset", "projector", "step_mm", "downsample", "views", "start_angle_deg", "angle_step_deg",
                  "rows", "cols", "detector_mm", "sad_mm", "sid_mm", "hu_min", "hu_max", "layout")


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
    from .geometry import preset_geometry  # the projection side (see "torch waits")
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
    import torch  # the projection side (see "torch waits")

    from .attenuation import AttenuationModel, hu_to_attenuation
    from .geometry import check_source_outside
    from .projector import AXIS_ALIGNED_ONLY, project

    geometry = geometry_for(volume, options)
    check_source_outside(geometry, volume.index_to_world(), volume.shape_xyz, volume.source)
    model = AttenuationModel(hu_min=options.hu_min, hu_max=options.hu_max)
    index_to_world = volume.index_to_world()
    hu, alignment = volume.hu, traced_as_read(index_to_world)
    axis_aligned_only = options.projector in AXIS_ALIGNED_ONLY
    if axis_aligned_only and alignment.axes_before != "oblique":
        # transposed/flipped as a view: the HU -> mu copy lays the voxels out (one pass, not two)
        hu, index_to_world, alignment = align_to_axes(hu, index_to_world, copy=False)
    mu = torch.from_numpy(hu_to_attenuation(hu, model))
    if axis_aligned_only and alignment.axes_before == "oblique":
        # resampled after the conversion: interpolating HU across the air threshold would move edges
        mu, index_to_world, alignment = align_to_axes(mu, index_to_world, outside_value=0.0)
    drrs = project(mu.to(device), index_to_world, geometry, method=options.projector,
                   step_mm=options.step_mm, downsample=options.downsample, workers=options.projector_threads,
                   progress=check_stop)  # Ctrl-C stops a case between chunks of views
    return drrs.cpu().numpy(), geometry, alignment


def result_options(options: DrrOptions) -> dict:
    """The options a case record keeps (those that change its outputs), JSON-plain."""
    return {name: getattr(options, name) for name in RESULT_OPTIONS}


def input_checksum(case: CaseSource) -> str:
    """SHA-256 of the input file; for a DICOM series, of its files' names and checksums."""
    if case.kind == "file":
        return sha256_file(case.paths[0])
    lines = "".join(f"{path.name} {sha256_file(path)}\n" for path in sorted(case.paths))
    return hashlib.sha256(lines.encode()).hexdigest()


def _changes(done: dict, options: dict, checksum: str) -> list[str]:
    """What differs between a finished case and this run (empty: the case is current)."""
    if "options" not in done or "input_sha256" not in done:
        return ["made by an older drr-generate that kept no options or input checksum"]
    changed = [f"--{k.replace('_', '-')} {done['options'].get(k)} -> {v}" for k, v in options.items()
               if done["options"].get(k) != v]
    if done["input_sha256"] != checksum:
        changed.append("the input file's content changed")
    return changed


@dataclass
class _CaseWork:
    """One case on its way through the stages: read -> project -> write."""

    case: CaseSource
    source: str
    start: float
    checksum: str = ""
    done: dict | None = None
    volume: object = None  # drr.volume.Volume until projected, then dropped (memory)
    drrs: np.ndarray | None = None
    geometry: object = None
    record: dict = field(default_factory=dict)  # the manifest row, once projected
    warnings: str = ""
    result: CaseResult | None = None  # set once the case is settled (skipped or failed)


def _settle(work: _CaseWork, out_dir: Path, stage) -> _CaseWork:
    """Run one stage unless the case is settled; a user mistake or I/O error fails the case."""
    if work.result is not None:
        return work
    try:
        stage(work)
    except UserError as err:
        work.result = CaseResult(work.case.case_id, work.source, "failed", str(err), time.perf_counter() - work.start)
    except OSError as err:
        message = (str(disk_full_error(err)) if err.errno in DISK_FULL_ERRNOS
                   else f"{err.filename or out_dir}: {err.strerror or err}")
        work.result = CaseResult(work.case.case_id, work.source, "failed", message, time.perf_counter() - work.start)
    if work.result is not None:
        work.volume = work.drrs = None
    return work


def _read_stage(work: _CaseWork, out_dir: Path, options: DrrOptions) -> None:
    """Resume check (an earlier run's record), then the volume read and checked."""
    case, source = work.case, work.source
    work.checksum, wanted = input_checksum(case), result_options(options)
    work.done = writer.finished_record(out_dir, case.case_id, options.layout)
    if work.done is not None:
        changed = _changes(work.done, wanted, work.checksum)
        if not changed and not options.overwrite:
            work.result = CaseResult(case.case_id, source, "skipped", "finished by an earlier run", 0.0, work.done)
            return
        if changed and not options.overwrite:
            raise UserError(f"{source}: finished by an earlier run that differs ({'; '.join(changed)}); "
                            "pass --overwrite to redo it")
        writer.adopt_earlier_case(out_dir, case.case_id, options.layout, work.done)
    work.volume = load_case(case)


def _project_stage(work: _CaseWork, options: DrrOptions, device) -> None:
    """The DRRs and the case's manifest row; the volume is let go (the next one is being read)."""
    volume = work.volume
    work.drrs, work.geometry, alignment = render_volume(volume, options, device)
    if not np.isfinite(work.drrs).all() or work.drrs.max() <= 0:
        raise UserError(f"{work.source}: the volume lies outside every ray (nothing but air projected)")
    seconds = time.perf_counter() - work.start
    work.record = {**_record(work.case.case_id, work.source, volume, work.geometry, options, alignment, seconds),
                   "options": result_options(options), "input_sha256": work.checksum}
    work.warnings, work.volume = "; ".join(volume.warnings), None


def _write_stage(work: _CaseWork, out_dir: Path, options: DrrOptions) -> None:
    case = work.case
    if work.done is not None:
        writer.remove_case(out_dir, case.case_id, options.layout, max(options.views, int(work.done.get("views", 0))))
    record = writer.write_case(out_dir, case.case_id, work.drrs, work.geometry.to_dict(), work.record, options.layout)
    work.result = CaseResult(case.case_id, work.source, "ok", work.warnings, work.record["seconds"], record)


def _new_work(case: CaseSource) -> _CaseWork:
    source = str(case.paths[0] if case.kind == "file" else case.paths[0].parent)
    return _CaseWork(case, source, time.perf_counter())


def generate_case(case: CaseSource, out_dir: Path, options: DrrOptions, device) -> CaseResult:
    """One case, start to finish, on the calling thread."""
    work = _new_work(case)
    _settle(work, out_dir, lambda w: _read_stage(w, out_dir, options))
    _settle(work, out_dir, lambda w: _project_stage(w, options, device))
    _settle(work, out_dir, lambda w: _write_stage(w, out_dir, options))
    return work.result


# Volumes read beyond those being projected: 1 keeps the projector fed (the next case is read
# while this one projects) at the cost of one more volume in memory.
READ_AHEAD = 1


def run_cases(cases: list[CaseSource], out_dir: Path, options: DrrOptions, prepare_projection):
    """Yield each case's CaseResult, in order, with the stages of consecutive cases overlapped.

    Reading (gzip, SimpleITK) and writing (PNG, hashing) mostly run outside the GIL, so
    they go on their own threads while the projector works: one thread reads ahead (at most
    `options.workers` + READ_AHEAD volumes read and not yet projected, which bounds memory),
    `options.workers` threads project, one writes behind. A case's outputs are identical
    to a sequential run's: each stage is the same function on the same data.

    prepare_projection() -> (options, device) of the projection stage runs on the calling thread
    once the first case is being read: it imports torch (see "torch waits" above).
    """
    readers = ThreadPoolExecutor(1, thread_name_prefix="drr-read")
    projectors = ThreadPoolExecutor(options.workers, thread_name_prefix="drr-project")
    writers = ThreadPoolExecutor(1, thread_name_prefix="drr-write")
    room = threading.Semaphore(options.workers + READ_AHEAD)
    stopping = threading.Event()

    def read(case):
        while not room.acquire(timeout=0.1):  # wait for the projector to free a volume
            if stopping.is_set():
                raise CancelledError
        work = _new_work(case)
        return _settle(work, out_dir, lambda w: _read_stage(w, out_dir, options))

    def project(read_future, projection_options, device):
        try:
            work = read_future.result()
            return _settle(work, out_dir, lambda w: _project_stage(w, projection_options, device))
        finally:
            room.release()

    def write(project_future):
        work = project_future.result()
        return _settle(work, out_dir, lambda w: _write_stage(w, out_dir, options)).result

    reads = [readers.submit(read, case) for case in cases]
    try:
        projection_options, device = prepare_projection()  # while the first case is read
        finals = [writers.submit(write, projectors.submit(project, read_future, projection_options, device))
                  for read_future in reads]
        for final in finals:
            yield wait_heeding_signals(final)  # Ctrl-C handled while a case runs
    finally:
        # Ctrl-C / SIGTERM: cases not started are dropped; a running one cleans its staging up
        stopping.set()
        for pool in (readers, projectors, writers):
            pool.shutdown(wait=False, cancel_futures=True)
        for pool in (readers, projectors, writers):
            pool.shutdown(wait=True)


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


def _finite(value, flag: str, positive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or (positive and value <= 0):
        raise UserError(f"{flag} {value}: must be a {'positive' if positive else 'finite'} number")


def check_options(options: DrrOptions) -> None:
    """Every option checked for what is physically possible, before any folder is made."""
    if options.projector not in PROJECTORS:
        raise UserError(f"--projector {options.projector}: unknown (choose {', '.join(PROJECTORS)})")
    if options.layout not in writer.LAYOUTS:
        raise UserError(f"--layout {options.layout}: unknown (choose {', '.join(writer.LAYOUTS)})")
    if options.workers < 1:
        raise UserError("--workers must be >= 1")
    if options.projector_threads < 1:
        raise UserError(f"projector_threads must be >= 1, got {options.projector_threads}")
    if options.downsample != "auto" and (isinstance(options.downsample, bool)
                                         or not isinstance(options.downsample, int) or options.downsample < 1):
        raise UserError(f"--downsample {options.downsample}: expected auto or an integer >= 1")
    for flag, count in (("--views", options.views), ("--rows", options.rows), ("--cols", options.cols)):
        if count < 1:
            raise UserError(f"{flag} {count}: must be at least 1")
    for flag, value in (("--step-mm", options.step_mm), ("--detector-mm", options.detector_mm),
                        ("--sad-mm", options.sad_mm), ("--sid-mm", options.sid_mm)):
        _finite(value, flag, positive=True)
    for flag, value in (("--start-angle-deg", options.start_angle_deg), ("--angle-step-deg", options.angle_step_deg),
                        ("--hu-min", options.hu_min), ("--hu-max", options.hu_max)):
        _finite(value, flag)
    if options.hu_min is not None and options.hu_max is not None and options.hu_min >= options.hu_max:
        raise UserError(f"--hu-min {options.hu_min} --hu-max {options.hu_max}: the HU window is empty "
                        "(need --hu-min < --hu-max)")
    if options.sad_mm is not None and options.sid_mm is not None and options.sad_mm >= options.sid_mm:
        raise UserError(f"--sad-mm {options.sad_mm} --sid-mm {options.sid_mm}: the source-isocentre distance "
                        "must be shorter than the source-detector distance")


def generate_all(inputs, out_dir, options: DrrOptions = DrrOptions(), show_progress: bool = True,
                 projector_settings=None) -> list[CaseResult]:
    """Project every case found under `inputs` (paths) into `out_dir`; writes manifest.csv.

    Only files drr-generate recorded as its own in `out_dir` are ever replaced or deleted.
    projector_settings(options, device), when given, is a context manager entered once torch is
    imported and left after the last case, yielding the options to project with (drr-generate's
    process-wide thread set-up: drr.cli.threads_for).
    """
    check_options(options)
    if options.device not in ALWAYS_AVAILABLE_DEVICES:
        resolve_device(options.device)  # torch imported now, so that a missing device is refused here
    cases, problems = [], []
    for root in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        found, bad = discover_cases(root)
        cases += found
        problems += bad
    out_dir = ensure_writable_dir(out_dir)
    folder = writer.output_folder(out_dir)
    folder.clear_stale_staging()
    _adopt_earlier_manifest(folder)
    folder.check_free(["manifest.csv"])
    results = [CaseResult(Path(p).name, p, "failed", f"{p}: {reason}") for p, reason in problems]
    # the progress bar, and the projector settings once entered, are left only after run_cases
    # has stopped its threads: the settings hold while anything projects
    with contextlib.ExitStack() as held:
        bar = held.enter_context(tqdm(total=len(cases), desc="drr-generate", unit="case", disable=not show_progress))

        def prepare_projection():
            device = resolve_device(options.device)
            if projector_settings is None:
                return options, device
            return held.enter_context(projector_settings(options, device)), device

        # closing: an interrupt outside the generator still stops its threads before we go on
        with contextlib.closing(run_cases(cases, out_dir, options, prepare_projection)) as finished:
            for result in finished:
                results.append(result)
                bar.update(1)
    folder.claim(["manifest.csv"])
    write_manifest(out_dir / "manifest.csv", results)
    return results


def _adopt_earlier_manifest(folder) -> None:
    """A manifest.csv from before drr-generate kept a record is its own when it has its header."""
    path = folder.root / "manifest.csv"
    if "manifest.csv" in folder.owned() or not path.is_file():
        return
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return
    if header == MANIFEST_COLUMNS[: len(header)] and len(header) >= len(MANIFEST_COLUMNS) - 1:
        folder.claim(["manifest.csv"])


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
