"""Issue 13, acceptance 3: umed-demo on a full disk (mocked ENOSPC) stops with one line naming the
file, exit 2, and leaves no partial record: a rerun does the stage again."""
from __future__ import annotations

import errno
import io
import sys
from pathlib import Path

from demo import cli as demo

ARGS = ["--phantoms", "5", "--phantom-size", "48", "--drr-size", "32", "--config", "tiny", "--device", "cpu"]


def one_stage(monkeypatch):
    """The demo cut down to one quick child command, so the test exercises only the demo's own writes."""
    stage = demo.Stage("phantoms", "a quick child", [sys.executable, "-c", "print('made ' * 50)"], ("phantoms",))
    monkeypatch.setattr(demo, "plan", lambda settings: [stage])
    monkeypatch.setattr(demo, "write_report", lambda out, *rest: Path(out) / "report.md")


class FullDiskFile(io.BytesIO):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_while_logging_a_stage_is_one_line_naming_the_log(tmp_path, capsys, monkeypatch):
    one_stage(monkeypatch)
    monkeypatch.setattr(demo, "open", lambda path, mode="r", *a, **k: FullDiskFile(path), raising=False)
    code = demo.main(["--out", str(tmp_path / "out"), *ARGS])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].endswith("logs/phantoms.log: cannot write (No space left on device)")
    assert not (tmp_path / "out" / "stages" / "phantoms.json").exists()  # not marked done: a rerun redoes it
    monkeypatch.undo()
    one_stage(monkeypatch)
    assert demo.main(["--out", str(tmp_path / "out"), *ARGS]) == 0
    assert (tmp_path / "out" / "stages" / "phantoms.json").is_file()


def test_full_disk_on_the_demo_record_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    import umed_common.atomic
    one_stage(monkeypatch)
    real_replace = umed_common.atomic.os.replace

    def full_disk(source, target):
        if str(target).endswith("demo.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(umed_common.atomic.os, "replace", full_disk)
    code = demo.main(["--out", str(tmp_path / "out"), *ARGS])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(errors) == 1 and errors[0].endswith("demo.json: cannot write (No space left on device)")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
