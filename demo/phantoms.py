"""Procedural knee-like CT phantoms: the demo's dataset made by code (`python -m demo.phantoms OUT`).

A phantom is a cut through a leg around the knee joint, in Hounsfield units:
femur from the top and tibia (with the fibula) from the bottom as cortical
shells filled with marrow, a patella in front of the femoral condyles, muscle,
a subcutaneous fat layer, skin, and air around the leg. The vertical (DICOM z)
axis is the leg's long axis, the axis the DRR source rotates about.

Every size, position and tilt is drawn from a seeded numpy Generator, so a seed
fixes a phantom bit for bit. The anatomy is deliberately not rotationally
symmetric (the knee off the rotation axis, bent and tilted, the patella in
front, an elliptic leg) so that views at different angles differ about as
much as in MedNeRF's real knee DRRs (copying view 0 to all views scores
~18-23 dB PSNR on these phantoms, 16-18 dB on the real knees).

Coordinates are patient LPS in mm with the volume centre at the origin:
+x left, +y posterior (so anterior is -y), +z superior; arrays are (z, y, x).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from drr.dicom_io import write_dicom_series
from umed_common.atomic import atomic_path
from umed_common.errors import UserError

# Tissue values (HU) and their spread between phantoms. Cortex above +1000 is
# clamped to +1000 by the DRR recipe (REFERENCE 2), as real cortex is.
AIR_HU = -1000.0
FAT_HU = (-110.0, -80.0)
MUSCLE_HU = (35.0, 55.0)
SKIN_HU = (60.0, 90.0)
CORTEX_HU = (1100.0, 1500.0)
MARROW_HU = (200.0, 400.0)
NOISE_HU = 12.0  # CT quantum noise, standard deviation
PARTIAL_VOLUME_SIGMA_VOXELS = 0.6  # blur so edges are not staircased

FORMATS = ("nifti", "dicom")
# 96 x 96 voxels of 2 mm across (the leg, off the axis, with air around it) and
# 80 slices (160 mm) up: the volume's top and bottom show in the DRRs, as in
# MedNeRF's knee DRRs.
FIELD_OF_VIEW_MM = 192.0
DEFAULT_SHAPE_ZYX = (80, 96, 96)
DEFAULT_SPACING_XYZ = (2.0, 2.0, 2.0)


def shape_for(size: int) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """(shape_zyx, spacing_xyz) with `size` voxels across and the default field of view."""
    spacing = FIELD_OF_VIEW_MM / size
    return (max(1, round(size * 5 / 6)), size, size), (spacing, spacing, spacing)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in a bone's local frame: centre and semi-axes (mm)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]


@dataclass(frozen=True)
class Tube:
    """A vertical tube of elliptic section in a bone's local frame (mm).

    The semi-axes go smoothly (smoothstep) from `radii_low` at the bottom of
    `z_range` to `radii_high` at its top: equal radii give a shaft, unequal
    ones the flare of a metaphysis.
    """

    centre_xy: tuple[float, float]
    z_range: tuple[float, float]
    radii_low: tuple[float, float]
    radii_high: tuple[float, float]


def voxel_centres_mm(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> np.ndarray:
    """Voxel centres relative to the volume centre; (Z, Y, X, 3) float32 as (x, y, z) mm."""
    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * s
            for n, s in zip(shape_zyx, reversed(tuple(spacing_xyz)))]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return np.stack([x, y, z], axis=-1)


def rotation_matrix(tilt_x_deg: float, tilt_y_deg: float) -> np.ndarray:
    """Rotation about x (flexion, sagittal tilt) then about y (varus/valgus); (3, 3)."""
    ax, ay = np.deg2rad(tilt_x_deg), np.deg2rad(tilt_y_deg)
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rot_y = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    return (rot_y @ rot_x).astype(np.float32)


def to_local(points: np.ndarray, origin: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """World points (..., 3) into a frame at `origin` rotated by `rotation`; (..., 3)."""
    # world = R @ local, so local = R^T (p - o): for row vectors (p - o) @ R.
    return (points - origin.astype(np.float32)) @ rotation


def inside(shape: Ellipsoid | Tube, local: np.ndarray) -> np.ndarray:
    """Mask of the local points (..., 3) inside `shape`; (...) bool."""
    if isinstance(shape, Ellipsoid):
        d = (local - np.array(shape.centre, dtype=np.float32)) / np.array(shape.radii, dtype=np.float32)
        return (d ** 2).sum(axis=-1) <= 1.0
    z_low, z_high = shape.z_range
    z = local[..., 2]
    t = np.clip((z - z_low) / (z_high - z_low), 0.0, 1.0)
    blend = t * t * (3.0 - 2.0 * t)
    rx = shape.radii_low[0] + (shape.radii_high[0] - shape.radii_low[0]) * blend
    ry = shape.radii_low[1] + (shape.radii_high[1] - shape.radii_low[1]) * blend
    dx = (local[..., 0] - shape.centre_xy[0]) / rx
    dy = (local[..., 1] - shape.centre_xy[1]) / ry
    return (dx ** 2 + dy ** 2 <= 1.0) & (z >= z_low) & (z <= z_high)


def union(shapes: Sequence[Ellipsoid | Tube], local: np.ndarray) -> np.ndarray:
    """Mask of the points (..., 3) inside any of `shapes`; (...) bool."""
    mask = np.zeros(local.shape[:-1], dtype=bool)
    for shape in shapes:
        mask |= inside(shape, local)
    return mask


def marrow_of(bone: np.ndarray, spacing_xyz: Sequence[float], cortex_mm: float) -> np.ndarray:
    """Voxels of `bone` (Z, Y, X) deeper than `cortex_mm` below its surface.

    A distance transform of the union (not a shrunk copy of each shape) keeps
    the cortex only on the outer surface, with no walls where shapes meet.
    """
    depth_mm = ndimage.distance_transform_edt(bone, sampling=tuple(reversed(tuple(spacing_xyz))))
    return depth_mm > cortex_mm


@dataclass(frozen=True)
class KneeAnatomy:
    """The drawn parameters of one phantom (mm, degrees); see `draw_anatomy`."""

    joint_xyz: tuple[float, float, float]
    joint_gap: float
    side: int  # +1: lateral condyle towards +x, -1: mirrored (a left or right knee)
    leg_tilt_deg: tuple[float, float]  # the whole leg about the joint centre (x, y axes)
    flexion_deg: float  # femur relative to tibia, about the condyles' centre
    valgus_deg: float
    femur_shaft_radius: float
    condyle_radii: tuple[float, float, float]
    condyle_separation: float
    plateau_radii_xy: tuple[float, float]
    tibia_shaft_radius: float
    cortex: float
    patella_radii: tuple[float, float, float]
    leg_offset_xy: tuple[float, float]  # leg axis relative to the bones, in the tibia's frame
    leg_radii_xy: tuple[float, float]
    fat: float
    skin: float


def draw_anatomy(rng: np.random.Generator) -> KneeAnatomy:
    """Draw one knee's sizes, positions and tilts from plausible adult ranges."""
    u = rng.uniform
    # A knee is rarely on the scanner's axis: the joint sits 6-16 mm off it,
    # which moves the leg across the detector as the source turns (as in
    # MedNeRF's knee DRRs).
    off_axis_mm, off_axis_angle = u(6.0, 16.0), u(0.0, 2.0 * np.pi)
    condyle = (u(13.0, 17.0), u(19.0, 25.0), u(14.0, 18.0))
    return KneeAnatomy(
        joint_xyz=(off_axis_mm * np.cos(off_axis_angle), off_axis_mm * np.sin(off_axis_angle), u(-8.0, 8.0)),
        joint_gap=u(5.0, 8.0),
        side=int(rng.choice([-1, 1])),
        leg_tilt_deg=(u(-8.0, 8.0), u(-6.0, 6.0)),
        flexion_deg=u(0.0, 15.0),
        valgus_deg=u(-2.0, 2.0),
        femur_shaft_radius=u(11.0, 14.0),
        condyle_radii=condyle,
        condyle_separation=u(40.0, 50.0),
        plateau_radii_xy=(u(34.0, 40.0), u(24.0, 29.0)),
        tibia_shaft_radius=u(11.0, 14.0),
        cortex=u(2.5, 4.0),
        patella_radii=(u(18.0, 23.0), u(8.0, 10.5), u(19.0, 24.0)),
        leg_offset_xy=(u(-4.0, 4.0), u(-2.0, 8.0)),
        leg_radii_xy=(u(52.0, 62.0), u(44.0, 54.0)),
        fat=u(4.0, 12.0),
        skin=u(1.5, 2.5),
    )


def femur_shapes(a: KneeAnatomy) -> list[Ellipsoid | Tube]:
    """Femur in its own frame (origin at the joint centre, +z up the shaft)."""
    rx, ry, rz = a.condyle_radii
    bottom = a.joint_gap / 2.0
    half = a.condyle_separation / 2.0
    r = a.femur_shaft_radius
    flare_low, flare_high = bottom + rz, bottom + rz + 45.0
    return [
        Tube((0.0, 0.0), (flare_high, 400.0), (r, 0.95 * r), (r, 0.95 * r)),
        Tube((0.0, 0.0), (flare_low, flare_high), (half + 0.8 * rx, 0.9 * ry), (r, 0.95 * r)),
        Ellipsoid((-a.side * half, 5.0, bottom + rz), (rx, ry, rz)),
        # The lateral condyle is a little smaller, so the two sides differ.
        Ellipsoid((a.side * half, 4.0, bottom + 0.9 * rz), (0.92 * rx, 0.95 * ry, 0.9 * rz)),
    ]


def tibia_shapes(a: KneeAnatomy) -> list[Ellipsoid | Tube]:
    """Tibia and fibula in the tibia's frame (origin at the joint centre)."""
    top = -a.joint_gap / 2.0
    px, py = a.plateau_radii_xy
    r = a.tibia_shaft_radius
    fibula_xy = (a.side * 0.72 * px, 0.55 * py)
    return [
        Tube((0.0, 0.0), (top - 10.0, top), (px, py), (px, py)),
        Tube((0.0, 0.0), (top - 55.0, top - 10.0), (r, 0.9 * r), (px, py)),
        Tube((0.0, 0.0), (-400.0, top - 55.0), (r, 0.9 * r), (r, 0.9 * r)),
        Ellipsoid((0.0, -0.75 * py, top - 28.0), (10.0, 8.0, 14.0)),  # tibial tuberosity
        Ellipsoid((fibula_xy[0], fibula_xy[1], top - 22.0), (10.0, 9.0, 9.0)),  # fibular head
        Tube(fibula_xy, (-400.0, top - 22.0), (6.0, 6.0), (6.0, 6.0)),
    ]


def patella_shape(a: KneeAnatomy) -> Ellipsoid:
    """Patella in the femur's frame, just in front of the condyles."""
    # Anterior surface of the distal femur: the flare's front (see femur_shapes).
    front = min(5.0 - a.condyle_radii[1], -0.9 * a.condyle_radii[1])
    centre_z = a.joint_gap / 2.0 + a.condyle_radii[2] + 12.0
    return Ellipsoid((0.0, front - a.patella_radii[1] - 6.0, centre_z), a.patella_radii)


def leg_masks(a: KneeAnatomy, local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(leg, below skin, muscle) masks from leg-frame points (..., 3); the thigh widens upwards."""
    widen = 1.0 + 0.08 * np.tanh(local[..., 2] / 40.0)
    dx = local[..., 0] - a.leg_offset_xy[0]
    dy = local[..., 1] - a.leg_offset_xy[1]

    def within(shrink_mm: float) -> np.ndarray:
        rx = a.leg_radii_xy[0] * widen - shrink_mm
        ry = a.leg_radii_xy[1] * widen - shrink_mm
        return (dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0

    return within(0.0), within(a.skin), within(a.skin + a.fat)


def bone_frames(a: KneeAnatomy, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (..., 3) in the tibia's frame, the femur's frame, and the bent leg's frame.

    The femur flexes about its condyles' centre, as a knee rolls on the
    plateau, so the joint gap stays open and the bones never overlap. The soft
    tissue follows the tibia below the plane bisecting the flexion and the
    femur above it, a mitred joint that bends the leg without a seam.
    """
    tibia = to_local(points, np.array(a.joint_xyz, dtype=np.float32), rotation_matrix(*a.leg_tilt_deg))
    pivot = np.array([0.0, 0.0, a.joint_gap / 2.0 + a.condyle_radii[2]], dtype=np.float32)
    femur = to_local(tibia, pivot, rotation_matrix(a.flexion_deg, a.valgus_deg)) + pivot
    bisector = rotation_matrix(a.flexion_deg / 2.0, a.valgus_deg / 2.0)[:, 2]
    above = ((tibia - pivot) @ bisector) > 0.0
    leg = np.where(above[..., None], femur, tibia)
    return tibia, femur, leg


def label_volume(a: KneeAnatomy, points: np.ndarray, spacing_xyz: Sequence[float],
                 rng: np.random.Generator) -> np.ndarray:
    """Piecewise-constant HU volume of anatomy `a` at `points` (Z, Y, X, 3); (Z, Y, X) float32."""
    tibia_local, femur_local, leg_local = bone_frames(a, points)
    leg, below_skin, muscle = leg_masks(a, leg_local)
    bone = union(femur_shapes(a), femur_local) | union([patella_shape(a)], femur_local)
    bone |= union(tibia_shapes(a), tibia_local)
    bone &= muscle
    # At least two voxels of cortex: a one-voxel shell blurs into soft tissue
    # (partial volume) and leaves the bone's edge broken in the DRR.
    marrow = marrow_of(bone, spacing_xyz, max(a.cortex, 2.0 * max(spacing_xyz)))

    hu = np.full(points.shape[:-1], AIR_HU, dtype=np.float32)
    for mask, value_range in ((leg, SKIN_HU), (below_skin, FAT_HU), (muscle, MUSCLE_HU),
                              (bone, CORTEX_HU), (marrow, MARROW_HU)):
        hu[mask] = rng.uniform(*value_range)
    return hu


def make_knee_phantom(seed: int | Sequence[int], shape_zyx: Sequence[int] = DEFAULT_SHAPE_ZYX,
                      spacing_xyz: Sequence[float] = DEFAULT_SPACING_XYZ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """One knee phantom fixed by `seed` (an int or a sequence of ints for numpy's SeedSequence).

    Returns (hu_zyx, spacing_xyz): hu_zyx (Z, Y, X) int16 Hounsfield units, the
    volume centred on the origin, z the leg's long axis.
    """
    if len(shape_zyx) != 3 or min(shape_zyx) < 8:
        raise UserError(f"phantom shape {tuple(shape_zyx)}: need three sizes of at least 8 voxels")
    rng = np.random.default_rng(seed)
    anatomy = draw_anatomy(rng)
    points = voxel_centres_mm(shape_zyx, spacing_xyz)
    hu = label_volume(anatomy, points, spacing_xyz, rng)
    hu = ndimage.gaussian_filter(hu, sigma=PARTIAL_VOLUME_SIGMA_VOXELS, mode="nearest")
    leg = hu > AIR_HU + 50.0  # air stays air: scanners read it as a flat -1000
    hu[leg] += rng.normal(0.0, NOISE_HU, size=int(leg.sum())).astype(np.float32)
    hu_zyx = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    return hu_zyx, tuple(float(s) for s in spacing_xyz)


def volume_origin_xyz(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> tuple[float, float, float]:
    """Position (mm) of voxel (0, 0, 0) that puts the volume centre at the origin."""
    return tuple(-(n - 1) / 2.0 * s for n, s in zip(reversed(tuple(shape_zyx)), spacing_xyz))


def write_nifti(hu_zyx: np.ndarray, spacing_xyz: Sequence[float], path: Path) -> Path:
    """Write an int16 HU volume (Z, Y, X) as NIfTI with identity (LPS) direction, atomically."""
    import SimpleITK as sitk  # noqa: PLC0415 - heavy import only when writing

    image = sitk.GetImageFromArray(hu_zyx)
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    image.SetOrigin(volume_origin_xyz(hu_zyx.shape, spacing_xyz))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp))
    return path


def write_dicom(hu_zyx: np.ndarray, spacing_xyz: Sequence[float], folder: Path, patient_id: str,
                series_uid: str | None = None) -> Path:
    """Write a DICOM series into `folder` through the DRR package's writer, atomically.

    The series goes to a temporary sibling folder that is renamed into place,
    so an interrupted run never leaves half a series behind.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        write_dicom_series(hu_zyx, tuple(spacing_xyz), volume_origin_xyz(hu_zyx.shape, spacing_xyz),
                           tmp, patient_id=patient_id, series_uid=series_uid)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def phantom_name(index: int) -> str:
    """Case name of the phantom at `index` (0-based): phantom01, phantom02, ..."""
    return f"phantom{index + 1:02d}"


def write_phantom_population(out_dir: str | Path, n: int, seed: int = 0,
                             formats: Sequence[str] = FORMATS, *, overwrite: bool = False,
                             shape_zyx: Sequence[int] = DEFAULT_SHAPE_ZYX,
                             spacing_xyz: Sequence[float] = DEFAULT_SPACING_XYZ,
                             progress: bool = True) -> list[Path]:
    """Write `n` phantoms into `out_dir`, one volume each; returns their paths.

    Phantom i (seeded by (seed, i)) is written in format formats[i % len(formats)]:
    'nifti' -> phantomNN.nii.gz, 'dicom' -> a series in folder phantomNN/.
    Each phantom is written once so a folder scan finds each case once.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if n < 1 or not formats or unknown:
        raise UserError(f"phantoms: need n >= 1 and formats from {FORMATS} (got n={n}, formats={tuple(formats)})")
    out_dir = Path(out_dir)
    targets = [_target(out_dir, i, formats[i % len(formats)]) for i in range(n)]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]}: already exists (pass --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, target in enumerate(tqdm(targets, desc="phantoms", unit="volume", disable=not progress)):
        hu_zyx, spacing = make_knee_phantom((seed, i), shape_zyx, spacing_xyz)
        for earlier in (_target(out_dir, i, fmt) for fmt in FORMATS):  # in any format: one case each
            if earlier.is_dir():
                shutil.rmtree(earlier)
            elif earlier.exists():
                earlier.unlink()
        if target.suffix == ".gz":
            write_nifti(hu_zyx, spacing, target)
        else:
            write_dicom(hu_zyx, spacing, target, patient_id=target.name,
                        series_uid=_series_uid(seed, i))
    return targets


def _series_uid(seed: int, index: int) -> str:
    """A DICOM UID fixed by the phantom's seed, so reruns write the same series."""
    from pydicom.uid import generate_uid  # noqa: PLC0415

    return generate_uid(entropy_srcs=["umednerf knee phantom", str(seed), str(index)])


def _target(out_dir: Path, index: int, fmt: str) -> Path:
    name = phantom_name(index)
    return out_dir / (f"{name}.nii.gz" if fmt == "nifti" else name)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m demo.phantoms OUT [--n N] [--seed S] [--formats nifti dicom] [--overwrite]`."""
    parser = argparse.ArgumentParser(prog="python -m demo.phantoms",
                                     description="Write a population of procedural knee CT phantoms.")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--n", type=int, default=8, help="number of phantoms (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="population seed (default 0)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                        help="formats used in turn, one per phantom (default: nifti dicom)")
    parser.add_argument("--size", type=int, default=96,
                        help="voxels across (5/6 as many slices); the spacing scales so the field of view "
                             "stays 192 mm (default 96)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing phantoms")
    args = parser.parse_args(argv)
    if args.size < 16:
        raise UserError(f"--size {args.size}: need at least 16 voxels per side")
    shape_zyx, spacing_xyz = shape_for(args.size)
    paths = write_phantom_population(args.out, args.n, args.seed, args.formats, overwrite=args.overwrite,
                                     shape_zyx=shape_zyx, spacing_xyz=spacing_xyz)
    print(f"wrote {len(paths)} phantoms to {args.out}")
    return 0


if __name__ == "__main__":
    from demo.phantoms import main as _main  # named demo.phantoms, not __main__, in error messages
    from umed_common.errors import cli_entry  # noqa: PLC0415

    raise SystemExit(cli_entry(_main)())
