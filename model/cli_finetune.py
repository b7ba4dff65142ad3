"""umed-finetune: single-view fine-tuning of a trained generator on one X-ray, then 72 rendered views."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from umed_common.device import add_device_argument
from umed_common.errors import UserError, cli_entry


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
    parser.add_argument("--max-iters", type=int, help="fine-tuning steps (default: config)")
    parser.add_argument("--lr", type=float, help="generator learning rate (default: config)")
    parser.add_argument("--view-step-deg", type=float,
                        help="model azimuth per DRR view index; its sign sets the rotation direction (default: config)")
    parser.add_argument("--psnr-target", type=float, help="stop at this input-view PSNR in dB (default: config)")
    parser.add_argument("--z-candidates", type=int,
                        help="search this many latents z with the azimuth and keep the best (default: config; paper: 1)")
    parser.add_argument("--render-size", type=int,
                        help="fine-tune on renders of this many pixels per side; smaller is faster (default: config)")
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
    if args.max_iters is not None and args.max_iters < 1:
        raise UserError("--max-iters: must be at least 1")
    out = Path(args.out)
    if (out / "views").exists() and not args.overwrite:
        raise UserError(f"{out}: already holds fine-tuning outputs (pass --overwrite to replace them)")
    from umed_common.atomic import ensure_writable_dir
    from .export import density_grid, field_extent, write_attenuation_nifti, write_volume_nifti
    from .finetune import check_overrides, finetune
    from .outputs import write_finetune_outputs
    from .xray_io import read_xray
    from .checkpoint import read_checkpoint, resolve_run
    check_overrides(args.lr, args.render_size, args.z_candidates)  # before any folder is created
    from .config import parse_loss_weights
    parse_loss_weights(args.loss_weights)
    xray = read_xray(args.xray)
    if args.input_view_index is not None and not 0 <= args.input_view_index < 72:
        raise UserError(f"--input-view-index {args.input_view_index}: must be in 0..71")
    if args.volume_size < 2:
        raise UserError(f"--volume-size {args.volume_size}: must be at least 2")
    read_checkpoint(resolve_run(args.checkpoint))  # a bad checkpoint fails before any folder is created
    ensure_writable_dir(out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # showwarning (unlike formatwarning) is restored by catch_warnings: nothing process-wide outlives the call
        warnings.showwarning = lambda message, *rest, **kw: print(f"umed-finetune: warning: {message}", file=sys.stderr)
        result = finetune(args.checkpoint, xray, input_view_index=args.input_view_index,
                          loss_weights=args.loss_weights, azimuth_deg=args.azimuth, max_iters=args.max_iters,
                          psnr_target=args.psnr_target, lr=args.lr, view_step_deg=args.view_step_deg,
                          render_size=args.render_size, z_candidates=args.z_candidates,
                          device=args.device, seed=args.seed,
                          progress=not args.no_progress, perceptual_weights=args.perceptual_weights)
    write_finetune_outputs(out, result.views, result.history)
    if args.export_volume and result.attenuation is not None:
        write_attenuation_nifti(out / "volume.nii.gz", result.attenuation, result.box_mm)
    elif args.export_volume:
        volume = density_grid(result.generator, result.z, args.volume_size)
        write_volume_nifti(out / "volume.nii.gz", volume, field_extent(result.generator))
    last = result.history.iloc[-1]
    print(f"azimuth {result.azimuth_deg:.1f} deg, {len(result.history)} steps, input-view PSNR "
          f"{last['psnr']:.2f} dB, SSIM {last['ssim']:.3f}; outputs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
