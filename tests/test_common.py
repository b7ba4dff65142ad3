"""umed_common: one-line user errors, atomic writes, device choice, 8-bit images."""
import numpy as np
import pytest

from umed_common.atomic import atomic_path, ensure_writable_dir, refuse_overwrite, write_text_atomic
from umed_common.device import resolve_device
from umed_common.errors import UserError, cli_entry
from umed_common.images import minmax_to_uint8, read_gray, write_png


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


def test_minmax_to_uint8_matches_paper_formula_and_constant_image():
    image = np.array([[2.0, 4.0], [6.0, 10.0]])
    expected = np.round((image - 2) / 8 * 255).astype(np.uint8)
    np.testing.assert_array_equal(minmax_to_uint8(image), expected)
    assert minmax_to_uint8(np.full((3, 3), 7.0)).max() == 0


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
