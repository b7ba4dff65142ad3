"""Tables 1 and 3: fine-tune on one X-ray, render 72 views, score every view.

For each dataset, evaluation patient and input view, every method fine-tunes
the dataset's checkpoint on that patient's DRR at the input view (with its loss
weights: fixed (w_r, w_mse) or learned) and renders the 72 views. Each view is
scored against the patient's DRR of that view. Three baselines need no model:
the input copied to every view; the input copied, but mirrored left-right for
views more than 90 degrees from it (a transmission image seen from the far
side is nearly the mirror image, which a 3-D model should at least match);
and the mean training image of each view (training patients = those in the
data folder that are not evaluated). A method under `rendered:` is not
fine-tuned here: its 72 views are read from the folders it names (another
tool's outputs, or umed-finetune's run before) and scored the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from umed_common.errors import UserError
from umed_common.images import read_gray
from umed_common.measures import resize_gray
from umed_common.protocol import N_VIEWS, copy_views, view_file_name

from .config import BenchConfig, DatasetSpec, LossWeights, SingleViewSpec
from .metrics import score_views

BASELINE_COPY = "baseline: input copied"
BASELINE_MEAN = "baseline: mean training image"
BASELINE_MIRROR = "baseline: input, mirrored on the far side"
BASELINES = (BASELINE_COPY, BASELINE_MIRROR, BASELINE_MEAN)  # the trivial answers a model must beat


@dataclass
class PatientViews:
    """Ground truth of one patient at the scoring size: (72, H, W) uint8 and which views exist."""

    images: np.ndarray
    present: np.ndarray  # (72,) bool; the knee release lacks some views


@dataclass
class SingleViewResult:
    rows: pd.DataFrame  # tidy: dataset, method, patient, input_view, view, convention, metric, value
    renders: dict[tuple[str, str, str, int], np.ndarray] = field(default_factory=dict)  # -> (72, H, W) uint8
    truth: dict[tuple[str, str], PatientViews] = field(default_factory=dict)
    histories: dict[tuple[str, str, str, int], pd.DataFrame] = field(default_factory=dict)
    jobs: list[dict] = field(default_factory=list)  # one record per fine-tune: sizes, iterations, seconds


def load_patient(views: dict[int, Path], size: tuple[int, int]) -> PatientViews:
    images = np.zeros((N_VIEWS, *size), dtype=np.uint8)
    present = np.zeros(N_VIEWS, dtype=bool)
    for index, path in views.items():
        if 0 <= index < N_VIEWS:
            images[index], present[index] = resize_gray(read_gray(path), size), True
    return PatientViews(images, present)


def check_eval_set(dataset: DatasetSpec, discovered: dict[str, dict[int, Path]]) -> None:
    """UserError for patients or input views the data folder does not have."""
    if not discovered:
        raise UserError(f"datasets.{dataset.name}: no DRRs (PP_xrayKKKK.png) found in {dataset.data_dir}")
    if not dataset.eval_patients:
        raise UserError(f"datasets.{dataset.name}: eval_patients is empty; name the patients to evaluate")
    for patient in dataset.eval_patients:
        if patient not in discovered:
            raise UserError(f"datasets.{dataset.name}: patient {patient} not in {dataset.data_dir} "
                            f"(found {', '.join(sorted(discovered))})")
        for view in dataset.input_views:
            if view not in discovered[patient]:
                raise UserError(f"datasets.{dataset.name}: patient {patient} has no view {view} in {dataset.data_dir}")


def mean_training_views(discovered: dict[str, dict[int, Path]], eval_patients: tuple[str, ...],
                        size: tuple[int, int]) -> PatientViews | None:
    """Per view index, the mean over training patients' DRRs; None when no patient is left for training."""
    training = [p for p in sorted(discovered) if p not in eval_patients]
    if not training:
        return None
    total = np.zeros((N_VIEWS, *size))
    count = np.zeros(N_VIEWS)
    for patient in training:
        views = load_patient(discovered[patient], size)
        total[views.present] += views.images[views.present]
        count += views.present
    present = count > 0
    total[present] /= count[present, None, None]
    return PatientViews(np.round(total).astype(np.uint8), present)


def baseline_views(truth: PatientViews, view: int, mean_views: PatientViews | None) -> dict[str, np.ndarray]:
    """The trivial answers to one patient's X-ray at `view`, each (72, H, W) uint8: the input copied, the input
    copied and mirrored beyond 90 deg, and the mean training image (left out when mean_views is None)."""
    baselines = {BASELINE_COPY: copy_views(truth.images[view], view, mirror_far_side=False),
                 BASELINE_MIRROR: copy_views(truth.images[view], view, mirror_far_side=True)}
    if mean_views is not None:
        baselines[BASELINE_MEAN] = mean_views.images
    return baselines


def score_rows(renders: np.ndarray, truth: PatientViews, conventions: tuple[str, ...], **labels) -> list[dict]:
    """Tidy rows for the views that have ground truth (and a render)."""
    rows = []
    for convention in conventions:
        scores = score_views(renders[truth.present], truth.images[truth.present], convention)
        for metric, values in scores.items():
            for view, value in zip(np.flatnonzero(truth.present), values):
                rows.append({**labels, "view": int(view), "convention": convention,
                             "metric": metric, "value": float(value)})
    return rows


def _finetune(model_api, dataset: DatasetSpec, method: str, xray: np.ndarray, view: int, weights: LossWeights,
              spec: SingleViewSpec, config: BenchConfig, device: str):
    checkpoint = dataset.method_checkpoints.get(method, dataset.checkpoint)
    return model_api.finetune(checkpoint, xray, input_view_index=view, loss_weights=weights, device=device,
                              seed=config.seed, progress=False, **spec.finetune)


def _render_size(model_api, checkpoint: Path, device: str) -> tuple[int, int]:
    size = model_api.load_checkpoint(checkpoint, device=device).image_size
    return (size, size) if isinstance(size, int) else tuple(size)


def read_rendered(template: str, patient: str, view: int, size: tuple[int, int], where: str) -> np.ndarray:
    """(72, H, W) uint8: the views rendered elsewhere for `patient` fitted at input `view`, from the folder
    `template` names (fields {patient}, {view}), file k = view k, resized to `size` like every method's."""
    folder = Path(template.format(patient=patient, view=view))
    if not folder.is_dir():
        raise UserError(f"{where}: no folder {folder} (renders of patient {patient}, input view {view})")
    views = {k: folder / view_file_name(k) for k in range(N_VIEWS)}
    missing = [path.name for path in views.values() if not path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{where}: {folder} lacks {missing[0]}{more} (all {N_VIEWS} views are scored)")
    return load_patient(views, size).images


def run_dataset(spec: SingleViewSpec, dataset: DatasetSpec, config: BenchConfig, device: str,
                result: SingleViewResult, rows: list[dict], progress: bool) -> None:
    from model import api as model_api  # the model package is only needed by tables 1 and 3

    if spec.methods and dataset.checkpoint is None:
        raise UserError(f"datasets.{dataset.name}: a checkpoint is needed to fine-tune {', '.join(spec.methods)}")
    for checkpoint in (dataset.checkpoint, *dataset.method_checkpoints.values()):
        if checkpoint is not None and not checkpoint.exists():
            raise UserError(f"datasets.{dataset.name}: no such checkpoint {checkpoint}")
    discovered = model_api.discover_drr_images(dataset.data_dir)
    check_eval_set(dataset, discovered)
    if dataset.checkpoint is not None:
        size = _render_size(model_api, dataset.checkpoint, device)
    else:  # renders made elsewhere only: scored at the DRRs' own size
        size = read_gray(next(iter(discovered[dataset.eval_patients[0]].values()))).shape
    mean_views = mean_training_views(discovered, dataset.eval_patients, size) if spec.baselines else None
    if spec.baselines and mean_views is None:
        print(f"note: {dataset.name}: every patient is evaluated, so there is no mean-training-image baseline")
    jobs = [(p, v, m) for p in dataset.eval_patients for v in dataset.input_views for m in spec.methods]
    for patient in dataset.eval_patients:
        result.truth[(dataset.name, patient)] = load_patient(discovered[patient], size)
    for method, folders in spec.rendered.items():  # read first: a missing folder stops the run before any fit
        for patient in dataset.eval_patients if dataset.name in folders else ():
            for view in dataset.input_views:
                renders = read_rendered(folders[dataset.name], patient, view, size,
                                        f"rendered.{method}.{dataset.name}")
                result.renders[(dataset.name, method, patient, view)] = renders
                rows += score_rows(renders, result.truth[(dataset.name, patient)], spec.conventions,
                                   dataset=dataset.name, method=method, patient=patient, input_view=view)
    for patient, view, method in tqdm(jobs, desc=f"fine-tune {dataset.name}", disable=not progress, unit="job"):
        truth = result.truth[(dataset.name, patient)]
        xray = read_gray(discovered[patient][view])  # native size: the model resizes its own input
        start = time.perf_counter()
        outcome = _finetune(model_api, dataset, method, xray, view, spec.methods[method], spec, config, device)
        seconds = time.perf_counter() - start
        key = (dataset.name, method, patient, view)
        views = np.asarray(outcome.views, dtype=np.uint8)
        if views.shape[1:] != size:  # score every method and baseline at one size
            views = np.stack([resize_gray(v, size) for v in views])
        result.renders[key], result.histories[key] = views, outcome.history
        result.jobs.append({"dataset": dataset.name, "method": method, "patient": patient, "input_view": view,
                            "iterations": int(len(outcome.history)), "seconds": round(seconds, 3),
                            "height": size[0], "width": size[1]})
        rows += score_rows(result.renders[key], truth, spec.conventions, dataset=dataset.name, method=method,
                           patient=patient, input_view=view)
    for patient in dataset.eval_patients if spec.baselines else ():
        truth = result.truth[(dataset.name, patient)]
        for view in dataset.input_views:
            for method, renders in baseline_views(truth, view, mean_views).items():
                result.renders[(dataset.name, method, patient, view)] = renders
                scored = PatientViews(truth.images, truth.present & (mean_views.present if method == BASELINE_MEAN
                                                                    else truth.present))
                rows += score_rows(renders, scored, spec.conventions, dataset=dataset.name, method=method,
                                   patient=patient, input_view=view)


def run_single_view(spec: SingleViewSpec, config: BenchConfig, device: str, progress: bool = True) -> SingleViewResult:
    """Fine-tune and score every (dataset, patient, input view, method) of a table-1/3 spec."""
    result, rows = SingleViewResult(rows=pd.DataFrame()), []
    for name in spec.datasets:
        run_dataset(spec, config.datasets[name], config, device, result, rows, progress)
    result.rows = pd.DataFrame(rows, columns=["dataset", "method", "patient", "input_view", "view",
                                              "convention", "metric", "value"])
    return result
