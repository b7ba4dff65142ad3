"""Time Inception feature extraction for 1000 images and FID/KID from cached features.

    python -m benchmark.bench_features [--images 1000] [--threads 2] [--device cpu] [--weights FILE]

Without --weights the network has RANDOM weights of the FID architecture
(timing does not depend on the weight values; the printed FID/KID values are
then meaningless and the output says so). Images are real DRRs when
--image-dir is given (repeated to reach --images, each copy made unique by one
pixel so the content-keyed cache cannot short-cut), else seeded noise.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from umed_common.device import add_device_argument, resolve_device
from umed_common.errors import cli_entry
from umed_common.images import read_gray, write_png

from .features import FeatureCache, extract_features
from .fid_kid import default_subset_size, fid, fid_repeated, kid
from .inception import describe_weights, load_inception, random_inception_state_dict


def make_images(folder: Path, count: int, source_dir: Path | None, seed: int) -> list[Path]:
    """`count` distinct 128x128 PNGs: real DRRs (made unique) or noise."""
    rng = np.random.default_rng(seed)
    sources = sorted(source_dir.glob("*.png")) if source_dir else []
    paths = []
    for index in range(count):
        image = (read_gray(sources[index % len(sources)]).copy() if sources
                 else rng.integers(0, 256, (128, 128), dtype=np.uint8))
        image.flat[index % image.size] ^= 1 + index // image.size  # distinct bytes per copy
        paths.append(folder / f"image_{index:05d}.png")
        write_png(paths[-1], image)
    return paths


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench_features", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--image-dir", type=Path, default=None, help="real DRRs to use as images")
    parser.add_argument("--weights", type=Path, default=None, help="FID Inception file (default: random weights)")
    parser.add_argument("--batch-size", type=int, default=32)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_features.") as tmp:
        tmp = Path(tmp)
        if args.weights is None:
            args.weights = tmp / "random_fid_inception.pth"
            torch.save(random_inception_state_dict(0), args.weights)
            print("weights: RANDOM (same architecture as the FID Inception; timing only, values meaningless)")
        network = load_inception(args.weights, device)
        cache = FeatureCache(tmp / "cache", describe_weights(args.weights)["sha256"])
        (tmp / "images").mkdir()
        paths = make_images(tmp / "images", args.images, args.image_dir, seed=0)
        start = time.perf_counter()
        features = extract_features(paths, network, cache, device, batch_size=args.batch_size)
        extract_s = time.perf_counter() - start
        start = time.perf_counter()
        cached = extract_features(paths, network, cache, device, progress=False)
        reload_s = time.perf_counter() - start
        assert np.array_equal(features, cached)
        half = len(cached) // 2
        real, generated = cached[:half], cached[half:]
        start = time.perf_counter()
        subset = default_subset_size(len(real), len(generated), 1000)
        full = fid(real, generated)
        fid_sub = fid_repeated(real, generated, subset, repeats=10)
        kid_sub = kid(real, generated, subset, repeats=100)
        metrics_s = time.perf_counter() - start
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.images} images")
    print(f"extract features: {extract_s:.1f} s ({args.images / extract_s:.1f} images/s)")
    print(f"reload all from the cache (hash + read): {reload_s:.2f} s")
    print(f"FID full + FID 10 subsets + KID 100 subsets of {subset} ({half} vs {len(cached) - half}): "
          f"{metrics_s:.2f} s  [FID {full:.3f}, {fid_sub.mean:.3f} +- {fid_sub.std:.3f}; "
          f"KID {kid_sub.mean:.5f} +- {kid_sub.std:.5f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
