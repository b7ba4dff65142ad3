"""Procedural knee phantoms (demo/phantoms.py): determinism, anatomy, files."""
from __future__ import annotations

import numpy as np
import pytest

from demo import phantoms
from umed_common.errors import UserError

SMALL = dict(zip(("shape_zyx", "spacing_xyz"), phantoms.shape_for(48)))  # (40, 48, 48) voxels of 4 mm


def attenuation(hu_zyx: np.ndarray) -> np.ndarray:
    """Plastimatch's preprocess model (REFERENCE 2), enough to compare projections."""
    hu = np.clip(hu_zyx.astype(np.float64), -1000, 1000)
    return np.where(hu > -800, 0.022 * (1 + hu / 1000), 0.0)


def test_same_seed_same_phantom_and_seeds_differ():
    first, spacing = phantoms.make_knee_phantom(7)
    again, _ = phantoms.make_knee_phantom(7)
    other, _ = phantoms.make_knee_phantom(8)
    assert first.dtype == np.int16 and first.shape == (80, 96, 96)
    assert spacing == (2.0, 2.0, 2.0)
    assert np.array_equal(first, again)
    assert np.mean(first != other) > 0.05


def test_tissue_values_are_plausible():
    hu, _ = phantoms.make_knee_phantom(1)
    assert hu.min() == -1000 and 1000 < hu.max() <= 1600
    corners = hu[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.all(corners == -1000), "air around the leg"
    centre_column = hu[:, 40:56, 40:56]
    assert np.all(centre_column.max(axis=(1, 2)) > 0), "tissue in every axial slice"
    fractions = {name: np.mean((hu >= lo) & (hu <= hi)) for name, (lo, hi) in
                 {"fat": (-160, -40), "soft": (10, 110), "marrow": (150, 450), "cortex": (900, 1600)}.items()}
    assert 0.02 < fractions["fat"] < 0.3
    assert 0.1 < fractions["soft"] < 0.7
    assert 0.005 < fractions["marrow"] < 0.2
    assert 0.005 < fractions["cortex"] < 0.15


def test_views_differ_with_angle():
    """0 and 90 degree parallel projections differ: not a rotationally symmetric body."""
    for seed in range(3):
        mu = attenuation(phantoms.make_knee_phantom(seed, **SMALL)[0])
        frontal = mu.sum(axis=1)   # along y: (Z, X)
        lateral = mu.sum(axis=2)   # along x: (Z, Y)
        relative = np.abs(frontal - lateral).mean() / frontal.mean()
        assert relative > 0.1, f"seed {seed}: views too alike ({relative:.3f})"


def test_patella_is_a_separate_bone_in_front():
    """The most anterior bone is small, separate, and well in front of the others."""
    from scipy import ndimage

    for seed in range(4):
        hu, (sx, sy, sz) = phantoms.make_knee_phantom(seed)
        labels, count = ndimage.label(hu > 600)  # cortical shells; partial volume bridges lower values
        sizes = ndimage.sum_labels(np.ones_like(hu), labels, range(1, count + 1))
        centroids = np.array(ndimage.center_of_mass(np.ones_like(hu), labels, range(1, count + 1)))
        big = sizes > 100
        assert big.sum() >= 3, f"seed {seed}: femur, tibia and patella apart"
        sizes, centroids = sizes[big], centroids[big]
        front = int(np.argmin(centroids[:, 1]))
        largest = int(np.argmax(sizes))
        assert sizes[front] < 0.3 * sizes[largest]
        assert (centroids[largest, 1] - centroids[front, 1]) * sy > 15.0


def test_population_files_read_back(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    nib = pytest.importorskip("nibabel")
    paths = phantoms.write_phantom_population(tmp_path, 2, seed=3, formats=("nifti",), progress=False, **SMALL)
    assert [p.name for p in paths] == ["phantom01.nii.gz", "phantom02.nii.gz"]
    expected, _ = phantoms.make_knee_phantom((3, 1), **SMALL)
    image = sitk.ReadImage(str(paths[1]))
    assert np.array_equal(sitk.GetArrayFromImage(image), expected)
    assert image.GetSpacing() == pytest.approx((4.0, 4.0, 4.0))
    centre = np.array(image.GetOrigin()) + (np.array(image.GetSize()) - 1) / 2 * 4.0
    assert centre == pytest.approx((0, 0, 0), abs=1e-6)
    nifti = nib.load(str(paths[1]))
    assert np.array_equal(np.asarray(nifti.dataobj).transpose(2, 1, 0), expected)
    assert not list(tmp_path.glob(".*")), "no temporaries left"


def test_dicom_series_reads_back(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    paths = phantoms.write_phantom_population(tmp_path, 2, seed=4, progress=False, **SMALL)
    assert paths[0].name == "phantom01.nii.gz" and paths[1].is_dir()
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(paths[1]))
    assert len(files) == 40
    reader.SetFileNames(files)
    image = reader.Execute()
    again = phantoms.write_phantom_population(tmp_path / "again", 2, seed=4, progress=False, **SMALL)
    uid = sitk.ReadImage(files[0]).GetMetaData("0020|000e")
    assert sitk.ReadImage(sorted(again[1].iterdir())[0]).GetMetaData("0020|000e") == uid
    expected, _ = phantoms.make_knee_phantom((4, 1), **SMALL)
    assert np.array_equal(sitk.GetArrayFromImage(image).astype(np.int16), expected)
    assert image.GetSpacing() == pytest.approx((4.0, 4.0, 4.0))


def test_refuses_to_overwrite_and_bad_arguments(tmp_path):
    phantoms.write_phantom_population(tmp_path, 1, formats=("nifti",), progress=False, **SMALL)
    with pytest.raises(UserError, match="already exists"):
        phantoms.write_phantom_population(tmp_path, 1, formats=("nifti",), progress=False, **SMALL)
    phantoms.write_phantom_population(tmp_path, 1, formats=("nifti",), overwrite=True, progress=False, **SMALL)
    with pytest.raises(UserError):
        phantoms.write_phantom_population(tmp_path, 0, progress=False)
    with pytest.raises(UserError):
        phantoms.write_phantom_population(tmp_path, 1, formats=("png",), progress=False)


def test_command_line(tmp_path, capsys):
    sitk = pytest.importorskip("SimpleITK")
    from umed_common.errors import cli_entry

    main = cli_entry(phantoms.main)
    args = [str(tmp_path / "out"), "--n", "1", "--formats", "nifti", "--size", "24"]
    assert main(args) == 0
    image = sitk.ReadImage(str(tmp_path / "out" / "phantom01.nii.gz"))
    assert image.GetSize() == (24, 24, 20) and image.GetSpacing() == pytest.approx((8.0, 8.0, 8.0))
    assert main(args) == 2
    assert main([str(tmp_path / "other"), "--size", "8"]) == 2
    errors = capsys.readouterr().err
    assert "already exists" in errors and "--size 8" in errors
    assert not (tmp_path / "other").exists()
