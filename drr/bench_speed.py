"""Speed and accuracy against Plastimatch on the real chest CT (acceptance 3).

    python -m drr.bench_speed [--ct ../shared/data/ct/chest_ct.nii.gz] [--views 72]

Runs, one after another on this machine: Plastimatch exact (and uniform with
--with-uniform), then our fast / exact / trilinear projectors, 72 views at
128x128 with the chest preset. Prints seconds, the speed ratio against
Plastimatch exact, peak memory (resident set, this process; Plastimatch runs
as a child and is reported separately) and per-view NCC / relative RMS against
Plastimatch exact. Timings on a shared CPU are noisy: rerun before quoting.
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

from .attenuation import hu_to_attenuation
from .geometry import preset_geometry
from .plastimatch_peer import find_plastimatch, run_plastimatch
from .projector import project
from .volume_io import axis_aligned, check_volume, read_volume_file

DEFAULT_CT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ct" / "chest_ct.nii.gz"


def scores(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Worst per-view NCC and relative RMS of `ours` against `reference` (both (V, H, W))."""
    a = ours.reshape(len(ours), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    a0, b0 = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    ncc = (a0 * b0).sum(1) / np.sqrt((a0 ** 2).sum(1) * (b0 ** 2).sum(1))
    rel = np.sqrt(((a - b) ** 2).mean(1)) / np.sqrt((b ** 2).mean(1))
    return float(ncc.min()), float(rel.max())


def peak_rss_gb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024 ** 2  # Linux reports KiB


def time_ours(volume, geometry, method: str) -> tuple[np.ndarray, float]:
    """Seconds from HU volume to (V, H, W) line integrals (mu conversion included, file reading not)."""
    start = time.perf_counter()
    if method == "fast":
        volume = axis_aligned(volume)
    mu = torch.from_numpy(hu_to_attenuation(volume.hu))
    drrs = project(mu, volume.index_to_world(), geometry, method=method).numpy()
    return drrs, time.perf_counter() - start


@cli_entry
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drr.bench_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ct", default=os.environ.get("UMED_SHARED_DATA") and
                        str(Path(os.environ["UMED_SHARED_DATA"]) / "ct" / "chest_ct.nii.gz") or str(DEFAULT_CT))
    parser.add_argument("--views", type=int, default=72)
    parser.add_argument("--ours", nargs="+", default=["fast", "exact"], choices=["fast", "exact", "trilinear"])
    parser.add_argument("--with-uniform", action="store_true", help="also time Plastimatch uniform")
    args = parser.parse_args(argv)
    if find_plastimatch() is None:
        raise UserError("plastimatch not found (pip install plastimatch, or apt-get install plastimatch)")
    if not Path(args.ct).is_file():
        raise UserError(f"{args.ct}: chest CT not found (pass --ct)")
    volume = check_volume(read_volume_file(args.ct))
    geometry = preset_geometry("chest", volume.centre_mm()).with_views(args.views, 0.0, 360.0 / args.views)
    print(f"{args.ct}: {volume.shape_xyz} voxels, {args.views} views {geometry.detector_rows}x"
          f"{geometry.detector_cols}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    reference, peer_s = run_plastimatch(volume, geometry, "exact")
    print(f"plastimatch exact    {peer_s:7.2f} s   child peak {peak_rss_gb(resource.RUSAGE_CHILDREN):.2f} GB")
    if args.with_uniform:
        uniform, uniform_s = run_plastimatch(volume, geometry, "uniform")
        ncc, rel = scores(uniform, reference)
        print(f"plastimatch uniform  {uniform_s:7.2f} s   NCC {ncc:.6f}  rel RMS {rel:.4%}")
    for method in args.ours:
        drrs, seconds = time_ours(volume, geometry, method)
        ncc, rel = scores(drrs, reference)
        print(f"ours {method:<15} {seconds:7.2f} s   x{peer_s / seconds:5.1f} vs plastimatch exact   "
              f"NCC {ncc:.6f}  rel RMS {rel:.4%}   peak {peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
