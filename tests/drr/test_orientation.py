"""drr/orientation.py: the same physical volume gives the same DRRs in every voxel order.

Acceptance 1 of issue 11: all 48 orders and signs of the voxel axes (SimpleITK's
DICOMOrient makes them, independently of our code), sagittal and coronal DICOM
series, and an oblique direction, through every projector of drr-generate.
"""
from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from drr.bench_speed import scores
from drr.cli import main
from drr.dicom_io import write_dicom_series
from drr.geometry import Geometry, pixel_centres, view_frames
from drr.orientation import align_to_axes, align_volume, axes_code, axis_aligned_view, signed_permutation
from drr.pipeline import DrrOptions, render_volume
from drr.projector import METHODS, project
from drr.volume import Volume, from_sitk, to_sitk
from drr.volume_io import discover_cases, load_case

MIN_NCC, MAX_REL_RMS = 0.9999, 0.01
# Eight views 45 deg apart, off the axes, so every view mixes both horizontal axes.
VIEWS = dict(views=8, start_angle_deg=10.0, angle_step_deg=45.0)


@pytest.fixture(autouse=True, scope="module")
def single_intra_op_thread():
    """Hundreds of tiny projections: torch's intra-op threads only add waiting (on a busy
    2-core runner this file took 65 s with 2 threads, 11 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def all_axes_codes() -> list[str]:
    """The 48 orders and signs of three axes, as DICOMOrient codes ('LPS', 'PIR', ...)."""
    return ["".join(letters[axis] for axis in order)
            for order in itertools.permutations(range(3)) for letters in itertools.product("LR", "PA", "SI")]


def reoriented(volume: Volume, code: str) -> Volume:
    """The same physical volume with its voxel axes running towards `code` (SimpleITK)."""
    return from_sitk(sitk.DICOMOrient(to_sitk(volume), code), f"{volume.source} {code}")


def ellipsoid_volume(shape_zyx=(16, 20, 24), spacing_xyz=(1.1, 1.0, 2.0)) -> Volume:
    """An LPS 'patient' in air: three off-centre ellipsoids of different sizes and HU (integers)."""
    z, y, x = np.indices(shape_zyx, dtype=np.float64)
    hu = np.full(shape_zyx, -1000.0)
    for (cx, cy, cz), (rx, ry, rz), value in (((10.0, 11.0, 7.0), (8.0, 6.0, 6.0), 40.0),
                                              ((14.0, 8.0, 9.0), (3.0, 2.0, 3.0), 900.0),
                                              ((7.0, 13.0, 4.0), (2.0, 4.0, 2.0), 400.0)):
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1
        hu[inside] = value
    return Volume(hu.astype(np.float32), spacing_xyz, (-12.0, 30.0, -150.0), np.eye(3), "ellipsoids")


def options(projector: str, detector_mm: float) -> DrrOptions:
    return DrrOptions(projector=projector, rows=32, cols=32, detector_mm=detector_mm, device="cpu", **VIEWS)


def assert_agree(got: np.ndarray, reference: np.ndarray, label: str) -> tuple[float, float]:
    ncc, rel = scores(got, reference)
    assert ncc >= MIN_NCC and rel <= MAX_REL_RMS, f"{label}: worst-view NCC {ncc:.7f}, rel RMS {rel:.3%}"
    return ncc, rel


def check_all_orders(volume_lps: Volume, projector: str, detector_mm: float) -> None:
    """Every voxel order of `volume_lps` against its LPS DRRs; the record says how it was fed."""
    reference, _, _ = render_volume(volume_lps, options(projector, detector_mm), "cpu")
    failures = []
    for code in all_axes_codes():
        volume = reoriented(volume_lps, code)
        assert axes_code(volume.direction) == code
        drrs, _, alignment = render_volume(volume, options(projector, detector_mm), "cpu")
        expected = ("permuted" if code != "LPS" else "none") if projector == "fast" else "none"
        assert alignment.method == expected and code in alignment.record()
        ncc, rel = scores(drrs, reference)
        if ncc < MIN_NCC or rel > MAX_REL_RMS:
            failures.append(f"{code}: NCC {ncc:.5f} rel RMS {rel:.3%}")
    assert not failures, f"{projector}: {len(failures)} of 48 orders differ from LPS: {failures}"


@pytest.mark.parametrize("projector", METHODS)
def test_all_48_orders_small_volume(projector):
    check_all_orders(ellipsoid_volume(), projector, detector_mm=100.0)


@pytest.fixture(scope="module")
def small_chest(chest_volume) -> Volume:
    """The shared chest CT (LAS) box-averaged to ~64 x 64 x 33 voxels, reoriented to LPS."""
    shrunk = sitk.BinShrink(to_sitk(chest_volume), [8, 8, 4])
    return reoriented(from_sitk(shrunk, "chest"), "LPS")


@pytest.mark.parametrize("projector", METHODS)
def test_all_48_orders_chest_ct(small_chest, projector):
    check_all_orders(small_chest, projector, detector_mm=500.0)


@pytest.mark.parametrize("code", ["PIR", "LIA"])  # sagittal; coronal with slices written A -> P
def test_sagittal_and_coronal_dicom_series(tmp_path, code):
    volume_lps = ellipsoid_volume()
    volume = reoriented(volume_lps, code)
    write_dicom_series(volume.hu.astype(np.int16), volume.spacing_xyz, volume.origin_xyz, tmp_path / code,
                       direction=volume.direction)
    (case,), problems = discover_cases(tmp_path / code)
    loaded = load_case(case)
    assert problems == [] and axes_code(loaded.direction) == ("PIR" if code == "PIR" else "LIP")
    for projector in METHODS:
        reference, _, _ = render_volume(volume_lps, options(projector, 100.0), "cpu")
        drrs, _, _ = render_volume(loaded, options(projector, 100.0), "cpu")
        assert_agree(drrs, reference, f"{code} series, {projector}")


def test_drr_generate_on_reoriented_nifti(tmp_path):
    """The issue's report: a PIR NIfTI gave upside-down views with the fast projector."""
    volume = ellipsoid_volume()
    outputs = {}
    for code in ("LPS", "PIR"):
        (tmp_path / "in" / code).mkdir(parents=True)
        sitk.WriteImage(sitk.DICOMOrient(to_sitk(volume), code), str(tmp_path / "in" / code / "ct.nii.gz"))
        assert main([str(tmp_path / "in" / code), str(tmp_path / code), "--quiet", "--views", "8",
                     "--angle-step-deg", "45", "--rows", "32", "--cols", "32", "--detector-mm", "100"]) == 0
        outputs[code] = np.load(tmp_path / code / "ct" / "drr_line_integrals.npy")
        (row,) = csv.DictReader(open(tmp_path / code / "manifest.csv"))
        assert row["orientation"].startswith("none" if code == "LPS" else "permuted: voxel axes PIR -> LPS")
    assert_agree(outputs["PIR"], outputs["LPS"], "drr-generate PIR")


def rotation(axis, angle_deg: float) -> np.ndarray:
    """(3, 3) rotation by `angle_deg` about `axis` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    angle = np.radians(angle_deg)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


# Smooth, asymmetric mu: (centre mm from the volume centre, sigma mm, peak mu per mm).
# Why Gaussians 8-16 voxels wide: the projectors model voxels differently (Siddon: boxes,
# trilinear: interpolation), so they differ by ~h / sigma where mu changes; sharp organ
# edges or a -800 HU threshold on a CI-sized grid differ by 3-8 % at any orientation.
GAUSSIANS = (((0.0, 0.0, 0.0), 16.0, 0.020), ((20.0, -12.0, 16.0), 10.0, 0.030),
             ((-24.0, 16.0, -20.0), 10.0, 0.025), ((12.0, 24.0, -24.0), 8.0, 0.040))
OBLIQUE_SHAPE_ZYX, OBLIQUE_SPACING_XYZ = (134, 178, 160), (1.0, 0.9, 1.2)  # +-80 mm: tails < 1e-5


def gaussian_volume(direction: np.ndarray, centre_mm: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """GAUSSIANS sampled at the voxel centres of a grid with `direction`, centred at `centre_mm`:
    (Z, Y, X) mu per mm and its (4, 4) index -> world affine."""
    local = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(OBLIQUE_SHAPE_ZYX[::-1], OBLIQUE_SPACING_XYZ)]
    z, y, x = np.meshgrid(local[2], local[1], local[0], indexing="ij")
    mu = sum(peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma ** 2))
             for (cx, cy, cz), sigma, peak in GAUSSIANS)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(OBLIQUE_SPACING_XYZ)
    affine[:3, 3] = centre_mm - direction @ ((np.array(OBLIQUE_SHAPE_ZYX[::-1]) - 1) / 2 * OBLIQUE_SPACING_XYZ)
    return torch.from_numpy(mu.astype(np.float32)), affine


def gaussian_line_integrals(geometry, direction: np.ndarray, centre_mm: np.ndarray) -> np.ndarray:
    """(V, H, W) analytic source -> pixel integrals of GAUSSIANS placed by `direction`."""
    frames = view_frames(geometry)
    source = frames["source"][:, None, None, :]
    ray = pixel_centres(frames) - source
    length = ray.norm(dim=-1)
    unit = ray / length[..., None]
    total = torch.zeros(length.shape, dtype=torch.float64)
    for offset, sigma, peak in GAUSSIANS:
        to_centre = torch.as_tensor(centre_mm + direction @ np.array(offset)) - source
        along = (to_centre * unit).sum(-1)  # closest approach, as a distance from the source
        miss_sq = (to_centre ** 2).sum(-1) - along ** 2
        width = sigma * np.sqrt(2.0)
        total += (peak * torch.exp(-miss_sq / (2 * sigma ** 2)) * sigma * np.sqrt(np.pi / 2)
                  * (torch.erf((length - along) / width) + torch.erf(along / width)))
    return total.numpy()


def test_oblique_volume_agrees_with_exact():
    """Rotated 15 deg about an oblique axis: exact and trilinear trace it as is, fast gets it
    resampled; exact is the reference, and it is checked against the analytic integrals."""
    direction, centre = rotation((1.0, 2.0, 3.0), 15.0), np.array([5.0, -20.0, 40.0])
    mu, affine = gaussian_volume(direction, centre)
    geometry = Geometry(isocenter_mm=tuple(centre), detector_rows=32, detector_cols=32, detector_height_mm=256.0,
                        detector_width_mm=256.0, **VIEWS)
    exact = project(mu, affine, geometry, method="exact").numpy()
    assert_agree(exact, gaussian_line_integrals(geometry, direction, centre), "oblique, exact vs analytic")
    assert_agree(project(mu, affine, geometry, method="trilinear").numpy(), exact, "oblique, trilinear")
    aligned, aligned_affine, alignment = align_to_axes(mu, affine)
    assert alignment.method == "resampled" and alignment.axes_before == "oblique"
    assert_agree(project(aligned, aligned_affine, geometry, method="fast").numpy(), exact, "oblique, fast")


def test_gantry_tilted_series_keeps_its_shear(tmp_path):
    """Axial slices whose positions step along a 20 deg tilted axis: a sheared grid."""
    volume = ellipsoid_volume()
    tilt = np.radians(20.0)
    volume.direction = np.array([[1.0, 0, 0], [0, 1.0, np.sin(tilt)], [0, 0, np.cos(tilt)]])
    write_dicom_series(volume.hu.astype(np.int16), volume.spacing_xyz, volume.origin_xyz, tmp_path / "tilt",
                       direction=volume.direction)
    (case,), _ = discover_cases(tmp_path / "tilt")
    loaded = load_case(case)
    np.testing.assert_allclose(loaded.index_to_world(), volume.index_to_world(), atol=1e-4)
    reference, _, _ = render_volume(volume, options("exact", 100.0), "cpu")
    for projector in METHODS:
        drrs, _, alignment = render_volume(loaded, options(projector, 100.0), "cpu")
        assert alignment.method == ("resampled" if projector == "fast" else "none")
        if projector == "exact":
            assert_agree(drrs, reference, "tilted series, exact")


def test_axis_aligned_view_is_exact_for_numpy_and_torch():
    volume = reoriented(ellipsoid_volume(), "SRA")
    hu, affine = axis_aligned_view(volume.hu, volume.index_to_world())
    lps = ellipsoid_volume()
    np.testing.assert_array_equal(hu, lps.hu)
    np.testing.assert_allclose(affine, lps.index_to_world(), atol=1e-9)
    tensor, _ = axis_aligned_view(torch.from_numpy(volume.hu), volume.index_to_world())
    assert torch.equal(tensor, torch.from_numpy(lps.hu))


def test_oblique_affine_is_refused_by_fast_projector_and_recognised():
    volume = ellipsoid_volume()
    volume.direction = rotation((0.0, 0.0, 1.0), 15.0)
    assert signed_permutation(volume.direction) is None and axes_code(volume.direction) == "oblique"
    geometry = render_volume(volume, options("exact", 100.0), "cpu")[1]
    with pytest.raises(ValueError, match="signed permutation"):
        project(torch.zeros(volume.hu.shape), volume.index_to_world(), geometry, method="fast")
    aligned, alignment = align_volume(volume)
    np.testing.assert_allclose(aligned.centre_mm(), volume.centre_mm(), atol=1e-9)
    assert alignment.method == "resampled" and np.array_equal(aligned.direction, np.eye(3))
