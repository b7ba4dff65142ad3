import pytest

from model.config import CONFIG_DIR, config_from_dict, config_to_dict, load_config, parse_loss_weights
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
    with pytest.raises(UserError, match="no such config"):
        load_config(tmp_path / "x.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    assert parse_loss_weights("learned") is None and parse_loss_weights("0.3,0.1") == (0.3, 0.1)
    with pytest.raises(UserError):
        parse_loss_weights("0.3")
