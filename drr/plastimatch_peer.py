"""Run Plastimatch `drr` (the peer MedNeRF used) on the same volume and geometry.

Plastimatch ignores direction cosines, so it gets an identity-direction (LPS)
MetaImage of the same voxels (an exact flip/permutation, see
orientation.axis_aligned). Its PFM images hold 0.1 x the line integral of the
`preprocess` mu per mm (it works in cm); `run_plastimatch` multiplies by 10 so
the result is directly comparable with drr.projector.project.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .geometry import Geometry
from .orientation import axis_aligned
from .volume import Volume, to_sitk

PLASTIMATCH_SCALE = 10.0


def find_plastimatch() -> str | None:
    """The `plastimatch` executable: beside this Python (PyPI wheel) or on PATH."""
    beside = Path(sys.executable).parent / "plastimatch"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("plastimatch")


def read_pfm(path: str | Path) -> np.ndarray:
    """(H, W) float32 from a Plastimatch PFM; rows are stored top (head) first."""
    with open(path, "rb") as handle:
        if handle.readline().strip() != b"Pf":
            raise ValueError(f"{path}: not a grayscale PFM")
        width, height = (int(v) for v in handle.readline().split())
        scale = float(handle.readline())
        data = np.frombuffer(handle.read(width * height * 4), dtype="<f4" if scale < 0 else ">f4")
    return data.reshape(height, width).astype(np.float32)


def write_identity_mha(volume: Volume, path: str | Path) -> Path:
    """The HU volume as an identity-direction MetaImage for Plastimatch."""
    aligned = axis_aligned(volume)
    sitk.WriteImage(to_sitk(aligned), str(path))
    return Path(path)


def plastimatch_command(executable: str, mha: Path, geometry: Geometry, algorithm: str,
                        out_prefix: Path, threads: str = "cpu") -> list[str]:
    """MedNeRF's recipe (REFERENCE section 2) without autoscale, PFM output.

    Plastimatch's `-r`/`-z` first value sets the columns (measured), so cols go first.
    Plastimatch 1.10 reads `-y` (start angle) in radians but `-N` (step) in degrees
    (measured: `-y 20` matched our start at 20 rad = 65.9 deg, NCC 0.999999).
    """
    return [executable, "drr", "-t", "pfm", "-i", algorithm, "-P", "preprocess",
            "-y", f"{math.radians(geometry.start_angle_deg):.10g}", "-N", f"{geometry.angle_step_deg:g}",
            "-a", str(geometry.views),
            "-r", f"{geometry.detector_cols} {geometry.detector_rows}",
            "-z", f"{geometry.detector_width_mm:g} {geometry.detector_height_mm:g}",
            "--sad", f"{geometry.source_to_isocenter_mm:g}", "--sid", f"{geometry.source_to_detector_mm:g}",
            "-o", " ".join(f"{v:.6f}" for v in geometry.isocenter_mm), "-A", threads,
            "-O", str(out_prefix), str(mha)]


def run_plastimatch(volume: Volume, geometry: Geometry, algorithm: str = "exact",
                    executable: str | None = None, work_dir: str | Path | None = None,
                    hu_window: tuple[float, float] | None = (-1000.0, 1000.0)):
    """(V, H, W) float32 line integrals from Plastimatch, and its wall time in seconds.

    `hu_window` clamps HU first, as MedNeRF did (Plastimatch's `preprocess` does
    not clamp), so both sides see the same mu. The time covers only the
    `plastimatch drr` process (it includes reading the MHA).
    """
    if hu_window is not None:
        volume = replace(volume, hu=np.clip(volume.hu, *hu_window))
    executable = executable or find_plastimatch()
    if executable is None:
        raise FileNotFoundError("plastimatch not found (pip install plastimatch, or apt-get install plastimatch)")
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        mha = write_identity_mha(volume, Path(tmp) / "volume.mha")
        command = plastimatch_command(executable, mha, geometry, algorithm, Path(tmp) / "drr")
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - start
        images = [read_pfm(Path(tmp) / f"drr{k:04d}.pfm") for k in range(geometry.views)]
    return np.stack(images) * PLASTIMATCH_SCALE, seconds
