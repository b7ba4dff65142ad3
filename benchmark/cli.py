"""umed-bench: one command per paper table.

    umed-bench --table 1|2|3 --config CFG.yaml --out DIR [--quick] [--device auto|cpu|cuda] [--overwrite]
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from umed_common.device import add_device_argument, resolve_device
from umed_common.errors import UserError, cli_entry
from umed_common.outputs import check_name

from .config import apply_quick, config_as_dict, load_config, select_methods
from .generative import run_generative
from .table_outputs import write_generative, write_single_view
from .run_record import staged_output, write_provenance
from .single_view import run_single_view


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="umed-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=int, choices=(1, 2, 3), required=True,
                        help="1: single-view PSNR/SSIM, 2: FID/KID, 3: loss-weight ablation")
    parser.add_argument("--config", required=True, help="benchmark YAML (see benchmark/configs/)")
    parser.add_argument("--out", required=True,
                        help="results folder (new or empty unless --overwrite, which replaces only "
                             "umed-bench's own earlier results there; other files are never touched)")
    parser.add_argument("--quick", action="store_true",
                        help="small CPU preset: first patient and input view, few iterations and samples")
    parser.add_argument("--overwrite", action="store_true", help="replace umed-bench's earlier results in --out")
    parser.add_argument("--inception-weights", default=None,
                        help="FID Inception weights file (else $UMED_INCEPTION_WEIGHTS or the torch hub cache)")
    parser.add_argument("--feature-cache", default=None, help="folder of cached Inception features")
    parser.add_argument("--methods", nargs="+", metavar="NAME",
                        help="tables 1 and 3: run only these of the config's methods (baselines always run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_argument(parser)
    parser.set_defaults(device=None)
    return parser


def check_output_names(config, table: int) -> None:
    """Dataset names (and table 2's own method) become folder and file names under --out: refuse
    any that could point elsewhere, before a folder is made."""
    for name in config.datasets:
        check_name(name, "config datasets: dataset name")
    spec = config.table2 if table == 2 else None
    if spec is not None and spec.ours is not None:
        check_name(spec.ours, "config table2.ours: method name")


def run_table(table: int, config, device: str, staging: Path, progress: bool) -> dict:
    """Run one table into `staging`; returns what run.json should add."""
    name = f"table{table}"
    spec = getattr(config, name)
    if spec is None:
        raise UserError(f"the config has no {name}: section")
    if table == 2:
        result = run_generative(spec, config, device, staging, progress)
        write_generative(result, staging)
        return {"inception_weights": result.weights}
    result = run_single_view(spec, config, device, progress)
    write_single_view(name, spec, result, staging)
    return {"finetune_jobs": len(result.jobs)}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config, config_text = load_config(args.config)
    if args.quick:
        config = apply_quick(config)
    if args.methods:
        config = select_methods(config, args.table, args.methods)
    overrides = {k: Path(v) for k, v in (("inception_weights", args.inception_weights),
                                         ("feature_cache_dir", args.feature_cache)) if v}
    config = dataclasses.replace(config, **overrides, device=args.device or config.device)
    device = str(resolve_device(config.device))
    check_output_names(config, args.table)
    start = time.perf_counter()
    with staged_output(args.out, args.overwrite) as staging:
        extra = run_table(args.table, config, device, staging, progress=not args.no_progress)
        runtime = time.perf_counter() - start
        write_provenance(staging, config_text, config_as_dict(config),
                         {"table": args.table, "quick": args.quick, "seed": config.seed, "device": device,
                          "runtime_s": round(runtime, 2), **extra})
    print(f"table {args.table}: results in {args.out} ({runtime:.1f} s)")
    print((Path(args.out) / f"table{args.table}.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
