"""Train and fine-tune the physically matched family (model.atlas): the commands' two entry points.

Training (pose-aware: view k of every patient is at k * angle_step): reconstruct each training patient's
attenuation volume through the DRR camera, then calibrate the single-view fit by leaving each training
patient out in turn (never an evaluation patient), and write RUN/model.pt plus RUN/calibration.json.
A data-parallel run (torchrun) splits the patients over the ranks.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from umed_common.atomic import ensure_writable_dir, write_json_atomic
from umed_common.errors import UserError
from umed_common.images import read_gray
from umed_common.measures import psnr
from umed_common.protocol import N_VIEWS, VIEW_STEP_DEG, copy_views, degrees_apart

from .atlas import (clear_air, combine, cut_to_outline, reconstruct_volume, similarity_matrix, warp_volumes,
                    yaw_matrix)
from .atlas_fit import (AtlasState, axis_closeness, carve_air, clear_blend_floor, closeness_at, fit_detail, fit_gain,
                        fit_latent, fit_two_gains, history_frame, input_depth_mm, modulation, render_integrals,
                        views_uint8, voxel_points)
from .checkpoint import check_identity, read_checkpoint, resolve_run, save_checkpoint
from .config import ModelConfig, parse_loss_weights
from .data import discover_drr_images, select_patients, to_model_range
from .distributed import DistContext, finish_distributed, init_distributed
from .drr_camera import DrrCamera, camera_from_preset, line_integrals, ray_samples, samples_of, to_release_orientation
from .fit_result import FinetuneResult, prepare_xray
from .perceptual import build_perceptual
from .rng import physical_recon_generator
from .uncertainty import build_weighting

CALIBRATION_FILE = "calibration.json"
MAX_PARALLEL_JOBS = 8


def camera_for(cfg: ModelConfig, size: int) -> DrrCamera:
    phys = cfg.physical
    camera = camera_from_preset(phys.preset, size, phys.box_mm, sad_mm=phys.sad_mm, sid_mm=phys.sid_mm)
    if phys.detector_mm > 0:
        camera = DrrCamera(dataclasses.replace(camera.geometry, detector_height_mm=phys.detector_mm,
                                               detector_width_mm=phys.detector_mm), camera.box_mm)
    return camera


def geometry_from_data(cfg: ModelConfig, data_dir) -> ModelConfig:
    """When drr-generate made the data, its geometry.json files fix the camera (they must all agree)."""
    records = sorted(Path(data_dir).glob("*/geometry.json")) + sorted(Path(data_dir).glob("raw/*/geometry.json"))
    found = set()
    for path in records:
        try:
            record = json.loads(path.read_text())
            found.add((float(record["source_to_isocenter_mm"]), float(record["source_to_detector_mm"]),
                       float(record["detector_width_mm"]), float(record["detector_height_mm"]),
                       float(record.get("angle_step_deg", VIEW_STEP_DEG)), float(record.get("start_angle_deg", 0.0))))
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{path}: not a readable drr-generate geometry.json") from None
    if not found:
        return cfg
    if len(found) > 1:
        raise UserError(f"{data_dir}: the cases' geometry.json files disagree; train one geometry per run")
    sad, sid, width, height, step, start = found.pop()
    if width != height or step != VIEW_STEP_DEG or start != 0.0:
        raise UserError(f"{data_dir}: geometry.json has a non-square detector or views other than k x "
                        f"{VIEW_STEP_DEG} deg; the physical model needs MedNeRF's protocol")
    cfg.physical = dataclasses.replace(cfg.physical, sad_mm=sad, sid_mm=sid, detector_mm=width)
    return cfg


def projector_images(paths: dict[int, Path], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One patient's DRR files -> ((N, size, size) in [0, 1], projector orientation; (N,) view indices)."""
    views = sorted(v for v in paths if 0 <= v < N_VIEWS)
    stack = torch.stack([(to_model_range(read_gray(paths[v]), size)[0] + 1) / 2 for v in views])
    return to_release_orientation(stack), torch.tensor(views)


def parallel_workers(jobs: int) -> int:
    """Independent jobs (tomographies, calibration fits) one process runs at once: one per core it may use, up
    to MAX_PARALLEL_JOBS. Their grid sampling (its backward above all) keeps about one core busy, so one job at a
    time leaves cores idle. The cores are torch's thread count, as in drr.cli: it honours OMP_NUM_THREADS, which
    torchrun sets per rank."""
    return max(1, min(jobs, torch.get_num_threads(), MAX_PARALLEL_JOBS))


def in_parallel(work, items: list, desc: str, unit: str, progress: bool) -> list:
    """[work(item) for item in items], parallel_workers(len(items)) at a time in threads, results in the items'
    order. Each call must be independent of the others (no shared random stream), so the results do not depend
    on how many run at once."""
    with ThreadPoolExecutor(parallel_workers(len(items))) as pool, \
            tqdm(total=len(items), desc=desc, unit=unit, disable=not progress) as bar:
        futures = [pool.submit(work, item) for item in items]
        for future in as_completed(futures):
            future.result()
            bar.update()
        return [future.result() for future in futures]


def _reconstruct_all(cfg, patients: dict, ctx: DistContext, seed: int, progress: bool) -> dict[str, torch.Tensor]:
    """Each rank reconstructs every world_size-th patient; all ranks end with every volume.
    Every patient has its own random stream, so the volumes do not depend on how many run at once."""
    phys, camera = cfg.physical, camera_for(cfg, cfg.physical.train_size)
    names = sorted(patients)[ctx.rank::ctx.world_size]

    def reconstruct(name: str) -> torch.Tensor:
        images, views = projector_images(patients[name], phys.train_size)
        stream = physical_recon_generator(seed, sorted(patients).index(name))
        volume = reconstruct_volume(images, views, camera, grid=phys.grid, n_samples=phys.samples,
                                    steps=phys.recon_steps, lr=phys.recon_lr, views_per_step=phys.views_per_step,
                                    mu_scale=phys.mu_scale, generator=stream)
        return clear_air(volume, phys.air_floor)

    mine = dict(zip(names, in_parallel(reconstruct, names, "reconstruct", "patient", progress and ctx.is_main)))
    if ctx.world_size > 1:
        gathered = [None] * ctx.world_size
        dist.all_gather_object(gathered, mine)
        mine = {k: v for part in gathered for k, v in part.items()}
    return dict(sorted(mine.items()))


def fit_single_view(atlas: torch.Tensor, target: torch.Tensor, view: int, cfg: ModelConfig, weights, perceptual,
                    pose_prior: float, rows: list | None = None, psnr_target: float | None = None) -> AtlasState:
    """Latent then bounded gain for one X-ray (target (S, S) in [0, 1], projector orientation, S = image size)."""
    phys = cfg.physical
    if phys.mirror_atlas:  # LPS x is the volume's last axis
        atlas = torch.cat([atlas, atlas.flip(-1)])
    if phys.atlas_yaw_deg:
        atlas = warp_volumes(atlas, yaw_matrix(phys.atlas_yaw_deg))
    weighting = build_weighting(weights, cfg.finetune.uncertainty_form)
    small = torch.nn.functional.interpolate(target[None, None], size=(phys.fit_size,) * 2, mode="area")[0, 0]
    members, pose, _ = fit_latent(atlas, small, camera_for(cfg, phys.fit_size), view, phys, weighting, perceptual,
                                  phys.fit_steps, pose_prior, rows)
    camera = camera_for(cfg, target.shape[-1])
    angle = camera.geometry.start_angle_deg + view * camera.geometry.angle_step_deg
    if phys.outline_share > 0:  # each member posed: the outline needs them one by one
        posed = warp_volumes(atlas, similarity_matrix(pose, angle))
        volume = cut_to_outline(posed, members, combine(posed, members), phys.outline_share)
    else:
        volume = warp_volumes(combine(atlas, members)[None], similarity_matrix(pose, angle))[0]
    volume = clear_blend_floor(volume, camera, view, target, phys.blend_air_floor, phys.air_level, phys.max_gain,
                               phys.render_samples)
    if phys.mirror_view_weight > 0:
        far_view = (view + N_VIEWS // 2) % N_VIEWS
        gain, far_gain = fit_two_gains(volume, camera, view, far_view, target, phys, weighting, perceptual,
                                       phys.gain_steps, rows, psnr_target)
        return AtlasState(volume, carve_air(gain, target, phys.air_level), view, members, pose,
                          far_gain=far_gain, far_view=far_view)
    samples, step_mm = ray_samples(camera, [view], phys.render_samples)
    closeness = closeness_at(camera, view, samples[0], phys.gain_depth_sigma_mm)
    values = samples_of(volume, samples)[0]
    gain, depth_norm = fit_gain(values, step_mm, target, phys, weighting, perceptual, phys.gain_steps, rows,
                                psnr_target, closeness)
    detail = detail_norm = None
    if phys.detail_sigma_mm > 0:
        detail_closeness = axis_closeness(input_depth_mm(camera, view, samples[0]), phys.detail_sigma_mm)
        sigma_px = phys.detail_scale_mm / camera.geometry.pixel_footprint_at_isocenter_mm()
        gain, detail, detail_norm = fit_detail(values, step_mm, target, gain, depth_norm, closeness, detail_closeness,
                                               sigma_px, phys, weighting, perceptual, phys.gain_steps, rows,
                                               psnr_target)
    gain = carve_air(gain, target, phys.air_level)
    return AtlasState(volume, gain, view, members, pose, phys.gain_depth_power, depth_norm, phys.gain_depth_sigma_mm,
                      detail=detail, detail_norm=detail_norm, detail_sigma_mm=phys.detail_sigma_mm)


def _novel_view_psnr(rendered: np.ndarray, truth_u8: np.ndarray, present: torch.Tensor, input_view: int) -> float:
    """Mean PSNR over the views other than the input that exist in the truth; both (72, S, S) uint8, already
    min-max normalised (paper convention)."""
    novel = present.numpy().copy()
    novel[input_view] = False
    return float(np.mean(psnr(rendered[novel], truth_u8[novel], 255.0)))


def _loo_scores(state: AtlasState, truth: torch.Tensor, present: torch.Tensor, cfg: ModelConfig,
                others_mean: np.ndarray) -> dict:
    """Novel-view PSNR of the fit and of the three trivial answers for one left-out training patient."""
    camera = camera_for(cfg, truth.shape[-1])
    truth_u8, view = views_uint8(truth), state.input_view
    rendered = views_uint8(render_integrals(state, camera, cfg.physical.samples))
    copy, mirror = (copy_views(truth_u8[view], view, mirror_far_side=far) for far in (False, True))
    return {"novel_view_psnr": _novel_view_psnr(rendered, truth_u8, present, view),
            "baseline_copy": _novel_view_psnr(copy, truth_u8, present, view),
            "baseline_mirror": _novel_view_psnr(mirror, truth_u8, present, view),
            "baseline_mean": _novel_view_psnr(others_mean, truth_u8, present, view)}


def _patient_truth(paths: dict[int, Path], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(72, S, S) projector-orientation images in [0, 1] (zeros where missing) and (72,) presence."""
    images, views = projector_images(paths, size)
    truth, present = torch.zeros(N_VIEWS, size, size), torch.zeros(N_VIEWS, dtype=torch.bool)
    truth[views], present[views] = images, True
    return truth, present


def calibration_patients(names: list[str], most: int) -> list[str]:
    """At most `most` of the sorted patient ids, evenly spread (all of them when most is 0 or enough)."""
    if most == 0 or len(names) <= most:
        return list(names)
    return [names[round(i * (len(names) - 1) / (most - 1))] for i in range(most)] if most > 1 else names[:1]


def calibrate(cfg: ModelConfig, volumes: dict[str, torch.Tensor], patients: dict, perceptual,
              progress: bool) -> dict:
    """Leave each training patient out: fit its calibration views with the atlas of the others, at
    train_size, for every pose_prior candidate; pick the best mean novel-view PSNR. Never sees evaluation data."""
    phys, names = cfg.physical, sorted(volumes)
    scores = {str(c): [] for c in phys.pose_prior_candidates}
    truths = {n: _patient_truth(patients[n], phys.train_size) for n in names}
    small_cfg = dataclasses.replace(cfg, image_size=phys.train_size)
    jobs = [(c, p, v) for c in phys.pose_prior_candidates
            for p in calibration_patients(names, phys.calibration_patients) for v in phys.calibration_views
            if truths[p][1][v]]  # a view the patient's DRRs lack is not fitted

    def fit(job: tuple) -> dict:
        candidate, left_out, view = job
        truth, present = truths[left_out]
        atlas = torch.stack([volumes[n] for n in names if n != left_out])
        state = fit_single_view(atlas, truth[view], view, small_cfg, None, perceptual, candidate)
        others = torch.stack([truths[n][0] for n in names if n != left_out])
        return {"patient": left_out, "input_view": view,
                **_loo_scores(state, truth, present, small_cfg, views_uint8(others.mean(0)))}

    for (candidate, _, _), row in zip(jobs, in_parallel(fit, jobs, "calibrate", "fit", progress)):
        scores[str(candidate)].append(row)
    means = {c: float(np.mean([s["novel_view_psnr"] for s in rows])) for c, rows in scores.items() if rows}
    best = max(means, key=means.get)
    return {"method": "leave one training patient out, learned loss weights, at train_size",
            "pose_prior_candidates": means, "chosen_pose_prior": float(best), "fits": scores}


def train_physical(cfg: ModelConfig, data_dir, out_dir, *, holdout: Sequence[str] = (), device: str = "auto",
                   resume: bool = False, seed: int = 0, progress: bool = True,
                   perceptual_weights=None) -> Path:
    """Reconstruct the atlas, calibrate, write RUN/model.pt and RUN/calibration.json; returns the checkpoint."""
    ctx = init_distributed(device)
    checkpoint = Path(out_dir) / "model.pt"
    if checkpoint.exists() and not resume:
        raise UserError(f"{checkpoint}: already exists (pass --resume to continue that run)")
    patients = select_patients(discover_drr_images(data_dir), holdout)
    cfg = geometry_from_data(cfg, data_dir)
    perceptual = build_perceptual(cfg.perceptual, perceptual_weights)
    out_dir = ensure_writable_dir(out_dir)
    if resume and checkpoint.exists():
        _check_resume(checkpoint, cfg, patients, holdout)
        finish_distributed(ctx)
        return checkpoint      # the atlas is written only when complete: nothing is left to do
    began = time.monotonic()
    torch.manual_seed(seed)
    volumes = _reconstruct_all(cfg, patients, ctx, seed, progress)
    if ctx.is_main:
        phys = cfg.physical
        record = {"chosen_pose_prior": phys.pose_prior, "method": "config value (calibration off or one patient)"}
        if phys.calibrate and len(volumes) >= 2:
            record = calibrate(cfg, volumes, patients, perceptual, progress)
            cfg.physical = dataclasses.replace(phys, pose_prior=record["chosen_pose_prior"])
        record.update({"checkpoint": "model.pt", "training_patients": sorted(volumes), "holdout": sorted(holdout),
                       "input_view": "given by --input-view-index (the angle is that view's), else searched",
                       "view_step_deg": camera_for(cfg, 8).geometry.angle_step_deg, "seconds": round(time.monotonic() - began, 1)})
        states = {"atlas": torch.stack(list(volumes.values())), "patients": sorted(volumes),
                  "holdout": sorted(holdout), "seed": seed}
        save_checkpoint(checkpoint, cfg, len(volumes), states)
        write_json_atomic(out_dir / CALIBRATION_FILE, record)
    finish_distributed(ctx)
    return checkpoint


def _check_resume(checkpoint: Path, cfg: ModelConfig, patients: dict, holdout: Sequence[str]) -> None:
    saved, payload = read_checkpoint(checkpoint)
    if saved.physical.preset != cfg.physical.preset or saved.family != cfg.family:
        raise UserError(f"{checkpoint}: was trained with another config (resume with the same config)")
    check_identity(payload, {"holdout": sorted(holdout), "patients": sorted(patients)}, checkpoint)


def refinement_views(coarse_losses: dict[int, float], step_views: int, keep: int) -> list[int]:
    """The views within step_views // 2 of the `keep` lowest-loss views of `coarse_losses` (view -> loss),
    wrapping round the N_VIEWS, that `coarse_losses` does not hold yet; in ascending order."""
    best = sorted(coarse_losses, key=coarse_losses.get)[:keep]
    reach = step_views // 2
    near = {(view + offset) % N_VIEWS for view in best for offset in range(-reach, reach + 1)}
    return sorted(near - set(coarse_losses))


# A searched view is flagged when the best view at least 90 deg from it fits the X-ray within this ratio of its
# loss. In a scratch check on the 14 training chests of runs/chest_physical, each left out in turn (stop 34,
# docs/physical-model.md), the one search that landed on the far side had 1.006, the 13 others 1.13 or more.
FAR_SIDE_RATIO = 1.1


def view_search_losses(atlas: torch.Tensor, target: torch.Tensor, cfg: ModelConfig, perceptual,
                       step_views: int = 6) -> dict[int, float]:
    """view -> data loss of a short latent fit of the X-ray as that view: a coarse grid every `step_views`,
    then every view within half a step of the physical.view_search_keep best grid views (`refinement_views`).
    Keeping two grid views (the default) refines a minimum that lies between two of them, or a close second
    basin."""
    phys = cfg.physical
    size = max(phys.fit_size // 2, 8)
    small = torch.nn.functional.interpolate(target[None, None], size=(size, size), mode="area")[0, 0]
    camera = camera_for(cfg, size)

    def loss_at(view: int) -> float:
        weighting = build_weighting((0.0, 1.0), cfg.finetune.uncertainty_form)
        return fit_latent(atlas, small, camera, view, phys, weighting, perceptual, max(phys.fit_steps // 3, 1),
                          phys.pose_prior)[2]

    losses = {view: loss_at(view) for view in range(0, N_VIEWS, step_views)}
    losses.update({view: loss_at(view) for view in refinement_views(losses, step_views, phys.view_search_keep)})
    return losses


def far_side_rival(losses: dict[int, float]) -> tuple[int, float]:
    """(view, its loss / the best loss) of the lowest-loss view at least 90 deg from the best one."""
    best = min(losses, key=losses.get)
    far = {view: loss for view, loss in losses.items() if degrees_apart(view, best) >= 90}
    rival = min(far, key=far.get)
    return rival, far[rival] / max(losses[best], 1e-12)


def search_input_view(atlas: torch.Tensor, target: torch.Tensor, cfg: ModelConfig, perceptual,
                      step_views: int = 6) -> int:
    """The view index whose short latent fit explains the X-ray best (`view_search_losses`). A view and the one
    180 deg away give near mirror-image DRRs, so the search can only be as sure as that: when the best view
    90 deg or more away fits nearly as well (FAR_SIDE_RATIO), a warning names it."""
    losses = view_search_losses(atlas, target, cfg, perceptual, step_views)
    best = min(losses, key=losses.get)
    rival, ratio = far_side_rival(losses)
    if ratio < FAR_SIDE_RATIO:
        warnings.warn(f"the searched input view {best} and view {rival}, {degrees_apart(best, rival)} deg away, "
                      f"fit the X-ray almost equally well (loss x{ratio:.3f}); give --input-view-index if you know "
                      f"which", stacklevel=2)
    return best


def finetune_physical(checkpoint, xray: np.ndarray, *, input_view_index: int | None, loss_weights,
                      perceptual_weights=None, progress: bool = True, gain_steps: int | None = None,
                      psnr_target: float | None = None):
    """One X-ray ((H, W), any size) -> FinetuneResult with the 72 views (file k = DRR view k)."""
    path = resolve_run(checkpoint)
    return fit_physical(*read_checkpoint(path), path, xray, input_view_index=input_view_index,
                        loss_weights=loss_weights, perceptual_weights=perceptual_weights, progress=progress,
                        gain_steps=gain_steps, psnr_target=psnr_target)


def fit_physical(cfg: ModelConfig, payload: dict, path: Path, xray: np.ndarray, *, input_view_index: int | None,
                 loss_weights, perceptual_weights=None, progress: bool = True, gain_steps: int | None = None,
                 psnr_target: float | None = None):
    """finetune_physical for a checkpoint already read (read_checkpoint's config and payload of `path`)."""
    state, rows = fit_state(cfg, payload, path, xray, input_view_index=input_view_index, loss_weights=loss_weights,
                            perceptual_weights=perceptual_weights, gain_steps=gain_steps, psnr_target=psnr_target)
    input_view_index = state.input_view
    camera = camera_for(cfg, cfg.image_size)
    with tqdm(total=N_VIEWS, desc=f"{N_VIEWS} views", unit="view", disable=not progress) as bar:
        integrals = render_integrals(state, camera, cfg.physical.render_samples,
                                     progress=lambda done: bar.update(done - bar.n))
    angle = camera.geometry.start_angle_deg + input_view_index * camera.geometry.angle_step_deg
    return FinetuneResult(views_uint8(integrals), input_view_index, float(angle), history_frame(rows),
                          attenuation=fitted_attenuation(state, camera).numpy(), box_mm=camera.box_mm)


def fit_state(cfg: ModelConfig, payload: dict, path: Path, xray: np.ndarray, *, input_view_index: int | None,
              loss_weights, perceptual_weights=None, gain_steps: int | None = None,
              psnr_target: float | None = None) -> tuple[AtlasState, list[dict]]:
    """The single-view fit of `fit_physical` without the rendering: (AtlasState, history rows); the input view
    is searched when input_view_index is None (the state's input_view says which was used)."""
    if cfg.family != "physical":
        raise UserError(f"{path}: not a physical-family checkpoint")
    atlas = payload["atlas"].float()
    if not torch.isfinite(atlas).all():
        raise UserError(f"{path}: the atlas holds non-finite values")
    if gain_steps is not None:
        cfg.physical = dataclasses.replace(cfg.physical, gain_steps=gain_steps)
    weights = None if loss_weights is None else parse_loss_weights(loss_weights)
    perceptual = build_perceptual(cfg.perceptual, perceptual_weights)
    target = to_release_orientation((prepare_xray(xray, cfg.image_size) + 1) / 2)
    if input_view_index is None:
        input_view_index = search_input_view(atlas, target, cfg, perceptual)
    rows: list[dict] = []
    state = fit_single_view(atlas, target, input_view_index, cfg, weights, perceptual, cfg.physical.pose_prior, rows,
                            psnr_target)
    return state, rows


def fitted_attenuation(state: AtlasState, camera: DrrCamera) -> torch.Tensor:
    """(D, H, W) mu per mm of the fitted patient on the atlas grid: mu_A(x) g(u_K(x))^q(x)."""
    return state.volume * modulation(state, camera, voxel_points(state.volume.shape), state.volume)


def sample_atlas_images(checkpoint, n: int, *, seed: int = 0) -> np.ndarray:
    """(n, S, S) uint8 DRRs of the atlas volumes (training patients in turn) at random view indices."""
    cfg, payload = read_checkpoint(resolve_run(checkpoint))
    atlas = payload["atlas"].float()
    views = torch.randint(0, N_VIEWS, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    camera = camera_for(cfg, cfg.image_size)
    images = []
    for index, view in enumerate(views):
        samples, step_mm = ray_samples(camera, [view], cfg.physical.render_samples)
        images.append(line_integrals(atlas[index % len(atlas)], samples, step_mm)[0])
    return views_uint8(torch.stack(images))
