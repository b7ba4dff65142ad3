"""umed-finetune: single-view fine-tuning of a trained generator on one X-ray, then 72 rendered views."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from umed_common.device import add_device_argument
from umed_common.errors import UserError, cli_entry

from .config import FINETUNE_OPTIONS, FinetuneConfig, parse_loss_weights, with_finetune_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="umed-finetune", description=__doc__)
    parser.add_argument("--checkpoint", required=True, help="the umed-train folder RUN (or RUN/model.pt)")
    parser.add_argument("--xray", required=True, help="input X-ray: PNG/JPEG (gray or RGB) or DICOM")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--loss-weights", default="learned", help="learned (Eq. 5) or fixed 'w_r,w_mse', e.g. 0.3,0.1")
    parser.add_argument("--azimuth", type=float, help="azimuth (deg) of the input view in the model frame; default: searched")
    parser.add_argument("--input-view-index", type=int,
                        help="DRR view index (0..71) of the input X-ray; fixes its pose (default: 0 for GAN "
                             "checkpoints, searched for physical ones)")
    defaults = FinetuneConfig()
    for name, text in FINETUNE_OPTIONS.items():   # the schema's options, typed as its fields
        parser.add_argument("--" + name.replace("_", "-"), type=type(getattr(defaults, name)),
                            help=f"{text} (default: the checkpoint config's finetune.{name})")
    parser.add_argument("--export-volume", action="store_true", help="also write the learned field as volume.nii.gz")
    parser.add_argument("--volume-size", type=int, default=64, help="voxels per side of --export-volume")
    parser.add_argument("--perceptual-weights", help="path of vgg16-397923de.pth (configs with perceptual: vgg16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --out")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true")
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = {name: getattr(args, name) for name in FINETUNE_OPTIONS}
    out = Path(args.out)
    if (out / "views").exists() and not args.overwrite:
        raise UserError(f"{out}: already holds fine-tuning outputs (pass --overwrite to replace them)")
    from umed_common.atomic import ensure_writable_dir
    from .export import density_grid, field_extent, write_attenuation_nifti, write_volume_nifti
    from .finetune import finetune
    from .outputs import write_finetune_outputs
    from .xray_io import read_xray
    from .checkpoint import read_checkpoint, resolve_run
    with_finetune_options(FinetuneConfig(), options, "--")  # mistakes stop before any folder is created
    parse_loss_weights(args.loss_weights)
    xray = read_xray(args.xray)
    if args.input_view_index is not None and not 0 <= args.input_view_index < 72:
        raise UserError(f"--input-view-index {args.input_view_index}: must be in 0..71")
    if args.volume_size < 2:
        raise UserError(f"--volume-size {args.volume_size}: must be at least 2")
    saved, _ = read_checkpoint(resolve_run(args.checkpoint))  # a bad checkpoint fails before any folder is created
    ensure_writable_dir(out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # showwarning (unlike formatwarning) is restored by catch_warnings: nothing process-wide outlives the call
        warnings.showwarning = lambda message, *rest, **kw: print(f"umed-finetune: warning: {message}", file=sys.stderr)
        result = finetune(args.checkpoint, xray, input_view_index=args.input_view_index,
                          loss_weights=args.loss_weights, azimuth_deg=args.azimuth, device=args.device,
                          seed=args.seed, progress=not args.no_progress,
                          perceptual_weights=args.perceptual_weights, **options)
    write_finetune_outputs(out, result.views, result.history)
    if args.export_volume and result.attenuation is not None:
        write_attenuation_nifti(out / "volume.nii.gz", result.attenuation, result.box_mm)
    elif args.export_volume:
        volume = density_grid(result.generator, result.z, args.volume_size)
        write_volume_nifti(out / "volume.nii.gz", volume, field_extent(result.generator))
    last = result.history.iloc[-1]
    if args.input_view_index is None and saved.family == "physical":
        print(f"input view {result.input_view_index} (searched; give --input-view-index when it is known)")
    print(f"azimuth {result.azimuth_deg:.1f} deg, {len(result.history)} steps, input-view PSNR "
          f"{last['psnr']:.2f} dB, SSIM {last['ssim']:.3f}; outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
