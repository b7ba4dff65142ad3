import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from model.api import finetune
from model.finetune import prepare_xray, view_azimuths
from model.xray_io import read_xray
from umed_common.errors import UserError
from umed_common.measures import minmax_to_uint8, psnr
from umed_common.protocol import N_VIEWS

HISTORY = ["iteration", "loss", "loss_r", "loss_mse", "sigma_1", "sigma_2", "psnr", "ssim"]


def test_views_history_and_given_azimuth(tiny_checkpoint):
    xray = (np.arange(48 * 48).reshape(48, 48) % 251).astype(np.uint8)
    with pytest.warns(UserWarning, match="resized"):
        result = finetune(tiny_checkpoint, xray, input_view_index=9, azimuth_deg=30.0, max_iters=2,
                          psnr_target=99.0, device="cpu", progress=False)
    assert result.views.shape == (N_VIEWS, 32, 32) and result.views.dtype == np.uint8
    assert result.views.reshape(N_VIEWS, -1).max(axis=1).tolist() == [255] * N_VIEWS      # min-max normalised
    assert list(result.history.columns) == HISTORY and len(result.history) == 2
    assert result.azimuth_deg == 30.0 and result.input_view_index == 9
    assert (result.history["sigma_1"] != 1.0).all()                   # learned sigmas move


def test_fixed_weights_and_pose_search(tiny_checkpoint, drr_folder):
    xray = np.asarray(Image.open(drr_folder / "01_xray0000.png"))
    result = finetune(tiny_checkpoint, xray, loss_weights=(0.3, 0.1), max_iters=1, device="cpu", progress=False)
    assert result.azimuth_deg in (0.0, 90.0, 180.0, 270.0)             # tiny.yaml searches every 90 deg
    assert np.isnan(result.history["sigma_1"]).all()


def test_overrides_change_the_fine_tuning(tiny_checkpoint):
    xray = (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)
    run = lambda **kw: finetune(tiny_checkpoint, xray, azimuth_deg=30.0, max_iters=2, psnr_target=99.0,  # noqa: E731
                                device="cpu", progress=False, **kw)
    base, slower, reversed_turn = run(), run(lr=1e-6), run(view_step_deg=-5.0)
    assert base.history["loss"].iloc[0] == slower.history["loss"].iloc[0]      # same start
    assert base.history["loss"].iloc[1] != slower.history["loss"].iloc[1]      # different step
    assert np.array_equal(base.views[0], reversed_turn.views[0])               # the input view is anchored
    assert np.array_equal(base.views[1], reversed_turn.views[71])              # -5 deg and +5 deg swap sides
    with pytest.raises(UserError, match="finetune.lr: must be a positive number"):
        run(lr=0.0)
    with pytest.raises(UserError, match="unknown fine-tuning option.*learning_rate"):
        run(learning_rate=1e-3)


def test_view_azimuths_are_anchored_at_the_input_view():
    azimuths = view_azimuths(100.0, 4, 5.0)
    assert azimuths[4] == 100.0 and azimuths[5] == 105.0 and azimuths[0] == 80.0 and len(azimuths) == 72


def test_metrics_and_input_checks():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 16
    assert abs(psnr(b, a, 255) - 10 * np.log10(255 ** 2 / 16.0)) < 1e-9
    with pytest.raises(UserError):
        prepare_xray(np.zeros((2, 3, 3)), 32)
    image = prepare_xray(np.array([[10, 20], [30, 40]], np.uint8), 2)
    assert torch.allclose(image, torch.tensor([[-1.0, -1 / 3], [1 / 3, 1.0]]), atol=0.01)


def _write_dicom(path, pixels, photometric="MONOCHROME2"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_xray_readers(tmp_path):
    pixels = np.array([[0, 1000], [2000, 4000]])
    _write_dicom(tmp_path / "a.dcm", pixels)
    assert read_xray(tmp_path / "a.dcm").tolist() == [[0, 64], [128, 255]]
    _write_dicom(tmp_path / "inverted", pixels, "MONOCHROME1")               # found by the DICM magic
    assert read_xray(tmp_path / "inverted").tolist() == [[255, 191], [128, 0]]
    Image.fromarray(np.full((5, 5, 3), (255, 0, 0), np.uint8)).save(tmp_path / "rgb.jpg")
    assert read_xray(tmp_path / "rgb.jpg").shape == (5, 5)
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable image"):
        read_xray(tmp_path / "bad.png")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "model.cli_finetune", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_writes_every_output_and_refuses_mistakes(tmp_path, tiny_checkpoint, drr_folder):
    out = tmp_path / "ft"
    xray = str(drr_folder / "02_xray0009.png")
    result = _cli("--checkpoint", str(tiny_checkpoint), "--xray", xray, "--out", str(out), "--max-iters", "2",
                  "--export-volume", "--volume-size", "8", "--device", "cpu", "--no-progress", "--azimuth", "0")
    assert result.returncode == 0, result.stderr
    assert len(list((out / "views").glob("xray*.png"))) == 72
    for name in ("contact_sheet.png", "rotation.gif", "history.csv", "history.png", "volume.nii.gz"):
        assert (out / name).is_file(), name
    assert Image.open(out / "rotation.gif").n_frames == 72
    volume = nib.load(out / "volume.nii.gz")
    assert volume.shape == (8, 8, 8) and np.asarray(volume.dataobj).min() >= 0
    again = _cli("--checkpoint", str(tiny_checkpoint), "--xray", xray, "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    for args, fragment in ((["--xray", str(tmp_path / "none.png")], "no such X-ray"),
                           (["--xray", xray, "--checkpoint", xray], "not a readable checkpoint")):
        base = {"--checkpoint": str(tiny_checkpoint), "--out": str(tmp_path / "x")}
        base.update(dict(zip(args[::2], args[1::2])))
        bad = _cli(*[item for pair in base.items() for item in pair])
        assert bad.returncode == 2 and fragment in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    for option, value in (("--lr", "0"), ("--render-size", "-1"), ("--z-candidates", "0"), ("--max-iters", "0"),
                          ("--view-step-deg", "0")):
        bad = _cli("--checkpoint", str(tiny_checkpoint), "--xray", xray, "--out", str(tmp_path / "y"), option, value)
        fragment = f"{option}: must be"
        assert bad.returncode == 2 and fragment in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "y").exists()          # refused before any folder is created


def test_rmsprop_bias_correction_makes_the_first_steps_lr_sized():
    from model.finetune import RMSPROP_ALPHA, rmsprop_bias_correction
    weight = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.RMSprop([weight], lr=1e-3, alpha=RMSPROP_ALPHA)
    warm = torch.optim.lr_scheduler.LambdaLR(opt, rmsprop_bias_correction)
    for step in range(5):
        before = weight.detach().clone()
        opt.zero_grad()
        (weight * torch.tensor([1.0, -2.0, 50.0])).sum().backward()   # constant gradients of any size
        opt.step()
        warm.step()
        assert torch.allclose((weight.detach() - before).abs(), torch.full((3,), 1e-3), rtol=1e-3), step
    plain = torch.nn.Parameter(torch.zeros(1))
    opt_plain = torch.optim.RMSprop([plain], lr=1e-3, alpha=RMSPROP_ALPHA)
    plain.sum().backward()
    opt_plain.step()
    assert abs(abs(float(plain.detach())) - 1e-2) < 1e-4                          # uncorrected: ~10 x lr


def test_keeps_the_weights_of_the_best_input_view_step(tiny_checkpoint):
    # A large lr makes RMSprop overshoot, so the last step is not the best; rendering at the model size
    # (render_size 32 = image size) makes the kept input view exactly the best step's render.
    xray = (np.arange(32 * 32).reshape(32, 32) * 7 % 251).astype(np.uint8)
    result = finetune(tiny_checkpoint, xray, azimuth_deg=30.0, max_iters=3, psnr_target=99.0, lr=0.05,
                      render_size=32, device="cpu", progress=False)
    history_psnr = result.history["psnr"]
    assert history_psnr.iloc[-1] < history_psnr.max()
    target = minmax_to_uint8(prepare_xray(xray, 32).numpy())
    assert psnr(result.views[0], target, 255) == pytest.approx(history_psnr.max(), abs=1e-9)
    with pytest.raises(UserError, match="finetune.render_size"):
        finetune(tiny_checkpoint, xray, azimuth_deg=30.0, max_iters=1, render_size=-1, device="cpu", progress=False)


def test_z_candidates_keep_the_latent_that_renders_the_input_best(tiny_checkpoint):
    from model.inference import load_checkpoint
    from model.pose_search import search_latent_and_azimuth
    from model.rng import STREAM_FINETUNE_Z, seeded_generator
    xray = (np.arange(32 * 32).reshape(32, 32) * 7 % 251).astype(np.uint8)
    run = lambda n: finetune(tiny_checkpoint, xray, azimuth_deg=30.0, max_iters=1, z_candidates=n,  # noqa: E731
                             device="cpu", progress=False)
    one, four = run(1), run(4)
    model = load_checkpoint(tiny_checkpoint, "cpu")
    stream = seeded_generator(0, STREAM_FINETUNE_Z)
    candidates = torch.cat([torch.randn(1, model.config.z_dim, generator=stream) for _ in range(4)])
    best, azimuth, scores = search_latent_and_azimuth(model.generator, candidates, prepare_xray(xray, 16),
                                                      77.5, 10.5, 90.0, azimuth_deg=30.0)
    assert torch.equal(one.z, candidates[:1])          # one candidate: the paper's single random z
    assert torch.equal(four.z, candidates[best:best + 1]) and azimuth == 30.0
    assert best != 0 and scores[best] > scores[0]      # the search changed the pick on this input
    with pytest.raises(UserError, match="finetune.z_candidates: must be at least 1"):
        run(0)
