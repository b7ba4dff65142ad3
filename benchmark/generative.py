"""Table 2: FID and KID of generated images against the real DRRs.

Any method is a folder of images (GRAF, pixelNeRF, GIRAFFE outputs from their
own code); ours are sampled from each dataset's checkpoint. Everything is
checked before any feature is computed, so a bad folder or a missing Inception
file stops the run before it does work. Features come from the on-disk cache
(keyed by file content) and are shared by FID and KID.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from umed_common.errors import UserError
from umed_common.images import write_png
from umed_common.measures import resize_gray
from umed_common.outputs import inside

from .config import BenchConfig, GenerativeSpec
from .features import FeatureCache, default_cache_dir, extract_features
from .fid_kid import default_subset_size, fid, fid_repeated, kid
from .image_sets import ImageSet, image_set, require_same_size
from .inception import describe_weights, find_inception_weights, load_inception


@dataclass
class GenerativeResult:
    rows: pd.DataFrame  # tidy: dataset, method, metric, repeat, value
    sizes: pd.DataFrame  # dataset, method, n_real, n_generated, subset_size, repeats
    weights: dict = field(default_factory=dict)  # provenance of the Inception file
    sample_paths: dict[tuple[str, str], list[Path]] = field(default_factory=dict)
    real_paths: dict[str, list[Path]] = field(default_factory=dict)


def plan_sets(spec: GenerativeSpec, config: BenchConfig) -> dict[str, tuple[ImageSet, dict[str, ImageSet]]]:
    """Validate every folder and checkpoint first: dataset -> (real set, {method: set})."""
    plan = {}
    for name in spec.datasets:
        dataset = config.datasets[name]
        real = image_set(dataset.data_dir, f"datasets.{name}.data_dir")
        methods = {}
        for method, folders in spec.methods.items():
            if name in folders:
                methods[method] = image_set(folders[name], f"table2.methods.{method}.{name}")
                require_same_size(real, methods[method], f"table2.methods.{method}.{name}")
        if spec.ours:
            if dataset.checkpoint is None or not dataset.checkpoint.is_file():
                raise UserError(f"datasets.{name}.checkpoint: table2 samples {spec.ours} from it, but "
                                f"{dataset.checkpoint or 'no checkpoint is given'} is not a file "
                                "(set table2.ours: null to score folders only)")
        if not methods and not spec.ours:
            raise UserError(f"table2: nothing to score for dataset {name} (no method folder, ours: null)")
        plan[name] = (real, methods)
    return plan


def sample_ours(spec: GenerativeSpec, config: BenchConfig, name: str, real: ImageSet, folder: Path,
                device: str, progress: bool) -> list[Path]:
    """Sample `spec.samples` images from the checkpoint, at the real DRRs' size, as PNGs in `folder`."""
    from model import api as model_api

    images = model_api.sample_images(config.datasets[name].checkpoint, spec.samples, device=device,
                                     seed=config.seed, progress=progress)
    size = (real.size[1], real.size[0])
    paths = [folder / f"sample_{i:05d}.png" for i in range(len(images))]
    for path, image in zip(paths, images):
        write_png(path, resize_gray(np.asarray(image, dtype=np.uint8), size))
    return paths


def score_pair(real: np.ndarray, generated: np.ndarray, spec: GenerativeSpec, seed: int) -> tuple[list[dict], dict]:
    """Tidy rows (fid_full once; fid and kid per repeat) and the sizes used."""
    subset = default_subset_size(len(real), len(generated), spec.kid_subset_size)
    rows = [{"metric": "fid_full", "repeat": np.nan, "value": fid(real, generated)}]
    for metric, score in (("fid", fid_repeated(real, generated, subset, spec.fid_repeats, seed)),
                          ("kid", kid(real, generated, subset, spec.repeats, seed))):
        rows += [{"metric": metric, "repeat": r, "value": float(v)} for r, v in enumerate(score.values)]
    return rows, {"n_real": len(real), "n_generated": len(generated), "subset_size": subset,
                  "kid_repeats": spec.repeats, "fid_repeats": spec.fid_repeats}


def run_generative(spec: GenerativeSpec, config: BenchConfig, device: str, staging: Path,
                   progress: bool = True) -> GenerativeResult:
    """Score every method folder (and our samples) of every dataset against its real DRRs."""
    weights_path = find_inception_weights(config.inception_weights)
    plan = plan_sets(spec, config)
    network = load_inception(weights_path, device)
    weights = describe_weights(weights_path)
    cache = FeatureCache(config.feature_cache_dir or default_cache_dir(), weights["sha256"])
    result, rows, sizes = GenerativeResult(pd.DataFrame(), pd.DataFrame(), weights), [], []

    for name, (real, methods) in plan.items():
        result.real_paths[name] = list(real.paths)
        real_features = extract_features(real.paths, network, cache, device, progress=progress,
                                         desc=f"{name} real")
        method_paths = {m: list(s.paths) for m, s in methods.items()}
        if spec.ours:
            folder = inside(staging, "renders", "table2", name, spec.ours)
            method_paths[spec.ours] = sample_ours(spec, config, name, real, folder, device, progress)
        for method, paths in method_paths.items():
            result.sample_paths[(name, method)] = paths
            features = extract_features(paths, network, cache, device, progress=progress, desc=f"{name} {method}")
            if min(len(features), len(real_features)) < 4:
                raise UserError(f"table2 {name}/{method}: FID/KID need at least 4 images per set, "
                                f"got {len(features)} generated and {len(real_features)} real")
            pair_rows, pair_sizes = score_pair(real_features, features, spec, config.seed)
            rows += [{"dataset": name, "method": method, **r} for r in pair_rows]
            sizes.append({"dataset": name, "method": method, **pair_sizes})
    result.rows = pd.DataFrame(rows, columns=["dataset", "method", "metric", "repeat", "value"])
    result.sizes = pd.DataFrame(sizes)
    return result
