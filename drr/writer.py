"""Write one case: MedNeRF PNGs, raw line integrals, geometry JSON, a case record.

Everything is written into a hidden staging folder inside OUT and moved into place
only when the whole case succeeded, so a failed or interrupted case leaves nothing
behind. The case record (`case.json`) is written last: it marks the case done
(resume) and is the manifest row; it carries the options and the input checksum,
so a rerun knows whether the case is still current.

OUT keeps drr-generate's record of its own files (umed_common.outputs): --overwrite
replaces only those, and a file drr-generate did not write is never replaced.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from umed_common.atomic import write_json_atomic
from umed_common.checksums import sha256_file
from umed_common.outputs import OutputFolder, check_name
from umed_common.protocol import view_file_name

TOOL = "drr-generate"

LAYOUTS = ("standard", "mednerf")
RAW_NAME = "drr_line_integrals.npy"


def mednerf_uint8(line_integrals: np.ndarray) -> np.ndarray:
    """(H, W) line integrals -> uint8 as MedNeRF: / own maximum * 255, flipped left-right.

    Air integrates to 0, hence the black background. An all-zero image stays zero.
    """
    peak = float(line_integrals.max())
    scaled = line_integrals / peak * 255.0 if peak > 0 else np.zeros_like(line_integrals)
    return np.fliplr(np.clip(np.round(scaled), 0, 255).astype(np.uint8)).copy()


def output_folder(out_dir: Path) -> OutputFolder:
    return OutputFolder(out_dir, TOOL)


def case_paths(out_dir: Path, case_id: str, layout: str, views: int) -> dict:
    """Final locations of a case's files, relative to out_dir."""
    check_name(case_id, "case id")
    if layout == "mednerf":
        pngs = [Path(f"{case_id}_{view_file_name(k)}") for k in range(views)]
        side = Path("raw") / case_id
    else:
        side = Path(case_id)
        pngs = [side / view_file_name(k) for k in range(views)]
    return {"pngs": pngs, "raw": side / RAW_NAME, "geometry": side / "geometry.json",
            "record": side / "case.json"}


def _relative(paths: dict) -> list[str]:
    return [Path(rel).as_posix() for value in paths.values() for rel in (value if isinstance(value, list) else [value])]


def write_case(out_dir: Path, case_id: str, drrs: np.ndarray, geometry: dict, record: dict,
               layout: str = "standard") -> dict:
    """(V, H, W) float32 -> files; returns `record` completed with checksums.

    A file in the way that drr-generate did not write is refused (UserError) before
    anything moves; earlier outputs of the case are replaced.
    """
    folder = output_folder(out_dir)
    paths = case_paths(folder.root, case_id, layout, drrs.shape[0])
    folder.check_free(_relative(paths))
    with folder.staging() as stage:
        (stage / paths["pngs"][0]).parent.mkdir(parents=True, exist_ok=True)
        png_sha256 = _write_pngs(stage, paths["pngs"], drrs)
        (stage / paths["raw"]).parent.mkdir(parents=True, exist_ok=True)
        np.save(stage / paths["raw"], drrs.astype(np.float32, copy=False))
        write_json_atomic(stage / paths["geometry"], geometry)
        png_lines = "".join(f"{rel.name} {digest}\n" for rel, digest in zip(paths["pngs"], png_sha256))
        record = {**record, "outputs": str(paths["geometry"].parent if layout == "standard" else "."),
                  "png_sha256": hashlib.sha256(png_lines.encode()).hexdigest(),
                  "raw_sha256": sha256_file(stage / paths["raw"]),
                  "geometry_sha256": sha256_file(stage / paths["geometry"])}
        write_json_atomic(stage / paths["record"], record)
        folder.claim(_relative(paths))
        for rel in [*paths["pngs"], paths["raw"], paths["geometry"], paths["record"]]:
            (folder.root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / rel, folder.path(rel))  # the record moves last: it marks the case done
    return record


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W) uint8 -> PNG file content (PIL's default compression, as before)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_one_png(path: Path, line_integrals: np.ndarray) -> str:
    data = png_bytes(mednerf_uint8(line_integrals))
    try:
        path.write_bytes(data)
    except OSError as err:  # a failed write() names no file: name it for the case's message
        raise OSError(err.errno, err.strerror, str(path)) from None
    return hashlib.sha256(data).hexdigest()


# PNG encoding (zlib) and hashing release the GIL: a few threads overlap the 72 small files.
PNG_THREADS = 4


def _write_pngs(stage: Path, rels: list[Path], drrs: np.ndarray) -> list[str]:
    """Every view's PNG written straight into the staging folder (the folder is what moves
    into place atomically, so no temporary per file); SHA-256 taken from the bytes written,
    not by reading the files back."""
    with ThreadPoolExecutor(max_workers=PNG_THREADS) as pool:
        return list(pool.map(_write_one_png, [stage / rel for rel in rels], drrs))


def finished_record(out_dir: Path, case_id: str, layout: str) -> dict | None:
    """The record of a case finished by an earlier run, or None."""
    record = case_paths(Path(out_dir), case_id, layout, 0)["record"]
    try:
        return json.loads((Path(out_dir) / record).read_text())
    except (OSError, ValueError):
        return None


def adopt_earlier_case(out_dir: Path, case_id: str, layout: str, record: dict) -> None:
    """Outputs written before drr-generate kept a record: claim them when every checksum of their
    case.json matches the files (so they are drr-generate's own, not a user's edited copies)."""
    folder = output_folder(out_dir)
    views = int(record.get("views", 0) or 0)
    paths = case_paths(folder.root, case_id, layout, views)
    if views < 1 or all(rel in folder.owned() for rel in _relative(paths)):
        return
    try:
        png_lines = "".join(f"{rel.name} {sha256_file(folder.root / rel)}\n" for rel in paths["pngs"])
        matches = (hashlib.sha256(png_lines.encode()).hexdigest() == record.get("png_sha256")
                   and sha256_file(folder.root / paths["raw"]) == record.get("raw_sha256")
                   and sha256_file(folder.root / paths["geometry"]) == record.get("geometry_sha256"))
    except OSError:
        return
    if matches:
        folder.claim(_relative(paths))


def remove_case(out_dir: Path, case_id: str, layout: str, views: int) -> None:
    """Delete a case's earlier outputs (for --overwrite): only files drr-generate recorded as its own."""
    folder = output_folder(out_dir)
    paths = set(_relative(case_paths(folder.root, case_id, layout, views)))
    folder.release(paths & folder.owned())
