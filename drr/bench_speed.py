"""Speed and accuracy against Plastimatch and against analytic truth (acceptance 3).

    python -m drr.bench_speed [--ct ../shared/data/ct/chest_ct.nii.gz] [--views 72]
                              [--ours fast exact] [--with-uniform] [--repeats 3]

Part 1, the real chest CT, 72 views at 128x128, chest preset, run one after the
other on this machine: Plastimatch exact (best of --repeats), our projectors
(fast: best of --repeats; the slow ones once). Prints seconds, the speed ratio
against Plastimatch exact, this process's peak resident memory so far
(Plastimatch runs as a child, reported separately; run `fast` first for its own
figure) and the worst per-view NCC / relative RMS against Plastimatch exact.

Part 2 (skip with --no-phantom), an ellipsoid phantom voxelised on the chest CT's
own grid (drr.analytic_phantom): the worst per-view NCC / relative RMS of every
projector against the analytic line integrals, i.e. who is closer to the truth.

Timings on a shared CPU are noisy: rerun before quoting, and quote the command.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from umed_common.errors import UserError, cli_entry
from umed_common.measures import ncc

from .analytic_phantom import CHEST_BLOBS, analytic_drr, voxelise
from .attenuation import WATER_MU_PER_MM, hu_to_attenuation
from .fast_projector import DEFAULT_GROUP, DEFAULT_TABLE_DTYPE, project_fast
from .geometry import preset_geometry
from .plastimatch_peer import find_plastimatch, run_plastimatch
from .projector import project
from .orientation import axis_aligned
from .volume import Volume, check_volume
from .volume_io import read_volume_file

DEFAULT_CT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ct" / "chest_ct.nii.gz"


def scores(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Worst per-view NCC and relative RMS of `ours` against `reference` (both (V, H, W))."""
    a = ours.reshape(len(ours), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    rel = np.sqrt(((a - b) ** 2).mean(1)) / np.sqrt((b ** 2).mean(1))
    return float(np.min(ncc(ours, reference))), float(rel.max())


def peak_rss_gb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024 ** 2  # Linux reports KiB


def run_ours(volume: Volume, geometry, method: str, group: int,
             table_dtype: torch.dtype = DEFAULT_TABLE_DTYPE) -> tuple[np.ndarray, float]:
    """(V, H, W) line integrals and seconds from HU volume (mu conversion included, file reading not)."""
    start = time.perf_counter()
    if method == "fast":
        volume = axis_aligned(volume)
    mu = torch.from_numpy(hu_to_attenuation(volume.hu))
    run_ours.mu_seconds = time.perf_counter() - start  # reported apart: HU -> mu is shared code
    if method == "fast":
        # As drr-generate runs it (drr.cli.threads_for): views on threads, single-threaded ops.
        cores = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            drrs = project_fast(mu, volume.index_to_world(), geometry, group=group, table_dtype=table_dtype,
                                workers=cores)
        finally:
            torch.set_num_threads(cores)
    else:
        drrs = project(mu, volume.index_to_world(), geometry, method=method)
    return drrs.numpy(), time.perf_counter() - start


def best_of(repeats: int, run):
    """(result, fastest seconds) of `repeats` calls of run() -> (result, seconds)."""
    results = [run() for _ in range(max(1, repeats))]
    return results[0][0], min(seconds for _, seconds in results)


def phantom_volume(like: Volume) -> Volume:
    """CHEST_BLOBS on `like`'s grid (shape, spacing; identity direction), as HU."""
    mu = voxelise(CHEST_BLOBS, like.hu.shape, like.spacing_xyz)
    hu = (mu / WATER_MU_PER_MM - 1.0) * 1000.0  # inverse of the `preprocess` model above -800 HU
    origin = tuple(-(n - 1) / 2 * s for n, s in zip(like.shape_xyz, like.spacing_xyz))
    return Volume(hu=hu.astype(np.float32), spacing_xyz=like.spacing_xyz, origin_xyz=origin, source="phantom")


def compare_speed(volume, geometry, args) -> None:
    reference, peer_s = best_of(args.repeats, lambda: run_plastimatch(volume, geometry, "exact"))
    print(f"plastimatch exact      {peer_s:7.2f} s   (best of {args.repeats})   "
          f"child peak {peak_rss_gb(resource.RUSAGE_CHILDREN):.2f} GB")
    if args.with_uniform:
        uniform, uniform_s = run_plastimatch(volume, geometry, "uniform")
        worst_ncc, rel = scores(uniform, reference)
        print(f"plastimatch uniform    {uniform_s:7.2f} s   x{peer_s / uniform_s:5.2f}   NCC {worst_ncc:.7f}  rel RMS {rel:.4%}")
    for method in args.ours:
        repeats = args.repeats if method == "fast" else 1
        drrs, seconds = best_of(repeats, lambda: run_ours(volume, geometry, method, args.group, args.table_dtype))
        worst_ncc, rel = scores(drrs, reference)
        print(f"ours {method:<17} {seconds:7.2f} s   x{peer_s / seconds:5.2f}   NCC {worst_ncc:.7f}  rel RMS {rel:.4%}   "
              f"peak so far {peak_rss_gb():.2f} GB   (of which HU -> mu {run_ours.mu_seconds:.2f} s)")


def compare_truth(volume, args) -> None:
    phantom = phantom_volume(volume)
    geometry = preset_geometry("chest", phantom.centre_mm()).with_views(args.views, 0.0, 360.0 / args.views)
    truth = analytic_drr(CHEST_BLOBS, geometry, phantom.centre_mm(), sub=args.truth_sub)
    print(f"\nanalytic phantom on the same grid ({len(CHEST_BLOBS)} ellipsoids), error against the exact "
          f"line integrals ({args.truth_sub}x{args.truth_sub} rays per pixel):")
    runs = [("plastimatch exact", lambda: run_plastimatch(phantom, geometry, "exact"))]
    if args.with_uniform:
        runs.append(("plastimatch uniform", lambda: run_plastimatch(phantom, geometry, "uniform")))
    runs += [(f"ours {m}", lambda m=m: run_ours(phantom, geometry, m, args.group, args.table_dtype)) for m in args.ours]
    for name, run in runs:
        drrs, _ = run()
        worst_ncc, rel = scores(drrs, truth)
        print(f"{name:<22} NCC {worst_ncc:.7f}  rel RMS {rel:.4%}")


@cli_entry
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drr.bench_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.environ.get("UMED_SHARED_DATA")
    parser.add_argument("--ct", default=str(Path(shared) / "ct" / "chest_ct.nii.gz") if shared else str(DEFAULT_CT))
    parser.add_argument("--views", type=int, default=72)
    parser.add_argument("--ours", nargs="+", default=["fast", "exact"], choices=["fast", "exact", "trilinear"])
    parser.add_argument("--group", type=int, default=DEFAULT_GROUP, help="fast projector: slabs per knot")
    parser.add_argument("--table-dtype", choices=["float16", "float32"],
                        default=str(DEFAULT_TABLE_DTYPE).removeprefix("torch."),
                        help="fast projector: storage of the slice-difference rows")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for Plastimatch exact and ours fast")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--with-uniform", action="store_true", help="also run Plastimatch uniform")
    parser.add_argument("--no-phantom", action="store_true", help="skip the analytic-phantom accuracy part")
    parser.add_argument("--truth-sub", type=int, default=1, help="analytic truth: sub x sub rays per pixel")
    args = parser.parse_args(argv)
    if find_plastimatch() is None:
        raise UserError("plastimatch not found (pip install plastimatch, or apt-get install plastimatch)")
    if not Path(args.ct).is_file():
        raise UserError(f"{args.ct}: chest CT not found (pass --ct)")
    args.table_dtype = getattr(torch, args.table_dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    volume = check_volume(read_volume_file(args.ct))
    geometry = preset_geometry("chest", volume.centre_mm()).with_views(args.views, 0.0, 360.0 / args.views)
    print(f"{args.ct}: {volume.shape_xyz} voxels, {args.views} views {geometry.detector_rows}x"
          f"{geometry.detector_cols}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}, fast group {args.group}, table {args.table_dtype}")
    compare_speed(volume, geometry, args)
    if not args.no_phantom:
        compare_truth(volume, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
