"""One validated configuration schema for the model, loaded from YAML.

Every size and hyper-parameter of REFERENCE sections 3-5 lives here, so a config file is the
whole description of an experiment. Unknown keys are a user mistake, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from umed_common.errors import UserError
from umed_common.yaml_files import read_yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class CameraConfig:
    fov_deg: float = 10.0
    radius: tuple[float, float] = (9.5, 10.5)
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    polar_deg: tuple[float, float] = (70.0, 85.0)
    # samples run from `depth_in_front` units before the origin to `depth_behind` after it (REFERENCE 3)
    depth_in_front: float = 3.0
    depth_behind: float = 2.0


@dataclass
class FieldConfig:
    n_layers: int = 8
    width: int = 256
    skip_layer: int = 4            # the input is re-concatenated to the output of this layer (0-based, NeRF)
    pos_freqs: int = 10
    dir_freqs: int = 4
    z_shape_dim: int = 128
    z_app_dim: int = 128
    colour_width: int = 128
    # bfloat16 autocast of the MLP (matmuls in bf16, accumulation and rendering in fp32): about 2x
    # faster on CPUs with AVX512-BF16/AMX and on recent GPUs; float32 is the faithful default
    precision: str = "float32"


@dataclass
class RenderConfig:
    renderer: str = "emission"     # emission (upstream alpha compositing) | xray (Beer-Lambert line integral)
    n_samples: int = 64
    density_noise_std: float = 1.0
    density_noise_decay_iters: int = 5000


@dataclass
class PatchConfig:
    size: int = 32
    # s_min = min(max_scale_min, max(min_scale, exp(-decay * floor(it / decay_every)))) (REFERENCE 3)
    min_scale: float = 0.25
    max_scale_min: float = 0.9
    scale_decay: float = 0.0075
    scale_decay_every: int = 1000


@dataclass
class DiscriminatorConfig:
    kind: str = "mednerf"          # mednerf (self-supervised, hinge) | graf (patch D, non-saturating + R1)
    width: int = 64
    loss: str = "hinge"            # hinge (soft labels) | nonsaturating
    r1_gamma: float = 0.0          # MedNeRF's config asks for 10 but its trainer never applies it
    augmented_head_weight: float = 0.2 / 3
    recon_weight: float = 1.0
    recon_size: int = 128          # decoders reconstruct the real patch (and a quadrant) at this size
    soft_label_min: float = 0.8


@dataclass
class TrainConfig:
    batch_size: int = 8
    lr_g: float = 5e-4
    lr_d: float = 1e-4
    lr_milestones: tuple[int, ...] = (50000, 100000, 200000)
    lr_gamma: float = 0.5
    ema_beta: float = 0.999
    max_iters: int = 100000
    checkpoint_every: int = 1000
    keep_checkpoints_every: int = 0   # 0: keep only the latest; N: also keep model_itN.pt every N iterations
    sample_every: int = 1000
    log_every: int = 10
    n_sample_images: int = 16
    sample_size: int = 64          # sample grids are rendered at this size (focal rescaled)


@dataclass
class FinetuneConfig:
    lr: float = 5e-4
    max_iters: int = 5000
    psnr_target: float = 25.0
    polar_deg: float = 77.5
    radius: float = 10.5
    render_size: int = 0            # 0: fine-tune at image_size; smaller is faster (focal rescaled)
    loss_weights: str = "learned"   # learned | "w_r,w_mse" fixed
    uncertainty_form: str = "logvar"  # logvar (stable Eq. 5) | log1p (public-code variant)
    uncertainty_lr: float = 1e-3
    # RMSprop as upstream, with its running mean of squared gradients bias-corrected (as Adam's):
    # uncorrected, the first step moves every weight by ~10 x lr, which on the knee CPU checkpoint
    # wrecked the input-view render (PSNR 10.1 -> 5.5 dB) and, with MedNeRF's fixed weights, never recovered.
    rmsprop_bias_correction: bool = True
    pose_search_step_deg: float = 10.0
    # z candidates searched with the azimuth (the best render of the input is kept). 1: the paper's one
    # random z; more picks the latent the GAN already renders closest to the input.
    z_candidates: int = 1
    # Model azimuth per DRR view index; its sign is a property of each trained model. A transmission
    # image from azimuth a + 180 is (nearly, for a cone beam) the mirror of the one from a, so the DRRs
    # of an anatomy and of its mirror image are the same set: a GAN trained on unposed DRRs learns
    # either, and the two turn in opposite senses. Measure it per checkpoint on training DRRs with
    # python -m model.rotation_sense.
    view_step_deg: float = 5.0
    log_every: int = 1
    render_chunk: int = 8192


# The fine-tuning options a run may set over its checkpoint's `finetune` values, from whichever side:
# umed-finetune's flags (--max-iters ...), a umed-bench table's keys, finetune()'s keywords. Name -> help;
# each is a FinetuneConfig field, so its type and checks are the schema's (with_finetune_options).
FINETUNE_OPTIONS = {
    "max_iters": "fine-tuning steps",
    "psnr_target": "stop at this input-view PSNR in dB",
    "lr": "generator learning rate",
    "view_step_deg": "model azimuth per DRR view index; its sign sets the rotation direction",
    "render_size": "fine-tune on renders of this many pixels per side, smaller is faster; 0: the image size",
    "z_candidates": "search this many latents z with the azimuth and keep the best (paper: 1)",
}


@dataclass
class PhysicalConfig:
    """The physically matched family (model.atlas): DRR camera, attenuation atlas, single-view fitting."""

    preset: str = "knee"            # DRR recipe of the data: knee (350 mm detector) | chest (500 mm)
    sad_mm: float = 541.0
    sid_mm: float = 949.0
    detector_mm: float = 0.0        # square detector side; 0: the preset's. Set from geometry.json by umed-train
    box_mm: float = 250.0           # side of the cube (about the isocentre) the attenuation volume fills
    grid: int = 48                  # voxels per side of each atlas volume
    mu_scale: float = 0.02          # attenuation per mm of softplus(0): sets the optimiser's natural step
    train_size: int = 64            # pixels per side of the views reconstructed in training
    samples: int = 80               # samples per ray at train_size and when fitting the latent
    render_samples: int = 144       # samples per ray of the 72 rendered views
    recon_steps: int = 250          # tomography steps per training patient
    recon_lr: float = 0.1
    views_per_step: int = 8
    fit_size: int = 64              # pixels per side when fitting atlas weights and pose
    fit_steps: int = 150
    fit_lr: float = 0.02
    pose_prior: float = 0.01        # weight of |pose|^2 in the latent fit; calibrated on training patients
    pose_prior_candidates: tuple[float, ...] = (0.001, 0.01, 0.1)
    gain_steps: int = 150           # bounded-gain tuning steps at image_size
    gain_lr: float = 0.02
    max_gain: float = 4.0
    # p of the gain's depth profile q = mu^(p-1)/N (model.atlas_fit): 1 spreads the change over each input ray
    # in proportion to the prior, > 1 concentrates it where the prior is dense (bones), so other views see it
    # less smeared
    gain_depth_power: float = 1.0
    # s (mm) of the gain's closeness to the rotation axis, c = exp(-d^2 / 2 s^2) with d the depth along the
    # input view's central ray (model.atlas_fit): > 0 puts the change the one view cannot place in depth near
    # the axis, where it moves least as the source turns; 0: off
    gain_depth_sigma_mm: float = 0.0
    # s_H (mm) of the detail slab (model.atlas_fit.fit_detail): > 0 splits the fitted gain into its coarse part
    # (the profile above) and the fine detail the coarse atlas lacks, which goes into a slab this wide at the
    # rotation axis, so the views near the input (and its far side) keep it sharp; refitted for gain_steps
    # at gain_lr; 0: off
    detail_sigma_mm: float = 0.0
    # the split's scale: a Gaussian of this sigma (mm at the isocentre) of the log gain is the coarse part
    detail_scale_mm: float = 5.0
    # each reconstructed atlas volume: voxels below this fraction of its 99th percentile become air (model.atlas.
    # clear_air); 0 keeps the tomography's floor
    air_floor: float = 0.0
    # single-view fit: input pixels at or below this fraction of the X-ray's maximum are air, so the volume along
    # their rays is cleared (model.atlas_fit.carve_air); 0 carves nothing
    air_level: float = 0.0
    # single-view fit: voxels of the posed blend below this fraction of its 99th percentile become air, except
    # along input rays that the cleared blend could not fill within max_gain (model.atlas_fit.clear_blend_floor);
    # 0 keeps the blend's floor
    blend_air_floor: float = 0.0
    # single-view fit: the posed blend is air where atlas members of less than this share of the blend weight
    # have tissue (model.atlas.cut_to_outline); 0 keeps the blend's soft outline
    outline_share: float = 0.0
    # single-view fit: weight of a pseudo-view at the far side (the input view + 180 deg), the X-ray mirrored
    # left-right (the parallel-beam limit of a transmission image seen from behind), fitted by a second gain map
    # at that view's detector (model.atlas_fit.fit_two_gains); 0: off. Needs gain_depth_power 1
    mirror_view_weight: float = 0.0
    # control points per detector side of that far gain (bilinear between them, in detector coordinates, so the
    # same at every image size); 0: one per pixel. The pseudo-view is the parallel-beam limit: through the cone
    # beam a structure's mirror image lands tens of pixels away from its far-side DRR at a chest's edges, so its
    # fine detail is wrong and a per-pixel far gain paints it into the views around 180 deg
    far_gain_grid: int = 0
    # single-view fit: 0 blends the atlas with softmax weights; > 0 writes the blend as the atlas mean plus its
    # principal components (model.atlas.population_modes) with this weight on |c|^2, c in standard deviations of
    # the population: a statistical shape model, which pulls toward the mean instead of letting one view pick a
    # member (whose depth the view cannot see)
    shape_prior: float = 0.0
    # add each atlas volume's left-right mirror (a left knee is a mirrored right knee): twice the shapes, no cost
    mirror_atlas: bool = True
    # the patient's turn about the rotation axis relative to the atlas (deg, the sense the views advance), when it
    # is known from the positioning: the atlas is turned by it before the fit. One view does not find it
    # (docs/physical-model.md, leave-one-out on the knees: +-8 deg moves a fit's margin by up to 2.6 dB, and the
    # turn the latent fit's own loss prefers lost 0.43 dB on average), so every config keeps 0
    atlas_yaw_deg: float = 0.0
    # an X-ray of unknown view (umed-finetune without --input-view-index): after the 30-deg grid, every view
    # within 15 deg of this many of the best grid views is tried too (model.physical.search_input_view); 0: the
    # grid alone
    view_search_keep: int = 2
    calibrate: bool = True          # leave each training patient out to pick pose_prior (needs >= 2 patients)
    calibration_views: tuple[int, ...] = (0, 18)
    # at most this many training patients are left out in turn (evenly spread over the sorted ids): the chest's
    # 14 took 3 x 28 fits, about 30 of training's 45 minutes on 2 cores; 0 leaves out every patient
    calibration_patients: int = 6


@dataclass
class ModelConfig:
    name: str = "model"
    # gan: the paper-faithful GRAF/MedNeRF generator; physical: the DRR-camera attenuation atlas (model.atlas)
    family: str = "gan"
    image_size: int = 128
    perceptual: str = "vgg16"       # vgg16 (ImageNet weights, offline) | ssim (weight-free 1 - SSIM)
    camera: CameraConfig = _field(default_factory=CameraConfig)
    field: FieldConfig = _field(default_factory=FieldConfig)
    render: RenderConfig = _field(default_factory=RenderConfig)
    patch: PatchConfig = _field(default_factory=PatchConfig)
    discriminator: DiscriminatorConfig = _field(default_factory=DiscriminatorConfig)
    train: TrainConfig = _field(default_factory=TrainConfig)
    finetune: FinetuneConfig = _field(default_factory=FinetuneConfig)
    physical: PhysicalConfig = _field(default_factory=PhysicalConfig)

    @property
    def z_dim(self) -> int:
        return self.field.z_shape_dim + self.field.z_app_dim

    @property
    def image_channels(self) -> int:
        """Emission renders RGB like upstream (gray images replicated); xray one attenuation channel."""
        return 1 if self.render.renderer == "xray" else 3


_CHOICES = {
    ("render", "renderer"): ("emission", "xray"),
    ("discriminator", "kind"): ("mednerf", "graf"),
    ("discriminator", "loss"): ("hinge", "nonsaturating"),
    ("finetune", "uncertainty_form"): ("logvar", "log1p"),
    ((), "perceptual"): ("vgg16", "ssim"),
    ((), "family"): ("gan", "physical"),
    ("physical", "preset"): ("knee", "chest"),
    ("field", "precision"): ("float32", "bfloat16"),
}


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise UserError(f"config {where or 'file'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"config {where or 'top level'}: unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key)
        else:
            kwargs[name] = _coerce(default, value, key)
    return cls(**kwargs)


def _coerce(default: Any, value: Any, key: str) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {key}: expected a list, got {value!r}")
        return tuple(_coerce(default[0] if default else 0.0, v, key) for v in value)
    if isinstance(default, bool) or isinstance(default, str):
        if type(value) is not type(default):
            raise UserError(f"config {key}: expected {type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"config {key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"config {key}: expected a number, got {value!r}")
        return float(value)
    return value


def _validate(cfg: ModelConfig) -> None:
    for (section, name), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if value not in allowed:
            raise UserError(f"config {'.'.join([section, name]) if section else name}: "
                            f"{value!r} is not one of {', '.join(allowed)}")
    if cfg.field.skip_layer >= cfg.field.n_layers - 1 or cfg.field.n_layers < 2:
        raise UserError("config field: need n_layers >= 2 and skip_layer < n_layers - 1")
    if cfg.image_size < 8 or cfg.patch.size < 8 or cfg.patch.size > cfg.image_size:
        raise UserError("config: need 8 <= patch.size <= image_size")
    if cfg.discriminator.kind == "mednerf" and cfg.patch.size != 32:
        raise UserError("config: the mednerf discriminator expects patch.size 32")
    size = cfg.discriminator.recon_size
    if size < 16 or size & (size - 1):
        raise UserError("config discriminator.recon_size: must be a power of two >= 16")
    _validate_finetune(cfg.finetune)
    _validate_training(cfg)
    _validate_physical(cfg.physical)


def _check_all(section: str, obj, names: tuple[str, ...], test, need: str) -> None:
    """section "--": the values came from command-line flags, and the message names the flag."""
    for name in names:
        value = getattr(obj, name)
        if not test(value):
            key = "--" + name.replace("_", "-") if section == "--" else f"config {section}.{name}"
            raise UserError(f"{key}: must be {need}, got {value!r}")


def _validate_training(cfg: ModelConfig) -> None:
    """train, patch and render values that would crash or silently misbehave (e.g. batch_size -5)."""
    def positive(v):
        return math.isfinite(v) and v > 0

    def unit(v):
        return math.isfinite(v) and 0 < v <= 1

    train, patch, render = cfg.train, cfg.patch, cfg.render
    _check_all("train", train, ("batch_size", "max_iters", "checkpoint_every", "log_every", "n_sample_images",
                                "sample_size"), lambda v: v >= 1, "at least 1")
    _check_all("train", train, ("sample_every", "keep_checkpoints_every"), lambda v: v >= 0, "0 or more")
    _check_all("train", train, ("lr_g", "lr_d", "lr_gamma"), positive, "a positive number")
    _check_all("train", train, ("ema_beta",), lambda v: math.isfinite(v) and 0 <= v < 1, "in [0, 1)")
    if any(m < 0 for m in train.lr_milestones):
        raise UserError(f"config train.lr_milestones: must not be negative, got {list(train.lr_milestones)}")
    _check_all("patch", patch, ("min_scale", "max_scale_min"), unit, "in (0, 1]")
    _check_all("patch", patch, ("scale_decay",), lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
    _check_all("patch", patch, ("scale_decay_every",), lambda v: v >= 1, "at least 1")
    _check_all("render", render, ("n_samples",), lambda v: v >= 2, "at least 2")
    _check_all("render", render, ("density_noise_std",), lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
    _check_all("render", render, ("density_noise_decay_iters",), lambda v: v >= 0, "0 or more")


def _validate_finetune(ft: FinetuneConfig, section: str = "finetune") -> None:
    def finite(v):
        return math.isfinite(v)

    _check_all(section, ft, ("max_iters", "z_candidates", "log_every", "render_chunk"), lambda v: v >= 1,
               "at least 1")
    _check_all(section, ft, ("render_size",), lambda v: v >= 0, "0 (the image size) or more")
    _check_all(section, ft, ("lr", "uncertainty_lr", "radius"), lambda v: finite(v) and v > 0, "a positive number")
    _check_all(section, ft, ("view_step_deg", "pose_search_step_deg"), lambda v: finite(v) and v != 0,
               "a non-zero number")
    _check_all(section, ft, ("psnr_target", "polar_deg"), finite, "a finite number")
    parse_loss_weights(ft.loss_weights)


def with_finetune_options(ft: FinetuneConfig, options: Mapping[str, Any], section: str = "finetune"
                          ) -> FinetuneConfig:
    """`ft` with the FINETUNE_OPTIONS in `options` set (None keeps ft's value), each coerced and checked as a
    YAML value is; an unknown option or a bad value is a UserError naming `section.option`."""
    unknown = sorted(set(options) - set(FINETUNE_OPTIONS))
    if unknown:
        raise UserError(f"config {section}: unknown fine-tuning option(s) {', '.join(unknown)} "
                        f"(allowed: {', '.join(FINETUNE_OPTIONS)})")
    chosen = dataclasses.replace(ft, **{name: _coerce(getattr(ft, name), value, f"{section}.{name}")
                                        for name, value in options.items() if value is not None})
    _validate_finetune(chosen, section)
    return chosen


def _validate_physical(phys: PhysicalConfig) -> None:
    positive = ("sad_mm", "sid_mm", "box_mm", "mu_scale", "recon_lr", "fit_lr", "gain_lr")
    for name in positive:
        value = getattr(phys, name)
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"config physical.{name}: must be a positive number, got {value}")
    if not (math.isfinite(phys.detector_mm) and phys.detector_mm >= 0):
        raise UserError("config physical.detector_mm: must be 0 (the preset's) or a positive size in mm")
    if phys.sad_mm >= phys.sid_mm:
        raise UserError("config physical: need sad_mm < sid_mm")
    counts = ("grid", "train_size", "samples", "render_samples", "views_per_step", "fit_size")
    for name in counts:
        if getattr(phys, name) < 2:
            raise UserError(f"config physical.{name}: must be at least 2")
    for name in ("recon_steps", "fit_steps", "gain_steps", "view_search_keep"):
        if getattr(phys, name) < 0:
            raise UserError(f"config physical.{name}: must not be negative")
    if not (math.isfinite(phys.max_gain) and phys.max_gain > 1):
        raise UserError("config physical.max_gain: must be above 1")
    if not (math.isfinite(phys.gain_depth_power) and 1 <= phys.gain_depth_power <= 8):
        raise UserError("config physical.gain_depth_power: must be a number from 1 to 8")
    for name in ("air_floor", "air_level", "outline_share", "blend_air_floor"):
        if not (math.isfinite(getattr(phys, name)) and 0 <= getattr(phys, name) < 1):
            raise UserError(f"config physical.{name}: must be a fraction from 0 (off) to below 1")
    if not (math.isfinite(phys.atlas_yaw_deg) and abs(phys.atlas_yaw_deg) <= 180):
        raise UserError("config physical.atlas_yaw_deg: must be a number of degrees from -180 to 180")
    if not (math.isfinite(phys.shape_prior) and phys.shape_prior >= 0):
        raise UserError("config physical.shape_prior: must be a number >= 0 (0: the softmax blend)")
    for name in ("mirror_view_weight", "gain_depth_sigma_mm", "detail_sigma_mm", "detail_scale_mm"):
        if not (math.isfinite(getattr(phys, name)) and getattr(phys, name) >= 0):
            raise UserError(f"config physical.{name}: must be a number >= 0 (0: off)")
    if phys.detail_sigma_mm > 0 and phys.detail_scale_mm <= 0:
        raise UserError("config physical.detail_scale_mm: must be > 0 when detail_sigma_mm is on")
    # the far gain is a plain factor: it needs the input gain's plain profile
    for name, plain in (("detail_sigma_mm", 0), ("gain_depth_sigma_mm", 0), ("gain_depth_power", 1)):
        if phys.mirror_view_weight > 0 and getattr(phys, name) != plain:
            raise UserError(f"config physical.mirror_view_weight: needs {name} {plain} "
                            "(the far gain is a plain factor)")
    if phys.far_gain_grid < 0 or phys.far_gain_grid == 1:
        raise UserError("config physical.far_gain_grid: must be 0 (one per pixel) or at least 2")
    priors = (phys.pose_prior, *phys.pose_prior_candidates)
    if not all(math.isfinite(p) and p >= 0 for p in priors) or not phys.pose_prior_candidates:
        raise UserError("config physical: pose_prior and its candidates must be non-negative numbers")
    if phys.calibration_patients < 0:
        raise UserError("config physical.calibration_patients: must not be negative")
    if not all(0 <= v < 72 for v in phys.calibration_views):
        raise UserError("config physical.calibration_views: view indices must be in 0..71")


def parse_loss_weights(text: str | tuple[float, float]) -> tuple[float, float] | None:
    """'learned' -> None (uncertainty weighting); 'a,b' or (a, b) -> fixed (w_r, w_mse)."""
    if isinstance(text, tuple):
        weights = text
    elif text == "learned":
        return None
    else:
        try:
            weights = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise UserError(f"loss weights {text!r}: use 'learned' or two numbers 'w_r,w_mse'") from None
    if len(weights) != 2 or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise UserError(f"loss weights {text!r}: need two finite non-negative numbers w_r,w_mse")
    return (float(weights[0]), float(weights[1]))


def config_from_dict(data: dict) -> ModelConfig:
    cfg = _build(ModelConfig, data, "")
    _validate(cfg)
    return cfg


def config_to_dict(cfg: ModelConfig) -> dict:
    """Plain dict (lists, not tuples) that round-trips through YAML and checkpoints."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(cfg))


def with_settings(cfg: ModelConfig, assignments: Sequence[str]) -> ModelConfig:
    """A copy of cfg with each 'section.key=value' set, the value read as YAML and checked as a config file's
    values are (e.g. 'physical.far_gain_grid=16'); a bad assignment is a UserError naming it."""
    data = config_to_dict(cfg)
    for text in assignments:
        key, sep, raw = text.partition("=")
        *sections, name = key.strip().split(".")
        node = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or name not in node or isinstance(node[name], dict):
            raise UserError(f"setting {text!r}: use section.key=value with a key of the config "
                            "(e.g. physical.far_gain_grid=16)")
        try:
            node[name] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"setting {text!r}: the value is not readable YAML") from None
    return config_from_dict(data)


def load_config(path_or_name: str | Path) -> ModelConfig:
    """Load a YAML config by path, or by bare name of a bundled config (`cpu`, `knee.yaml`)."""
    path = Path(path_or_name)
    bundled = CONFIG_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    if not path.is_file() and path.parent == Path(".") and bundled.is_file():
        path = bundled
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    data, _ = read_yaml(path, f" (bundled configs: {names})")
    cfg = config_from_dict(data or {})
    if "name" not in (data or {}):
        cfg.name = path.stem
    return cfg
