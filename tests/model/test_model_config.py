import pytest

from model.config import (CONFIG_DIR, config_from_dict, config_to_dict, load_config, parse_loss_weights,
                          with_settings)
from umed_common.errors import UserError


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_bundled_configs_load_and_round_trip(name):
    cfg = load_config(name)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_paper_configs_keep_upstream_values():
    cfg = load_config("knee")
    assert (cfg.train.batch_size, cfg.patch.size, cfg.render.n_samples, cfg.field.n_layers, cfg.field.width) == \
        (8, 32, 64, 8, 256)
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.ema_beta, cfg.perceptual) == (5e-4, 1e-4, 0.999, "vgg16")
    graf = load_config("graf")
    assert (graf.discriminator.kind, graf.discriminator.loss, graf.discriminator.r1_gamma) == \
        ("graf", "nonsaturating", 10.0)


@pytest.mark.parametrize("data, fragment", [
    ({"trian": {}}, "unknown key(s) trian"),
    ({"train": {"batch": 3}}, "train: unknown key(s) batch"),
    ({"render": {"renderer": "ray"}}, "render.renderer"),
    ({"train": {"batch_size": "8"}}, "train.batch_size"),
    ({"camera": {"radius": 10}}, "camera.radius"),
])
def test_mistakes_are_user_errors(data, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(data)


def test_missing_file_and_loss_weights(tmp_path):
    # (broken YAML: umed_common.yaml_files, tested in tests/test_common.py)
    with pytest.raises(UserError, match="x.yaml: no such config file \\(bundled configs: .*tiny"):
        load_config(tmp_path / "x.yaml")
    assert parse_loss_weights("learned") is None and parse_loss_weights("0.3,0.1") == (0.3, 0.1)
    with pytest.raises(UserError):
        parse_loss_weights("0.3")


@pytest.mark.parametrize("data, fragment", [
    ({"train": {"batch_size": -5}}, "train.batch_size: must be at least 1, got -5"),
    ({"train": {"batch_size": 0}}, "train.batch_size: must be at least 1"),
    ({"train": {"lr_g": float("nan")}}, "train.lr_g: must be a positive number"),
    ({"train": {"lr_d": -1e-4}}, "train.lr_d: must be a positive number"),
    ({"train": {"ema_beta": 1.5}}, "train.ema_beta: must be in [0, 1)"),
    ({"train": {"log_every": 0}}, "train.log_every: must be at least 1"),
    ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every: must be at least 1"),
    ({"train": {"sample_every": -1}}, "train.sample_every: must be 0 or more"),
    ({"train": {"lr_milestones": [-5]}}, "train.lr_milestones: must not be negative"),
    ({"patch": {"min_scale": 0.0}}, "patch.min_scale: must be in (0, 1]"),
    ({"patch": {"max_scale_min": float("inf")}}, "patch.max_scale_min: must be in (0, 1]"),
    ({"patch": {"scale_decay_every": 0}}, "patch.scale_decay_every: must be at least 1"),
    ({"render": {"n_samples": 0}}, "render.n_samples: must be at least 2"),
    ({"render": {"density_noise_std": float("nan")}}, "render.density_noise_std: must be a number >= 0"),
])
def test_impossible_train_patch_render_values_are_refused_at_load(data, fragment):
    with pytest.raises(UserError) as err:
        config_from_dict(data)
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["nan,nan", "nan,1", "inf,0.1", "0.3,-1"])
def test_non_finite_or_negative_loss_weights_are_refused(text):
    with pytest.raises(UserError, match="finite non-negative"):
        parse_loss_weights(text)


def test_yaml_with_negative_batch_size_fails_before_training(tmp_path):
    import subprocess
    import sys
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {batch_size: -5}\n")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "model.cli_train", "--config", str(bad), "--data", str(tmp_path),
                           "--out", str(out), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "train.batch_size: must be at least 1, got -5" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_fine_tuning_options_are_typed_and_checked_by_the_schema():
    from model.config import FINETUNE_OPTIONS, FinetuneConfig, with_finetune_options

    defaults = FinetuneConfig()
    assert set(FINETUNE_OPTIONS) <= set(vars(defaults))
    chosen = with_finetune_options(defaults, {"lr": 1, "max_iters": 7, "psnr_target": None})
    assert chosen.lr == 1.0 and isinstance(chosen.lr, float) and chosen.max_iters == 7
    assert chosen.psnr_target == defaults.psnr_target and defaults.max_iters != 7   # None keeps; no mutation
    for options, message in (({"max_iters": 2.5}, "config table1.max_iters: expected an integer"),
                             ({"z_candidates": 0}, "config table1.z_candidates: must be at least 1"),
                             ({"polar_deg": 80.0}, "unknown fine-tuning option")):
        with pytest.raises(UserError, match=message):
            with_finetune_options(defaults, options, "table1")
    with pytest.raises(UserError, match="^--view-step-deg: must be a non-zero number"):
        with_finetune_options(defaults, {"view_step_deg": 0.0}, "--")
    with pytest.raises(UserError, match="config finetune.lr: must be a positive number"):
        config_from_dict({"finetune": {"lr": -1.0}})


def test_settings_change_one_value_and_are_checked():
    cfg = load_config("chest_cpu")
    changed = with_settings(cfg, ["physical.far_gain_grid=0", "physical.calibration_views=[0]", "image_size=64"])
    assert (changed.physical.far_gain_grid, changed.physical.calibration_views, changed.image_size) == (0, (0,), 64)
    assert cfg.physical.far_gain_grid == 16 and cfg.image_size == 128         # the given config is untouched
    assert changed.physical.mirror_view_weight == cfg.physical.mirror_view_weight and changed.name == cfg.name
    assert with_settings(cfg, []) == cfg
    for bad, message in (("physical.far_gain_grid=1", "far_gain_grid"),        # validated as a file's value
                         ("physical.far_gain_grid=many", "expected an integer"),
                         ("physical.nothing=3", "physical.nothing=3"), ("physical=3", "physical=3"),
                         ("physical.far_gain_grid", "section.key=value"), ("physical.grid=[1", "YAML")):
        with pytest.raises(UserError, match=message):
            with_settings(cfg, [bad])
