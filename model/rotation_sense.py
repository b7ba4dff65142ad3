"""Which way the model's azimuth turns relative to DRR view indices.

Whether DRR view k sits at azimuth a + 5k or a - 5k in the model's frame is a
property of each trained model: the view from a + 180 is (nearly) the mirror of
the view from a, so unposed DRRs cannot tell an anatomy from its mirror image,
and a GAN may learn either. This renders a full turn for a few z and
matches it, in both senses and at every offset, against each training patient's
72 DRRs: the sense with the higher normalised cross-correlation is the sign of
`finetune.view_step_deg`. The mean best NCC (either sense) says how much a full
turn of the model resembles a training patient's: a training-data-only way to pick
among the checkpoints of one run (GAN training on CPU can collapse late).

    python -m model.rotation_sense --checkpoint RUN/model.pt --data DIR [--holdout 04]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from umed_common.device import add_device_argument
from umed_common.errors import UserError, cli_entry
from umed_common.images import read_gray
from umed_common.measures import ncc, resize_gray
from umed_common.protocol import N_VIEWS, VIEW_STEP_DEG

from .cameras import view_poses
from .data import discover_drr_images
from .generator import to_gray
from .inference import load_checkpoint


def best_match(turn: np.ndarray, views: dict[int, np.ndarray], sense: int) -> float:
    """Mean NCC of turn[(sense * k + shift) % 72] with views[k], best over shifts.

    turn (72, S, S) renders at azimuth 5k; views: DRR index -> (S, S).
    """
    return max(float(np.mean([ncc(turn[(sense * k + shift) % N_VIEWS], image) for k, image in views.items()]))
               for shift in range(N_VIEWS))


def patient_views(paths: dict, size: int) -> dict[int, np.ndarray]:
    """View index -> (size, size) float64 gray image, bilinearly resized."""
    return {k: resize_gray(read_gray(p), (size, size)).astype(np.float64)
            for k, p in paths.items() if 0 <= k < N_VIEWS}


def measure(checkpoint: str, data: str, holdout: tuple[str, ...], samples: int, size: int, device: str,
            seed: int = 0) -> list[dict]:
    """One row per (z sample, patient): best NCC for azimuth = +5k and = -5k."""
    model = load_checkpoint(checkpoint, device)
    ft = model.config.finetune
    by_patient = {p: views for p, views in discover_drr_images(data).items() if p not in holdout}
    if not by_patient:
        raise UserError(f"{data}: no training patients' DRRs found")
    truth = {p: patient_views(paths, size) for p, paths in sorted(by_patient.items())}
    poses = view_poses(torch.arange(N_VIEWS, dtype=torch.float32) * VIEW_STEP_DEG, ft.polar_deg, ft.radius)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for sample in range(samples):
        z = torch.randn(1, model.config.z_dim, generator=generator).to(model.device)
        with torch.no_grad():
            turn = to_gray(model.generator.render(z, poses.to(z.device), size, ft.render_chunk)).cpu().numpy()
        for patient, views in truth.items():
            rows.append({"z": sample, "patient": patient, "plus": best_match(turn, views, 1),
                         "minus": best_match(turn, views, -1)})
    return rows


@cli_entry
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.rotation_sense", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="folder of training DRRs (MedNeRF layout)")
    parser.add_argument("--holdout", nargs="*", default=[], help="patient ids to leave out")
    parser.add_argument("--samples", type=int, default=3, help="z samples")
    parser.add_argument("--size", type=int, default=32, help="render and compare at this size")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    rows = measure(args.checkpoint, args.data, tuple(args.holdout), args.samples, args.size, args.device)
    for row in rows:
        print(f"z {row['z']}  patient {row['patient']}  best NCC: azimuth + 5k {row['plus']:.4f}   "
              f"azimuth - 5k {row['minus']:.4f}")
    fit = np.mean([max(r["plus"], r["minus"]) for r in rows])
    print(f"mean best NCC with the training DRRs (how well a full turn resembles a patient): {fit:.4f}")
    plus = sum(r["plus"] > r["minus"] for r in rows)
    print(f"+5k better in {plus} of {len(rows)}: finetune.view_step_deg should be {'+5' if 2 * plus > len(rows) else '-5'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
