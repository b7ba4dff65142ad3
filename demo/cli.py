"""`umed-demo` (demo.cli): the whole pipeline on procedural knee phantoms, offline, end to end.

phantoms (NIfTI and DICOM) -> `drr-generate` -> `umed-train` on all but two
phantoms -> `umed-finetune` on one view of each held-out phantom ->
`umed-bench --table 1` -> one report (Markdown and HTML).

Every stage but the report is the real console command run as a child process
(so the demo exercises exactly what a user types), its output streamed to the
terminal and to a log, its command line and runtime recorded. A finished stage
leaves a record in OUT/stages/; a rerun with the same --out and settings skips
it, so an interrupted demo resumes. Other settings need --overwrite.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import yaml

from model.config import CONFIG_DIR, load_config
from umed_common.atomic import ensure_writable_dir, write_json_atomic, write_text_atomic
from umed_common.device import add_device_argument, resolve_device
from umed_common.errors import DISK_FULL_ERRNOS, UserError, cli_entry, disk_full_error
from umed_common.protocol import view_file_name

from .phantoms import phantom_name
from .report import write_report

HELD_OUT = 2  # phantoms kept out of training and used for evaluation (--held-out)
# The held-out phantoms start at the 7th whatever --phantoms is (the last ones when there are too few), so
# training on more phantoms never changes which are evaluated and runs stay comparable. With --held-out 6 and
# 40 phantoms, 07-12 are evaluated and 01-06, 13-40 train: the development protocol of the demo config.
HELD_OUT_FROM = 6
INPUT_VIEW = 0  # the one X-ray given to fine-tuning: view 0 (0 degrees)
# 34 training phantoms: the shape prior of the demo config needs a population (issue 10's notes: with 6 the
# single-view fit picks one member's depth by chance) and grows better with it. On the development phantoms
# (`umed-demo --seed 2|3 --phantoms 40 --held-out 6`) 34 win on 10 of 12 (mean margin +2.49 dB, worst -1.88; 20
# won on 8 of 12 by the same command), and 34 tomographies still fit the demo's 15 minutes (docs/demo.md).
DEFAULT_PHANTOMS = 36
# Everything the demo writes below --out; --overwrite removes exactly these.
OWNED = ("demo.json", "stages", "logs", "phantoms", "drr", "train", "finetune", "bench.yaml", "bench",
         "report.md", "report.html", "report_files")


@dataclass(frozen=True)
class DemoSettings:
    """What the results depend on; a rerun with other values needs --overwrite."""

    seed: int
    phantoms: int
    phantom_size: int
    drr_size: int
    device: str
    config: str
    train_iters: int | None
    finetune_iters: int | None
    held_out_count: int = HELD_OUT

    def phantom_names(self) -> list[str]:
        return [phantom_name(i) for i in range(self.phantoms)]

    def held_out(self) -> list[str]:
        start = min(HELD_OUT_FROM, self.phantoms - self.held_out_count)
        return self.phantom_names()[start:start + self.held_out_count]


@dataclass
class Stage:
    """One step of the demo: a child command run in the output folder."""

    name: str
    title: str
    command: list[str]
    outputs: tuple[str, ...]  # paths below --out that the stage writes

    def __post_init__(self):
        # What a finished record is matched against: the command as planned,
        # before a resumed run adds --resume to it.
        self.planned = shown(self.command)


def model_config(name_or_path: str) -> str:
    """A config bundled with the model package (kept as its name, as umed-train takes it) or a file path.

    The config is loaded once here so a mistake in it stops the demo before any stage runs.
    """
    bundled = (CONFIG_DIR / f"{name_or_path}.yaml").is_file()
    chosen = name_or_path if bundled else str(Path(name_or_path).expanduser().resolve())
    load_config(chosen)
    return chosen


def tool(script: str, module: str) -> list[str]:
    """The console script beside this Python (the venv's), else the module's main run by this Python."""
    path = Path(sys.executable).parent / script
    if path.is_file():
        return [str(path)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def shown(argv: Sequence[str]) -> str:
    """A command line as a person types it in the activated virtualenv."""
    argv = list(argv)
    if Path(argv[0]).parent == Path(sys.executable).parent and argv[0] != sys.executable:
        argv[0] = Path(argv[0]).name
    elif argv[0] == sys.executable:
        argv[0] = "python"
    return shlex.join(argv)


def plan(settings: DemoSettings) -> list[Stage]:
    """The demo's stages with their exact command lines (paths relative to --out)."""
    device, seed = ["--device", settings.device], ["--seed", str(settings.seed)]
    train_iters = ["--max-iters", str(settings.train_iters)] if settings.train_iters else []
    tune_iters = ["--max-iters", str(settings.finetune_iters)] if settings.finetune_iters else []
    finetunes = [Stage(f"finetune_{name}", f"single-view fine-tuning on view {INPUT_VIEW} of held-out {name}",
                       [*tool("umed-finetune", "model.cli_finetune"), "--checkpoint", "train/model.pt",
                        "--xray", f"drr/{name}_{view_file_name(INPUT_VIEW)}", "--input-view-index", str(INPUT_VIEW),
                        "--out", f"finetune/{name}", *device, *seed, *tune_iters], (f"finetune/{name}",))
                 for name in settings.held_out()]
    return [
        Stage("phantoms", "procedural knee CT phantoms (NIfTI and DICOM)",
              [sys.executable, "-m", "demo.phantoms", "phantoms", "--n", str(settings.phantoms),
               "--size", str(settings.phantom_size), *seed], ("phantoms",)),
        # The fast projector matches exact Siddon to NCC 0.9999 on these phantoms, ~10x sooner.
        Stage("drr", "DRRs: 72 views per phantom, knee preset, MedNeRF layout",
              [*tool("drr-generate", "drr.cli"), "phantoms", "drr", "--preset", "knee", "--layout", "mednerf",
               "--projector", "fast", "--rows", str(settings.drr_size), "--cols", str(settings.drr_size),
               *device], ("drr",)),
        Stage("train", f"training (config {settings.config}) on all but {settings.held_out_count} phantoms",
              [*tool("umed-train", "model.cli_train"), "--config", settings.config, "--data", "drr",
               "--out", "train", "--holdout", *settings.held_out(), *device, *seed, *train_iters], ("train",)),
        *finetunes,
        Stage("bench", "benchmark table 1 with the baselines (MedNeRF's fixed weights fitted here)",
              [*tool("umed-bench", "benchmark.cli"), "--table", "1", "--config", "bench.yaml",
               "--out", "bench", *device], ("bench.yaml", "bench")),
    ]


def bench_config(settings: DemoSettings) -> dict:
    """umed-bench's YAML: the held-out phantoms, learned (Eq. 5) and MedNeRF's fixed (0.3, 0.1) weights.

    The learned-weights rows score the views the umed-finetune stages wrote (the renders the headline judges)
    instead of fitting them again, so the table and the headline agree; the fixed-weights rows are fitted with
    the same settings (no --quick, whose 10 gain steps would make the two rows unequal)."""
    return {
        "datasets": {"phantoms": {"data_dir": "drr", "checkpoint": "train/model.pt",
                                  "eval_patients": settings.held_out(), "input_views": [INPUT_VIEW]}},
        "table1": {"datasets": ["phantoms"], "rendered": {"learned weights": {"phantoms": "finetune/{patient}/views"}},
                   "methods": {"MedNeRF weights": [0.3, 0.1]}, "baselines": True},
        "seed": settings.seed,
        "device": settings.device,
    }


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(argv: list[str], cwd: Path, log) -> tuple[int, float, float]:
    """Run one child, streaming its output (progress bars included) to the terminal and the log.

    Returns (exit code, wall seconds, CPU seconds); CPU time tells a slow
    stage from a busy machine.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log.write(f"$ {shown(argv)}\n".encode())
    start, cpu_start = time.perf_counter(), children_cpu_s()
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        while chunk := child.stdout.read1(65536):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
        code = child.wait()
    return code, time.perf_counter() - start, children_cpu_s() - cpu_start


def run_stage(stage: Stage, out: Path, number: int, total: int) -> dict:
    """Run a stage's command; a record of what ran, or UserError naming the log on failure."""
    log_path = out / "logs" / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n[{number}/{total}] {stage.title}\n$ {shown(stage.command)}", flush=True)
    try:
        with open(log_path, "wb") as log:
            code, seconds, cpu_s = run_command(stage.command, out, log)
    except OSError as err:  # a write to the log carries no file name: name it
        if err.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(err, log_path) from None
        raise
    if code != 0:
        raise UserError(f"stage {stage.name!r} failed (exit {code}): see {log_path}")
    return {"name": stage.name, "title": stage.title, "command": shown(stage.command), "planned": stage.planned,
            "seconds": round(seconds, 2), "cpu_s": round(cpu_s, 2), "log": str(log_path.relative_to(out))}


def prepare_out(out: Path, settings: DemoSettings, overwrite: bool) -> None:
    """Check --out: same settings resume; other settings or foreign files need --overwrite."""
    ensure_writable_dir(out)
    state = out / "demo.json"
    if overwrite:
        for name in OWNED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    elif state.is_file():
        before = json.loads(state.read_text(encoding="utf-8"))
        # a setting added since that run was made had its default then
        defaults = {f.name: f.default for f in fields(DemoSettings) if f.default is not MISSING}
        changed = sorted(k for k, v in asdict(settings).items() if before.get(k, defaults.get(k)) != v)
        if changed:
            raise UserError(f"{out}: made with other settings ({', '.join(changed)}); "
                            "pass --overwrite or choose another --out")
    else:
        present = [name for name in OWNED if (out / name).exists()]
        if present:
            raise UserError(f"{out / present[0]}: already exists and is not from a demo run (pass --overwrite)")
    write_json_atomic(state, asdict(settings))


def finished_record(stage: Stage, out: Path) -> dict | None:
    """The record of an earlier finished run of exactly this stage, else None."""
    path = out / "stages" / f"{stage.name}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("planned") == stage.planned else None


def discard_partial(stage: Stage, out: Path) -> None:
    """Remove what an interrupted run of the stage left, so it starts clean.

    Training is the exception: it resumes from its last checkpoint.
    """
    if stage.name == "train" and (out / "train" / "model.pt").is_file():
        stage.command.append("--resume")
        return
    for name in stage.outputs:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def run_demo(settings: DemoSettings, out: Path, overwrite: bool = False) -> Path:
    """Run (or resume) every stage and write the report; returns the report's path."""
    prepare_out(out, settings, overwrite)
    stages = plan(settings)
    records = []
    for number, stage in enumerate(stages, start=1):
        record = finished_record(stage, out)
        if record is not None:
            print(f"\n[{number}/{len(stages)}] {stage.title}: finished earlier, skipped", flush=True)
        else:
            discard_partial(stage, out)
            if stage.name == "bench":
                write_text_atomic(out / "bench.yaml", yaml.safe_dump(bench_config(settings), sort_keys=False))
            record = run_stage(stage, out, number, len(stages))
            write_json_atomic(out / "stages" / f"{stage.name}.json", record)
        records.append(record)
    print(f"\n[report] writing {out / 'report.md'}", flush=True)
    return write_report(out, asdict(settings), settings.held_out(), INPUT_VIEW, records)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="umed-demo", description="Whole pipeline on procedural knee phantoms: phantoms, DRRs, training, "
                                      "single-view fine-tuning, benchmark, report.")
    parser.add_argument("--out", default="demo_out", help="output folder (default: ./demo_out)")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms, training and fine-tuning")
    parser.add_argument("--phantoms", type=int, default=DEFAULT_PHANTOMS,
                        help=f"number of phantoms; --held-out of them from the 7th on (the last ones when too few) "
                             f"are held out, the others train (default {DEFAULT_PHANTOMS})")
    parser.add_argument("--held-out", type=int, default=HELD_OUT,
                        help=f"phantoms held out and evaluated, from the 7th on (default {HELD_OUT}: phantom07 "
                             "and phantom08); more measure how often the model wins")
    parser.add_argument("--phantom-size", type=int, default=96, help="phantom voxels per side (default 96)")
    parser.add_argument("--drr-size", type=int, default=128, help="DRR side in pixels (default 128, as MedNeRF)")
    parser.add_argument("--config", default="demo",
                        help="model config for umed-train: a bundled name or a YAML file (default: demo)")
    parser.add_argument("--train-iters", type=int, help="training iterations (default: the config's)")
    parser.add_argument("--finetune-iters", type=int, help="fine-tuning iterations (default: the config's)")
    parser.add_argument("--overwrite", action="store_true", help="discard an earlier demo in --out and start over")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> DemoSettings:
    if args.held_out < 1:
        raise UserError(f"--held-out {args.held_out}: need at least 1")
    # calibration leaves training phantoms out in turn, so training needs two
    if args.phantoms < args.held_out + 2:
        raise UserError(f"--phantoms {args.phantoms}: need at least {args.held_out + 2} ({args.held_out} are held out)")
    for flag, value, least in (("--train-iters", args.train_iters, 1), ("--finetune-iters", args.finetune_iters, 1),
                               ("--phantom-size", args.phantom_size, 16), ("--drr-size", args.drr_size, 16)):
        if value is not None and value < least:
            raise UserError(f"{flag} {value}: need at least {least}")
    config = model_config(args.config)
    device = str(resolve_device(args.device))
    return DemoSettings(seed=args.seed, phantoms=args.phantoms, phantom_size=args.phantom_size,
                        drr_size=args.drr_size, device=device,
                        config=config, train_iters=args.train_iters, finetune_iters=args.finetune_iters,
                        held_out_count=args.held_out)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    start = time.perf_counter()
    report = run_demo(settings, Path(args.out).expanduser().resolve(), overwrite=args.overwrite)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; report: {report}\n"
          f"(HTML with images: {report.with_suffix('.html')})")
    return 0
