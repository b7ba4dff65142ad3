"""Write one case: MedNeRF PNGs, raw line integrals, geometry JSON, a case record.

Everything is written into a hidden staging folder and moved into place only
when the whole case succeeded, so a failed or interrupted case leaves nothing
behind. The case record (`case.json`) is written last: it marks the case done
(resume) and is the manifest row.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from umed_common.atomic import write_json_atomic
from umed_common.checksums import sha256_file
from umed_common.images import write_png

LAYOUTS = ("standard", "mednerf")
RAW_NAME = "drr_line_integrals.npy"


def mednerf_uint8(line_integrals: np.ndarray) -> np.ndarray:
    """(H, W) line integrals -> uint8 as MedNeRF: / own maximum * 255, flipped left-right.

    Air integrates to 0, hence the black background. An all-zero image stays zero.
    """
    peak = float(line_integrals.max())
    scaled = line_integrals / peak * 255.0 if peak > 0 else np.zeros_like(line_integrals)
    return np.fliplr(np.clip(np.round(scaled), 0, 255).astype(np.uint8)).copy()


def case_paths(out_dir: Path, case_id: str, layout: str, views: int) -> dict:
    """Final locations of a case's files, relative to out_dir."""
    if layout == "mednerf":
        pngs = [Path(f"{case_id}_xray{k:04d}.png") for k in range(views)]
        side = Path("raw") / case_id
    else:
        side = Path(case_id)
        pngs = [side / f"xray{k:04d}.png" for k in range(views)]
    return {"pngs": pngs, "raw": side / RAW_NAME, "geometry": side / "geometry.json",
            "record": side / "case.json"}


def write_case(out_dir: Path, case_id: str, drrs: np.ndarray, geometry: dict, record: dict,
               layout: str = "standard") -> dict:
    """(V, H, W) float32 -> files; returns `record` completed with checksums."""
    out_dir = Path(out_dir)
    paths = case_paths(out_dir, case_id, layout, drrs.shape[0])
    stage = out_dir / f".staging-{case_id}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        for k, rel in enumerate(paths["pngs"]):
            write_png(stage / rel, mednerf_uint8(drrs[k]))
        (stage / paths["raw"]).parent.mkdir(parents=True, exist_ok=True)
        np.save(stage / paths["raw"], drrs.astype(np.float32))
        write_json_atomic(stage / paths["geometry"], geometry)
        png_lines = "".join(f"{rel.name} {sha256_file(stage / rel)}\n" for rel in paths["pngs"])
        record = {**record, "outputs": str(paths["geometry"].parent if layout == "standard" else "."),
                  "png_sha256": hashlib.sha256(png_lines.encode()).hexdigest(),
                  "raw_sha256": sha256_file(stage / paths["raw"]),
                  "geometry_sha256": sha256_file(stage / paths["geometry"])}
        write_json_atomic(stage / paths["record"], record)
        for rel in [*paths["pngs"], paths["raw"], paths["geometry"], paths["record"]]:
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, out_dir / rel)  # the record moves last: it marks the case done
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return record


def finished_record(out_dir: Path, case_id: str, layout: str) -> dict | None:
    """The record of a case finished by an earlier run, or None."""
    record = case_paths(Path(out_dir), case_id, layout, 0)["record"]
    try:
        return json.loads((Path(out_dir) / record).read_text())
    except (OSError, ValueError):
        return None


def remove_case(out_dir: Path, case_id: str, layout: str, views: int) -> None:
    """Delete a case's earlier outputs (for --overwrite)."""
    for key, value in case_paths(Path(out_dir), case_id, layout, views).items():
        for rel in value if isinstance(value, list) else [value]:
            (Path(out_dir) / rel).unlink(missing_ok=True)
