"""Cases of a batch run in overlapped stages (drr.pipeline.run_cases): same files as one by one."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from drr_test_volumes import small_hu_volume
from drr.pipeline import DrrOptions, generate_all, generate_case
from drr.volume_io import discover_cases

OPTIONS = dict(views=4, angle_step_deg=90.0, rows=12, cols=16, detector_mm=60.0, device="cpu")


def make_batch(folder, count: int = 4):
    """`count` different small volumes (seeds, shapes and one flipped voxel order)."""
    folder.mkdir()
    for k in range(count):
        hu = np.transpose(small_hu_volume(seed=k, shape_zyx=(8 + k, 20, 24)), (2, 1, 0)).astype(np.float32)
        affine = np.diag([2.0, 2.0, 3.0, 1.0])
        if k % 2:
            affine[0, 0] = -2.0  # a flipped x axis: the fast projector gets a transposed/flipped view
        nib.save(nib.Nifti1Image(hu, affine), folder / f"case{k}.nii.gz")
    return folder


def case_files(out, case_id: str) -> dict[str, bytes]:
    """Every output file of a case; case.json without its timing."""
    files = {p.name: p.read_bytes() for p in sorted((out / case_id).iterdir())}
    record = json.loads(files.pop("case.json"))
    record.pop("seconds")
    files["case.json"] = json.dumps(record, sort_keys=True).encode()
    return files


@pytest.mark.parametrize("projector, workers", [("fast", 1), ("fast", 2), ("exact", 1)])
def test_overlapped_batch_writes_what_one_by_one_writes(tmp_path, projector, workers):
    inputs = make_batch(tmp_path / "in")
    options = DrrOptions(projector=projector, workers=workers, **OPTIONS)
    results = generate_all(inputs, tmp_path / "batch", options, show_progress=False)
    assert [r.status for r in results] == ["ok"] * 4
    cases, _ = discover_cases(inputs)
    for case in cases:
        alone = tmp_path / f"alone-{case.case_id}"
        alone.mkdir()
        assert generate_case(case, alone, options, "cpu").status == "ok"
        assert case_files(tmp_path / "batch", case.case_id) == case_files(alone, case.case_id)


def test_a_failing_case_in_the_middle_leaves_the_others_done(tmp_path):
    inputs = make_batch(tmp_path / "in", count=3)
    (inputs / "case1.nii.gz").write_bytes((inputs / "case1.nii.gz").read_bytes()[:200])  # truncated
    results = generate_all(inputs, tmp_path / "out", DrrOptions(**OPTIONS), show_progress=False)
    assert [(r.case_id, r.status) for r in results] == [("case0", "ok"), ("case1", "failed"), ("case2", "ok")]
    assert (tmp_path / "out" / "case2" / "case.json").is_file()
    assert not (tmp_path / "out" / "case1").exists()
