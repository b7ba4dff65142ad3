"""Speed at known accuracy: drr-generate against Plastimatch, DiffDRR and nanodrr, in one run.

    python -m drr.bench_speed [--ct ../shared/data/ct/chest_ct.nii.gz] [--out drr_bench_speed]
                              [--batch 8] [--repeats 3] [--quick] [--overwrite]

Part 1, whole commands on the CT (chest preset, 72 views at 128x128): `drr-generate CT OUT`
as a fresh process (Python start-up, reading, HU -> mu, projection, 72 PNGs, .npy,
checksums, manifest) against `plastimatch drr -i exact` on an identity-direction,
HU-clamped MetaImage written beforehand (its whole process: reading, projection, PFMs;
the conversion it needs is not timed, which favours Plastimatch). Then a batch of
--batch copies of the CT: one drr-generate command on the folder against one
plastimatch command per copy; per-case seconds compared.

Part 2, projectors alone, on the analytic ellipsoid phantom (drr.analytic_phantom)
voxelised on the CT's own grid, so the same runs give time and accuracy: ours `fast`,
Plastimatch exact (its process, on a MetaImage of the phantom), DiffDRR's Siddon and
nanodrr's ray marching (128 and its default 500 samples per ray), all fed the same rays
and the same mu (drr.peers). Each runs in a fresh process of its own, so its peak
resident memory is its own. Worst-view NCC and relative RMS are against the exact line
integrals of the ellipsoids. On a machine with CUDA the torch projectors run on the
GPU as well. A missing peer gives a row saying so.

Writes OUT/bench_speed.csv and OUT/bench_speed.md and prints the table. --quick runs
everything on a small synthetic CT (the phantom itself) with few views: a smoke test,
not a measurement. Timings on a shared CPU are noisy: quote the command and the load.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from umed_common.atomic import refuse_overwrite, write_text_atomic
from umed_common.errors import UserError, cli_entry

from .analytic_phantom import CHEST_BLOBS, analytic_drr, voxelise
from .attenuation import WATER_MU_PER_MM, hu_to_attenuation
from .fast_projector import DEFAULT_GROUP, DEFAULT_TABLE_DTYPE
from .geometry import Geometry, preset_geometry
from .orientation import axis_aligned
from .peers import NANODRR_SAMPLES, installed
from .plastimatch_peer import PLASTIMATCH_SCALE, find_plastimatch, plastimatch_command, read_pfm, write_identity_mha
from .volume import Volume, check_volume, to_sitk

DEFAULT_CT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ct" / "chest_ct.nii.gz"
# Projectors timed alone: name -> (peer package or None, what runs)
TORCH_ENGINE = "ours fast, torch engine"
PROJECTORS = {"ours fast": None, TORCH_ENGINE: None, "ours exact": None, "DiffDRR Siddon": "diffdrr",
              **{f"nanodrr {n} samples": "nanodrr" for n in NANODRR_SAMPLES}}
COLUMNS = ["part", "tool", "device", "seconds", "per_case_seconds", "ratio_vs_plastimatch",
           "worst_view_ncc", "worst_view_rel_rms", "peak_memory_gb", "note"]


def scores(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Worst per-view NCC and relative RMS of `ours` against `reference` (both (V, H, W))."""
    from umed_common.measures import ncc
    a = ours.reshape(len(ours), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    rel = np.sqrt(((a - b) ** 2).mean(1)) / np.sqrt((b ** 2).mean(1))
    return float(np.min(ncc(ours, reference))), float(rel.max())


# Runs the measured command and reports its wall time and peak memory as one JSON line. A child's
# ru_maxrss starts at its parent's peak (Linux carries the forking process's high-water mark
# across exec), so the command is started from this small launcher, not from the bench process.
_LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
error = child.stderr.read()
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"seconds": time.perf_counter() - start, "peak_kib": usage.ru_maxrss,
                  "exit": os.waitstatus_to_exitcode(status), "stderr": error[-400:].decode(errors="replace")}))
"""


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB) of one command run as a fresh process."""
    launched = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *command], capture_output=True, text=True)
    try:
        report = json.loads(launched.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"launcher failed: {launched.stderr[-400:]}") from None
    if report["exit"] != 0:
        raise RuntimeError(f"{' '.join(command[:4])}...: exit {report['exit']}: {report['stderr']}")
    return report["seconds"], report["peak_kib"] / 1024 ** 2


@dataclass
class Row:
    part: str
    tool: str
    device: str = "cpu"
    seconds: float | None = None
    per_case_seconds: float | None = None
    ratio_vs_plastimatch: float | None = None
    worst_view_ncc: float | None = None
    worst_view_rel_rms: float | None = None
    peak_memory_gb: float | None = None
    note: str = ""


# -- the inputs -----------------------------------------------------------------------------------

def phantom_volume(like: Volume) -> Volume:
    """CHEST_BLOBS on `like`'s grid (shape, spacing; identity direction), as HU."""
    mu = voxelise(CHEST_BLOBS, like.hu.shape, like.spacing_xyz)
    hu = (mu / WATER_MU_PER_MM - 1.0) * 1000.0  # inverse of the `preprocess` model above -800 HU
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(like.shape_xyz, like.spacing_xyz))
    return Volume(hu=hu.astype(np.float32), spacing_xyz=like.spacing_xyz, origin_xyz=origin, source="phantom")


def quick_ct() -> Volume:
    """A small synthetic CT (the phantom on a coarse 64 x 64 x 24 grid), for --quick and tests."""
    grid = Volume(np.zeros((24, 64, 64), np.float32), (5.6, 5.6, 14.0), (0.0, 0.0, 0.0))
    return replace(phantom_volume(grid), source="quick synthetic CT")


def geometry_flags(geometry: Geometry) -> list[str]:
    return ["--views", str(geometry.views), "--angle-step-deg", f"{geometry.angle_step_deg:g}",
            "--rows", str(geometry.detector_rows), "--cols", str(geometry.detector_cols)]


# -- part 1: whole commands -----------------------------------------------------------------------

def _ours_command(inputs: Path, out: Path, geometry: Geometry) -> list[str]:
    return [sys.executable, "-m", "drr.cli", str(inputs), str(out), "--quiet", *geometry_flags(geometry)]


def _plastimatch_on(mha: Path, geometry: Geometry, work: Path) -> list[str]:
    return plastimatch_command(find_plastimatch(), mha, geometry, "exact", work / f"{mha.stem}-drr")


def read_pfms(prefix: Path, views: int) -> np.ndarray:
    """(V, H, W) line integrals from the PFMs of one `plastimatch drr` run."""
    return np.stack([read_pfm(f"{prefix}{k:04d}.pfm") for k in range(views)]) * PLASTIMATCH_SCALE


def best_run(repeats: int, make_command) -> tuple[float, float]:
    """Fastest of `repeats` fresh runs (seconds) and the highest peak memory seen (GB)."""
    runs = [run_measured(make_command(k)) for k in range(max(1, repeats))]
    return min(s for s, _ in runs), max(m for _, m in runs)


def whole_commands(ct: Path, volume: Volume, geometry: Geometry, work: Path, args) -> list[Row]:
    rows, have_plastimatch = [], find_plastimatch() is not None
    batch_in = work / "batch"
    batch_in.mkdir()
    for k in range(args.batch):
        shutil.copyfile(ct, batch_in / f"case{k:02d}{''.join(ct.suffixes)}")
    peer = {}
    if have_plastimatch:
        clamped = replace(volume, hu=np.clip(volume.hu, -1000.0, 1000.0))  # MedNeRF's clamp, untimed
        mhas = [write_identity_mha(clamped, work / f"case{k:02d}.mha") for k in range(args.batch)]
        peer["one"] = best_run(args.repeats, lambda k: _plastimatch_on(mhas[0], geometry, work))
        start = time.perf_counter()
        peak = max(run_measured(_plastimatch_on(mha, geometry, work))[1] for mha in mhas)
        peer["batch"] = (time.perf_counter() - start, peak)
        rows += [Row("whole command, 1 CT", "plastimatch drr -i exact", seconds=peer["one"][0], per_case_seconds=peer["one"][0],
                     ratio_vs_plastimatch=1.0, peak_memory_gb=peer["one"][1], note="MetaImage prepared untimed"),
                 Row(f"whole command, batch of {args.batch}", f"{args.batch} x plastimatch drr -i exact",
                     seconds=peer["batch"][0], per_case_seconds=peer["batch"][0] / args.batch, ratio_vs_plastimatch=1.0,
                     peak_memory_gb=peer["batch"][1], note="one command per CT")]
    one = best_run(args.repeats, lambda k: _ours_command(ct, work / f"ours-one-{k}", geometry))
    batch_s, batch_peak = run_measured(_ours_command(batch_in, work / "ours-batch", geometry))
    ratio = lambda key, ours: peer[key][0] / ours if key in peer else None  # noqa: E731
    note = f"from {ct.name}"
    if have_plastimatch:  # the two commands' DRRs of the CT, against each other
        case_id = ct.name[: -len("".join(ct.suffixes))]
        ours = np.load(work / "ours-one-0" / case_id / "drr_line_integrals.npy")
        theirs = read_pfms(work / "case00-drr", geometry.views)
        note += "; worst-view NCC {:.7f}, rel. RMS {:.3%} vs Plastimatch's DRRs".format(*scores(ours, theirs))
    rows += [Row("whole command, 1 CT", "drr-generate", seconds=one[0], per_case_seconds=one[0],
                 ratio_vs_plastimatch=ratio("one", one[0]), peak_memory_gb=one[1], note=note),
             Row(f"whole command, batch of {args.batch}", "drr-generate", seconds=batch_s,
                 per_case_seconds=batch_s / args.batch,
                 ratio_vs_plastimatch=peer["batch"][0] / batch_s if "batch" in peer else None,
                 peak_memory_gb=batch_peak, note="one command on the folder")]
    if not have_plastimatch:
        rows.insert(0, Row("whole command, 1 CT", "plastimatch drr -i exact", note="not installed"))
    return rows


# -- part 2: projectors alone, on the phantom -------------------------------------------------------

def _projector_child(tool: str, case: Path, device: str, repeats: int, args) -> Row:
    """Run one projector in a fresh process (`--run-projector`); its seconds, peak and DRRs."""
    command = [sys.executable, "-m", "drr.bench_speed", "--run-projector", tool, "--case", str(case),
               "--device", device, "--repeats", str(repeats), "--table-dtype", args.table_dtype]
    if args.group is not None:
        command += ["--group", str(args.group)]
    _, peak = run_measured(command)
    result = json.loads((case / f"{_slug(tool, device)}.json").read_text())
    return Row("projector alone", tool, device, seconds=result["seconds"], peak_memory_gb=peak,
               note=result.get("note", ""))


def _slug(tool: str, device: str) -> str:
    return f"{tool.replace(' ', '_')}-{device}"


def run_projector(tool: str, case: Path, device: str, repeats: int, group: int, table_dtype: str) -> None:
    """Child side: mu and geometry from `case`, (V, H, W) DRRs and seconds back into it."""
    import torch

    from umed_common.malloc_tuning import reuse_freed_memory

    from .fast_projector import project_fast
    from .peers import project_diffdrr, project_nanodrr
    from .projector import project

    mu = torch.from_numpy(np.load(case / "mu.npy")).to(device)
    affine = np.load(case / "affine.npy")
    geometry = Geometry(**{f.name: _tuple(json.loads((case / "geometry.json").read_text())[f.name])
                           for f in fields(Geometry)})
    cores = torch.get_num_threads()
    if tool in ("ours fast", TORCH_ENGINE) and device == "cpu":
        torch.set_num_threads(1)  # as drr-generate sets it once: views on threads, single-threaded ops
        reuse_freed_memory()      # as drr-generate does (umed_common.malloc_tuning)
    runs = {"ours fast": lambda: project_fast(mu, affine, geometry, group=group, workers=cores,
                                              table_dtype=getattr(torch, table_dtype)),
            TORCH_ENGINE: lambda: project_fast(mu, affine, geometry, group=group, workers=cores,
                                               table_dtype=getattr(torch, table_dtype), engine="torch"),
            "ours exact": lambda: project(mu, affine, geometry, method="exact"),
            "DiffDRR Siddon": lambda: project_diffdrr(mu, affine, geometry)}
    runs.update({f"nanodrr {n} samples": (lambda n=n: project_nanodrr(mu, affine, geometry, n)) for n in NANODRR_SAMPLES})
    best, drrs = None, None
    for _ in range(max(1, repeats)):
        _sync(device)
        start = time.perf_counter()
        drrs = runs[tool]()
        _sync(device)
        seconds = time.perf_counter() - start
        best = seconds if best is None else min(best, seconds)
        if seconds > 20:  # slow peers once: their spread is small against their time
            break
    np.save(case / f"{_slug(tool, device)}.npy", drrs.cpu().numpy())
    (case / f"{_slug(tool, device)}.json").write_text(json.dumps({"seconds": best}))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def projectors_alone(volume: Volume, geometry: Geometry, work: Path, args) -> list[Row]:
    phantom = phantom_volume(volume)
    geometry = replace(geometry, isocenter_mm=phantom.centre_mm())  # the phantom is centred on 0, not the CT
    truth = analytic_drr(CHEST_BLOBS, geometry, phantom.centre_mm(), sub=args.truth_sub)
    case = work / "phantom"
    case.mkdir()
    np.save(case / "mu.npy", hu_to_attenuation(phantom.hu))
    np.save(case / "affine.npy", phantom.index_to_world())
    (case / "geometry.json").write_text(json.dumps(geometry.to_dict()))
    rows = []
    if find_plastimatch() is not None:
        mha = write_identity_mha(axis_aligned(phantom), case / "phantom.mha")
        seconds, peak = best_run(args.repeats, lambda k: _plastimatch_on(mha, geometry, case))
        drrs = read_pfms(case / "phantom-drr", geometry.views)
        rows.append(Row("projector alone", "Plastimatch exact", seconds=seconds, peak_memory_gb=peak,
                        note="its process: MetaImage in, PFMs out"))
        rows[-1].worst_view_ncc, rows[-1].worst_view_rel_rms = scores(drrs, truth)
    else:
        rows.append(Row("projector alone", "Plastimatch exact", note="not installed"))
    devices = ["cpu"] + (["cuda"] if args.gpu else [])
    for device in devices:
        for tool in args.projectors:
            package = PROJECTORS[tool]
            if package is not None and not installed(package):
                rows.append(Row("projector alone", tool, device, note="not installed (pip install umednerf[peers-bench])"))
                continue
            if tool == TORCH_ENGINE and device != "cpu":
                continue  # on a GPU "ours fast" is the torch engine
            repeats = args.repeats if tool in ("ours fast", TORCH_ENGINE) else 1
            row = _projector_child(tool, case, device, repeats, args)
            row.worst_view_ncc, row.worst_view_rel_rms = scores(np.load(case / f"{_slug(tool, device)}.npy"), truth)
            rows.append(row)
    peer = rows[0].seconds
    for row in rows:
        row.ratio_vs_plastimatch = peer / row.seconds if peer and row.seconds else None
    return rows


# -- the report -----------------------------------------------------------------------------------

def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.7f}" if 0.99 < value < 1.0 else f"{value:.4g}"
    return str(value)


def markdown(rows: list[Row], header: str) -> str:
    names = ["part", "tool", "device", "seconds", "per case s", "x Plastimatch", "worst-view NCC vs truth",
             "worst-view rel. RMS vs truth", "peak memory GB", "note"]
    lines = [header, "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in rows:
        values = [getattr(row, c) for c in COLUMNS]
        values[7] = f"{row.worst_view_rel_rms:.3%}" if row.worst_view_rel_rms is not None else None
        values[5] = f"{row.ratio_vs_plastimatch:.2f}x" if row.ratio_vs_plastimatch else None
        lines.append("| " + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[Row], out: Path, header: str) -> None:
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, fieldnames=COLUMNS)
    table.writeheader()
    for row in rows:
        table.writerow({c: getattr(row, c) for c in COLUMNS})
    write_text_atomic(out / "bench_speed.csv", buffer.getvalue())
    write_text_atomic(out / "bench_speed.md", markdown(rows, header))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m drr.bench_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.environ.get("UMED_SHARED_DATA")
    parser.add_argument("--ct", default=str(Path(shared) / "ct" / "chest_ct.nii.gz") if shared else str(DEFAULT_CT))
    parser.add_argument("--out", default="drr_bench_speed", help="folder for bench_speed.csv and .md")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    parser.add_argument("--quick", action="store_true", help="small synthetic CT, 8 views at 32x32, batch of 2")
    parser.add_argument("--batch", type=int, default=None, help="CTs in the batch (default 8; --quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="best of N for the fast runs (default 3; --quick 1)")
    parser.add_argument("--projectors", nargs="+", default=["ours fast", TORCH_ENGINE, "DiffDRR Siddon", *[
        f"nanodrr {n} samples" for n in NANODRR_SAMPLES]], choices=list(PROJECTORS), metavar="NAME",
        help=f"projectors timed alone (of: {', '.join(PROJECTORS)})")
    parser.add_argument("--no-whole", action="store_true", help="skip part 1 (whole commands)")
    parser.add_argument("--no-projectors", action="store_true", help="skip part 2 (projectors alone)")
    parser.add_argument("--truth-sub", type=int, default=1, help="analytic truth: sub x sub rays per pixel")
    parser.add_argument("--group", type=int, default=None,
                        help=f"ours fast: voxel slabs per knot (default per engine: {DEFAULT_GROUP})")
    parser.add_argument("--table-dtype", choices=["float16", "float32"],
                        default=str(DEFAULT_TABLE_DTYPE).removeprefix("torch."),
                        help="ours fast: storage of the slice-difference rows")
    parser.add_argument("--run-projector", help=argparse.SUPPRESS)  # child mode (one projector)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch = args.batch or (2 if args.quick else 8)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.batch < 1 or args.repeats < 1:
        raise UserError("--batch and --repeats must be >= 1")
    return args


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_projector:
        run_projector(args.run_projector, Path(args.case), args.device, args.repeats, args.group, args.table_dtype)
        return 0
    import torch
    args.gpu = torch.cuda.is_available()
    out = Path(args.out)
    for name in ("bench_speed.csv", "bench_speed.md"):
        refuse_overwrite(out / name, args.overwrite)
    if args.quick:
        volume = quick_ct()
        geometry = preset_geometry("chest", volume.centre_mm()).with_views(8, 0.0, 45.0)
        geometry = replace(geometry, detector_rows=32, detector_cols=32)
    else:
        if not Path(args.ct).is_file():
            raise UserError(f"{args.ct}: CT not found (pass --ct, or --quick for a synthetic one)")
        from .volume_io import read_volume_file
        volume = check_volume(read_volume_file(args.ct))
        geometry = preset_geometry("chest", volume.centre_mm())
    header = (f"`python -m drr.bench_speed{' --quick' if args.quick else ''}`: {volume.source} "
              f"{'x'.join(map(str, volume.shape_xyz))} voxels, {geometry.views} views at {geometry.detector_rows}x"
              f"{geometry.detector_cols}, chest preset; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start"
              f"{', CUDA ' + torch.cuda.get_device_name() if args.gpu else ', no GPU'}")
    print(header, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="drr-bench-speed-") as tmp:
        work = Path(tmp)
        ct = Path(args.ct)
        if args.quick:
            import SimpleITK as sitk
            ct = work / "quick_ct.nii.gz"
            sitk.WriteImage(to_sitk(volume), str(ct))
        if not args.no_whole:
            rows += whole_commands(ct, volume, geometry, work, args)
            _print_rows(rows)
        if not args.no_projectors:
            part2 = projectors_alone(volume, geometry, work, args)
            _print_rows(part2)
            rows += part2
    out.mkdir(parents=True, exist_ok=True)
    write_report(rows, out, header + f"; load {os.getloadavg()[0]:.1f} at the end")
    print(f"-> {out / 'bench_speed.csv'}, {out / 'bench_speed.md'}")
    return 0


def _print_rows(rows: list[Row]) -> None:
    for row in rows:
        ratio = f"x{row.ratio_vs_plastimatch:5.2f}" if row.ratio_vs_plastimatch else "   -  "
        accuracy = (f"NCC {row.worst_view_ncc:.6f} rel RMS {row.worst_view_rel_rms:.3%}"
                    if row.worst_view_ncc is not None else "")
        seconds = f"{row.seconds:8.2f} s" if row.seconds is not None else "       - "
        per_case = f"({row.per_case_seconds:.2f} s/case)" if row.per_case_seconds is not None and "batch" in row.part else ""
        memory = f"{row.peak_memory_gb:.2f} GB" if row.peak_memory_gb is not None else ""
        print(f"{row.part:<28} {row.tool:<32} {row.device:<4} {seconds} {per_case:<16} {ratio} {memory:>8}  "
              f"{accuracy} {row.note}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
