"""umed_common: one-line user errors, atomic writes, device choice, 8-bit images."""
import numpy as np
import pytest

from umed_common.atomic import atomic_path, ensure_writable_dir, refuse_overwrite, write_text_atomic
from umed_common.device import resolve_device
from umed_common.errors import UserError, cli_entry
from umed_common.images import read_gray, write_png
from umed_common.measures import minmax_to_uint8


def test_cli_entry_turns_user_error_into_one_line_and_exit_2(capsys):
    @cli_entry
    def main():
        raise UserError("data/x.png: no such image file")

    assert main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "data/x.png: no such image file" in err


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_text_atomic(target, "whole")
    assert target.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


def test_refuse_overwrite_and_unwritable_dir(tmp_path):
    f = tmp_path / "a"
    f.write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        refuse_overwrite(f, overwrite=False)
    refuse_overwrite(f, overwrite=True)
    with pytest.raises(UserError, match="not writable"):
        ensure_writable_dir(f / "sub")  # a file cannot hold a folder


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(UserError):
        resolve_device("banana")


def test_png_round_trip_and_bad_image(tmp_path):
    image = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_gray(tmp_path / "a.png"), image)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="not a readable image"):
        read_gray(tmp_path / "bad.png")


def test_atomic_outputs_get_umask_mode_not_owner_only(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "m.txt", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644


def test_16_bit_png_is_read_at_full_depth_and_min_max_scaled(tmp_path):
    from PIL import Image
    ramp = np.linspace(1000, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)  # 12-bit data in 16 bits
    Image.fromarray(ramp).save(tmp_path / "x16.png")
    with Image.open(tmp_path / "x16.png") as img:
        assert img.mode in ("I;16", "I")  # PIL would clip these to 255 with convert("L")
    image = read_gray(tmp_path / "x16.png")
    np.testing.assert_array_equal(image, minmax_to_uint8(ramp.astype(np.float64)))
    assert image.min() == 0 and image.max() == 255 and (image == 255).mean() < 0.01


def test_float_image_with_nan_is_refused(tmp_path):
    from PIL import Image
    pixels = np.ones((8, 8), dtype=np.float32)
    pixels[2, 3] = np.nan
    Image.fromarray(pixels).save(tmp_path / "f.tif")
    with pytest.raises(UserError, match="f.tif: non-finite pixel values"):
        read_gray(tmp_path / "f.tif")


def test_input_xray_16_bit_goes_through_read_gray(tmp_path):
    from PIL import Image

    from model.xray_io import read_xray
    Image.fromarray(np.array([[0, 30000], [60000, 65535]], dtype=np.uint16)).save(tmp_path / "in.png")
    np.testing.assert_array_equal(read_xray(tmp_path / "in.png"), [[0, 117], [233, 255]])


def test_atomic_write_on_full_disk_is_one_line_naming_the_target(tmp_path, monkeypatch):
    import errno
    import pathlib
    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    with pytest.raises(UserError, match=r"out\.json: cannot write \(No space left on device\)"):
        write_text_atomic(tmp_path / "out.json", "{}")
    monkeypatch.setattr(pathlib.Path, "write_bytes", real)
    assert list(tmp_path.iterdir()) == []  # no temporary left


def test_cli_entry_exit_codes_for_disk_full_and_sigterm(capsys):
    import errno
    import os
    import signal

    from umed_common.errors import Interrupted

    @cli_entry
    def disk_full():
        raise OSError(errno.ENOSPC, "No space left on device", "/x/model.pt")

    @cli_entry
    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)

    @cli_entry
    def stopped():
        raise Interrupted("stopped by SIGINT; checkpoint written", 130)

    assert disk_full() == 2 and "/x/model.pt: cannot write" in capsys.readouterr().err
    assert terminated() == 143 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert stopped() == 130 and "checkpoint written" in capsys.readouterr().err


def test_output_folder_names_and_paths_stay_inside(tmp_path):
    from umed_common.outputs import OutputFolder, check_name, inside
    for bad in ("../x", "a/b", "..", "", ".hidden", "a\\b"):
        with pytest.raises(UserError, match="not usable"):
            check_name(bad, "dataset")
    assert check_name("knee-01", "dataset") == "knee-01"
    with pytest.raises(UserError, match="outside the output folder"):
        inside(tmp_path, "a", "..", "..", "b")
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(UserError, match="outside the output folder"):
        inside(tmp_path, "link", "x")
    folder = OutputFolder(tmp_path / "out", "tool")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "user.txt").write_text("mine")
    folder.claim(["ours.txt"])
    (tmp_path / "out" / "ours.txt").write_text("ours")
    assert folder.foreign() == ["user.txt"]
    with pytest.raises(UserError, match="user.txt: exists and was not written by tool"):
        folder.release(["user.txt"])
    folder.release_all()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".tool-outputs.json", "user.txt"]


def test_read_yaml_returns_document_and_text_or_one_line_errors(tmp_path):
    from umed_common.yaml_files import read_yaml

    good = tmp_path / "good.yaml"
    good.write_text("a: [1, 2]\n")
    assert read_yaml(good) == ({"a": [1, 2]}, "a: [1, 2]\n")
    with pytest.raises(UserError, match="absent.yaml: no such config file \\(try x\\)"):
        read_yaml(tmp_path / "absent.yaml", " (try x)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML") as caught:
        read_yaml(bad)
    assert "\n" not in str(caught.value)


def test_degrees_apart_by_hand():
    from umed_common.protocol import degrees_apart
    assert degrees_apart(0, 18) == 90 and degrees_apart(71, 1) == 10 and degrees_apart(40, 4) == 180
    assert degrees_apart(5, 5) == 0 and degrees_apart(0, 37) == 175
    assert degrees_apart(np.array([0, 36, 70]), 2).tolist() == [10, 170, 20]
