"""drr/fast_projector.py against our Siddon, analytic truth and (real CT) Plastimatch exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from drr_test_volumes import small_hu_volume

from drr.analytic_phantom import Blob, analytic_drr, voxelise
from drr.attenuation import hu_to_attenuation
from drr.bench_speed import scores
from drr.fast_projector import project_fast
from drr.geometry import Geometry, preset_geometry
from drr.projector import project

SPACING = (1.1, 1.0, 2.5)  # anisotropic, slices thick as in chest CT


def small_affine(shape_zyx) -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape_zyx[::-1], SPACING)]
    return affine


def steep_geometry(views=8) -> Geometry:
    """Off-centre isocentre, 45-degree views (columns split between march axes), steep rows."""
    return Geometry(isocenter_mm=(3.0, 1.0, 5.0), detector_rows=33, detector_cols=35, detector_height_mm=200.0,
                    detector_width_mm=200.0, views=views, start_angle_deg=10.0, angle_step_deg=45.0)


def rel_rms(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt())


@pytest.fixture(scope="module")
def small_case():
    mu = torch.from_numpy(hu_to_attenuation(small_hu_volume(0, (30, 40, 44))))
    affine, geometry = small_affine(mu.shape), steep_geometry()
    return mu, affine, geometry, project(mu, affine, geometry, method="exact")


ENGINES = ["compiled", "torch"]


@pytest.mark.parametrize("engine", ENGINES)
def test_group_one_is_siddon(small_case, engine):
    mu, affine, geometry, siddon = small_case
    fast = project_fast(mu, affine, geometry, group=1, table_dtype=torch.float32, engine=engine)
    assert rel_rms(fast, siddon) < 5e-4
    assert float((fast - siddon).abs().max()) < 0.01 * float(siddon.max())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("group, tolerance", [(2, 2e-3), (4, 4e-3)])
def test_grouped_knots_stay_close_to_siddon(small_case, group, tolerance, engine):
    mu, affine, geometry, siddon = small_case
    fast = project_fast(mu, affine, geometry, group=group, table_dtype=torch.float32, engine=engine)
    assert rel_rms(fast, siddon) < tolerance


@pytest.mark.parametrize("group", [1, 3])
def test_engines_agree(small_case, group):
    """The compiled kernel (drr.fast_kernel) and the torch engine compute the same sums; float16 rows
    differ only by the torch engine rounding each knot's sum to float16."""
    mu, affine, geometry, siddon = small_case
    runs = {(engine, dtype): project_fast(mu, affine, geometry, group=group, table_dtype=dtype, engine=engine)
            for engine in ENGINES for dtype in (torch.float32, torch.float16)}
    assert rel_rms(runs["compiled", torch.float32], runs["torch", torch.float32]) < 2e-6
    assert rel_rms(runs["compiled", torch.float16], runs["torch", torch.float16]) < 2e-4
    assert rel_rms(runs["compiled", torch.float16], siddon) <= rel_rms(runs["torch", torch.float16], siddon) + 1e-6


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("profile", ["z", "x", "y"])
def test_one_axis_profiles(profile, engine):
    """A volume varying along one axis only isolates the slice-crossing or the two-tap pass."""
    rng = np.random.default_rng(1)
    shape = (30, 40, 44)
    axis = {"z": 0, "y": 1, "x": 2}[profile]
    values = rng.uniform(0.0, 0.03, shape[axis]).astype(np.float32)
    mu = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(
        values.reshape([-1 if a == axis else 1 for a in range(3)]), shape)))
    affine, geometry = small_affine(shape), steep_geometry(views=4)
    siddon = project(mu, affine, geometry, method="exact")
    assert rel_rms(project_fast(mu, affine, geometry, group=1, table_dtype=torch.float32, engine=engine), siddon) < 6e-4


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("group", [1, 4])
def test_half_precision_rows_cost_little(small_case, group, engine):
    """The default float16 storage of the slice differences against float32, same knots."""
    mu, affine, geometry, siddon = small_case
    half = project_fast(mu, affine, geometry, group=group, engine=engine)
    full = project_fast(mu, affine, geometry, group=group, table_dtype=torch.float32, engine=engine)
    assert 0 < rel_rms(half, full) < 5e-4
    assert rel_rms(half, siddon) < 1.1 * rel_rms(full, siddon) + 5e-4


@pytest.mark.parametrize("engine", ENGINES)
def test_views_on_threads_equal_views_in_turn(small_case, engine):
    mu, affine, geometry, _ = small_case
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as drr-generate runs it (drr.cli.threads_for)
        parallel = project_fast(mu, affine, geometry, workers=2, engine=engine)
        assert torch.get_num_threads() == 1  # the projector never changes the process-wide setting
        serial = project_fast(mu, affine, geometry, workers=1, engine=engine)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(parallel, serial)


@pytest.mark.parametrize("engine", ENGINES)
def test_rays_missing_the_volume_are_zero(engine):
    mu = torch.ones((6, 8, 8))
    geometry = Geometry(isocenter_mm=(0.0, 0.0, 0.0), detector_rows=9, detector_cols=9, detector_height_mm=300.0,
                        detector_width_mm=300.0, views=3, angle_step_deg=30.0)
    affine = small_affine(mu.shape)
    siddon = project(mu, affine, geometry, method="exact")
    fast = project_fast(mu, affine, geometry, engine=engine)
    assert torch.equal(fast == 0, siddon == 0)
    assert rel_rms(fast, siddon) < 0.01


@pytest.mark.parametrize("engine", ENGINES)
def test_as_close_to_analytic_truth_as_siddon(engine):
    """Ellipsoids voxelised with partial volume: the fast error is Siddon's, not more."""
    blobs = (Blob((0.0, 0.0, 0.0), (20.0, 15.0, 18.0), 0.02), Blob((5.0, -3.0, 4.0), (6.0, 4.0, 5.0), 0.02, 30.0))
    shape = (20, 48, 52)
    mu = torch.from_numpy(voxelise(blobs, shape, SPACING))
    geometry = Geometry(isocenter_mm=(0.0, 0.0, 0.0), detector_rows=40, detector_cols=40, detector_height_mm=110.0,
                        detector_width_mm=110.0, views=4, start_angle_deg=3.0, angle_step_deg=41.0)
    truth = torch.from_numpy(analytic_drr(blobs, geometry))
    siddon = project(mu, small_affine(shape), geometry, method="exact")
    fast = project_fast(mu, small_affine(shape), geometry, engine=engine)
    assert rel_rms(siddon, truth) < 0.1  # the voxelisation of 2.5 mm slices itself
    assert rel_rms(fast, truth) < 1.05 * rel_rms(siddon, truth)


def test_options_and_errors(small_case):
    mu, affine, geometry, siddon = small_case
    seen = []
    auto = project_fast(mu, affine, geometry, view_indices=[1, 3], workers=2, progress=seen.append)
    assert seen == [0.5, 1.0]  # one view per worker
    assert torch.equal(auto, project_fast(mu, affine, geometry, view_indices=[1, 3], downsample=1))
    assert rel_rms(project_fast(mu, affine, geometry, downsample=2), siddon) < 0.05
    with pytest.raises(ValueError, match="signed permutation"):  # oblique: resample first
        oblique = affine.copy()
        oblique[0, 1] = 0.3
        project_fast(mu, oblique, geometry)
    with pytest.raises(ValueError, match="group"):
        project_fast(mu, affine, geometry, group=0)
    with pytest.raises(ValueError, match="engine"):
        project_fast(mu, affine, geometry, engine="numba")


@pytest.mark.slow
def test_real_chest_ct_matches_plastimatch_exact(chest_volume):
    from drr.plastimatch_peer import find_plastimatch, run_plastimatch
    from drr.orientation import axis_aligned
    if find_plastimatch() is None:
        pytest.skip("plastimatch not installed (pip install plastimatch, or apt-get install plastimatch)")
    geometry = preset_geometry("chest", chest_volume.centre_mm()).with_views(4, 0.0, 45.0)
    theirs, _ = run_plastimatch(chest_volume, geometry, "exact")
    aligned = axis_aligned(chest_volume)
    mu = torch.from_numpy(hu_to_attenuation(aligned.hu))
    for engine in ENGINES:
        ncc, rel = scores(project_fast(mu, aligned.index_to_world(), geometry, engine=engine).numpy(), theirs)
        assert ncc >= 0.99999 and rel <= 0.002, (engine, ncc, rel)
