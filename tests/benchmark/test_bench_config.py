import pytest
import yaml

from benchmark.config import QUICK_FINETUNE_ITERS, apply_quick, load_config, parse_config
from umed_common.errors import UserError

BASE = {"datasets": {"knee": {"data_dir": "data/knee", "checkpoint": "runs/knee/model.pt",
                              "eval_patients": [4, "05"], "input_views": [0, 18]}},
        "table1": {"datasets": ["knee"], "methods": {"MedNeRF": [0.3, 0.1], "UMedNeRF": "learned"},
                   "max_iters": 500},
        "table3": {"datasets": "knee", "methods": {"learned": "learned", "0.6/0.4": [0.6, 0.4]}}}


def with_change(path, value):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


def test_parses_patients_views_and_weights():
    config = parse_config(BASE)
    knee = config.datasets["knee"]
    assert knee.eval_patients == ("04", "05") and knee.input_views == (0, 18)
    assert config.table1.methods == {"MedNeRF": (0.3, 0.1), "UMedNeRF": "learned"}
    assert config.table3.datasets == ("knee",) and config.table2 is None


def test_fine_tuning_overrides():
    config = parse_config(with_change(("table1", "lr"), 1e-4))
    assert config.table1.finetune == {"max_iters": 500, "lr": 1e-4} and config.table3.finetune == {}
    assert parse_config(with_change(("table1", "view_step_deg"), -5)).table1.finetune["view_step_deg"] == -5.0
    assert parse_config(with_change(("table1", "render_size"), 64)).table1.finetune["render_size"] == 64
    assert "psnr_target" not in parse_config(with_change(("table1", "psnr_target"), None)).table1.finetune


@pytest.mark.parametrize("path,value,message", [
    (("tabel1",), {}, "unknown key(s) tabel1"),
    (("datasets", "knee", "eval_patient"), [1], "datasets.knee: unknown key(s) eval_patient"),
    (("table1", "max_iter"), 3, "table1: unknown key(s) max_iter"),
    (("table1", "methods", "MedNeRF"), [0.3], "loss weights must be"),
    (("table1", "datasets"), ["chest"], "dataset 'chest' is not defined"),
    (("table1", "max_iters"), "many", "table1.max_iters: expected an integer"),
    (("table1", "max_iters"), 0, "table1.max_iters: must be at least 1"),
    (("datasets", "knee", "input_views"), 0, "must be lists"),
    (("table1", "lr"), -1e-4, "table1.lr: must be a positive number"),
    (("table1", "view_step_deg"), 0, "table1.view_step_deg: must be a non-zero number"),
    (("table1", "render_size"), -1, "table1.render_size: must be 0 (the image size) or more"),
    (("table3", "z_candidates"), 0, "table3.z_candidates: must be at least 1"),
    (("table3", "dataset"), "knee", "table3: unknown key(s) dataset"),
])
def test_mistakes_are_one_line_user_errors(path, value, message):
    with pytest.raises(UserError) as caught:
        parse_config(with_change(path, value))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_load_config_reads_through_the_one_yaml_reader(tmp_path):
    # (missing and broken files: umed_common.yaml_files, tested in tests/test_common.py)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    config, text = load_config(good)
    assert text == good.read_text() and "knee" in config.datasets


def test_quick_preset_keeps_one_case_and_few_iterations():
    quick = apply_quick(parse_config(BASE))
    assert quick.datasets["knee"].eval_patients == ("04",) and quick.datasets["knee"].input_views == (0,)
    assert quick.table1.finetune["max_iters"] == QUICK_FINETUNE_ITERS
    assert quick.table3.finetune["max_iters"] == QUICK_FINETUNE_ITERS


@pytest.mark.parametrize("name", ["knee_cpu.yaml", "knee_cpu_xray.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    from pathlib import Path

    config, _ = load_config(Path(__file__).resolve().parents[2] / "benchmark" / "configs" / name)
    assert "knee" in config.datasets and config.table1 is not None and config.table3 is not None


def test_methods_filter_keeps_named_methods_only():
    import pytest
    from benchmark.config import parse_config, select_methods
    from umed_common.errors import UserError
    config = parse_config({"datasets": {"knee": {"data_dir": "d", "checkpoint": "c.pt"}},
                           "table1": {"datasets": ["knee"], "methods": {"a": "learned", "b": [0.3, 0.1]}}})
    assert list(select_methods(config, 1, ["b"]).table1.methods) == ["b"]
    with pytest.raises(UserError, match="not in table1.methods"):
        select_methods(config, 1, ["c"])
    with pytest.raises(UserError, match="tables 1 and 3"):
        select_methods(config, 2, ["a"])


def test_rendered_methods_name_folder_templates():
    from benchmark.config import select_methods
    raw = with_change(("table1", "rendered"), {"pixelNeRF": {"knee": "out/pixelnerf/{patient}_v{view}"}})
    config = parse_config(raw)
    assert config.table1.rendered == {"pixelNeRF": {"knee": "out/pixelnerf/{patient}_v{view}"}}
    assert config.table1.method_names() == ["MedNeRF", "UMedNeRF", "pixelNeRF"]
    chosen = select_methods(config, 1, ["pixelNeRF"]).table1
    assert chosen.methods == {} and list(chosen.rendered) == ["pixelNeRF"]
    only_rendered = with_change(("table1", "methods"), None)
    only_rendered["table1"]["rendered"] = {"GRAF": {"knee": "graf/{patient}"}}
    assert parse_config(only_rendered).table1.methods == {}


@pytest.mark.parametrize("rendered,methods,message", [
    ({"x": {"knee": "out/{case}"}}, None, "may use {patient} and {view} only"),
    ({"x": {"knee": "out/{patient"}}, None, "is not a valid folder template"),
    ({"x": {"chest": "out/{patient}"}}, None, "table1.rendered.x: unknown key(s) chest"),
    ({"UMedNeRF": {"knee": "out"}}, {"UMedNeRF": "learned"}, "UMedNeRF under both methods and rendered"),
    ({}, {}, "name at least one method"),
])
def test_rendered_mistakes_are_user_errors(rendered, methods, message):
    raw = with_change(("table1", "rendered"), rendered)
    raw["table1"]["methods"] = methods
    with pytest.raises(UserError) as caught:
        parse_config(raw)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_readme_rendered_example_parses():
    # the README's `rendered:` example, read as a user would paste it under a config with a knee dataset
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```yaml\n(table1:\n(?:.*\n)*?)```", readme).group(1)
    assert "rendered:" in block
    raw = yaml.safe_load(block)
    raw["datasets"] = {"knee": {"data_dir": "d", "checkpoint": "c.pt"}}
    config = parse_config(raw)
    assert config.table1.rendered == {"pixelNeRF": {"knee": "runs/pixelnerf/{patient}_view{view}"}}
