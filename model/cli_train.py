"""umed-train: stage-1 GAN training on a folder of DRRs (run under torchrun for data parallelism)."""
from __future__ import annotations

import argparse

from umed_common.device import add_device_argument
from umed_common.errors import UserError, cli_entry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="umed-train", description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config file or bundled name (chest, knee, graf, cpu, cpu_xray, demo, tiny)")
    parser.add_argument("--data", required=True, help="folder of DRR PNGs (MedNeRF layout or drr-generate output)")
    parser.add_argument("--out", required=True, help="run folder: model.pt, log.csv, sample grids")
    parser.add_argument("--holdout", nargs="*", default=[], metavar="ID", help="patient ids kept out of training")
    add_device_argument(parser)
    parser.add_argument("--max-iters", type=int, help="stop after this many iterations (default: config)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop (with a checkpoint) after this long")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its model.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perceptual-weights", help="path of vgg16-397923de.pth (configs with perceptual: vgg16)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_iters is not None and args.max_iters < 1:
        raise UserError("--max-iters: must be at least 1")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError("--time-budget: must be positive")
    from .train import train   # torch import after argument errors, so --help stays fast
    checkpoint = train(args.config, args.data, args.out, holdout=args.holdout, device=args.device,
                       max_iters=args.max_iters, time_budget_s=args.time_budget, resume=args.resume,
                       seed=args.seed, progress=not args.no_progress, perceptual_weights=args.perceptual_weights)
    print(f"checkpoint: {checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
