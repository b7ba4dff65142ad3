"""The benchmark's one input file: a YAML naming checkpoints, data, patients, views and methods.

Relative paths are taken from the current working directory ($VARS and ~ are
expanded). Every key is checked: an unknown or misspelt key is a UserError, not
a silently ignored setting. `apply_quick` turns any config into the small CPU
preset that `--quick` runs.
"""
from __future__ import annotations

import dataclasses
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.config import FINETUNE_OPTIONS, FinetuneConfig, with_finetune_options
from umed_common.errors import UserError
from umed_common.yaml_files import read_yaml

LossWeights = str | tuple[float, float]  # "learned" or (w_r, w_mse)

# --quick: one patient, one input view, a few fine-tuning steps, few samples.
QUICK_FINETUNE_ITERS = 10
QUICK_SAMPLES = 64
QUICK_REPEATS = 10


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    data_dir: Path
    checkpoint: Path | None = None
    eval_patients: tuple[str, ...] = ()
    # methods fine-tuned from another checkpoint than `checkpoint` (e.g. the paper-faithful GAN beside the
    # physical model in one table): method name -> checkpoint file or training folder
    method_checkpoints: dict[str, Path] = field(default_factory=dict)
    input_views: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class SingleViewSpec:
    """Tables 1 and 3: fine-tune on one view per (patient, input view) and score 72 views."""

    datasets: tuple[str, ...]
    methods: dict[str, LossWeights]
    baselines: bool = True
    conventions: tuple[str, ...] = ("paper",)
    # fine-tuning options (model.config.FINETUNE_OPTIONS: max_iters, psnr_target, lr, ...) set in the table;
    # the others keep the checkpoint config's values
    finetune: dict[str, Any] = field(default_factory=dict)
    # methods scored from renders made elsewhere (another tool, or umed-finetune run before): method name ->
    # dataset name -> folder template with {patient} and {view} (the input view), each folder holding the 72
    # views as umed-finetune's OUT/views does (xray0000.png ... xray0071.png, file k = view k)
    rendered: dict[str, dict[str, str]] = field(default_factory=dict)

    def method_names(self) -> list[str]:
        return [*self.methods, *self.rendered]


@dataclass(frozen=True)
class GenerativeSpec:
    """Table 2: FID/KID of method folders (and samples of our checkpoints) against real DRRs."""

    datasets: tuple[str, ...]
    methods: dict[str, dict[str, Path]] = field(default_factory=dict)
    ours: str | None = "UMedNeRF"
    samples: int = 1000
    kid_subset_size: int = 1000
    repeats: int = 100  # KID subsets
    fid_repeats: int = 10  # FID subsets (each costs an SVD, so fewer)


@dataclass(frozen=True)
class BenchConfig:
    datasets: dict[str, DatasetSpec]
    table1: SingleViewSpec | None = None
    table2: GenerativeSpec | None = None
    table3: SingleViewSpec | None = None
    seed: int = 0
    device: str = "auto"
    inception_weights: Path | None = None
    feature_cache_dir: Path | None = None


def _path(value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise UserError(f"config {where}: expected a path string, got {value!r}")
    return Path(os.path.expandvars(value)).expanduser()


def _mapping(value: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"config {where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(map(str, value)) - allowed)
    if unknown:
        raise UserError(f"config {where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise UserError(f"config {where}: missing key(s) {', '.join(missing)}")
    return value


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"config {where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _loss_weights(value: Any, where: str) -> LossWeights:
    if value == "learned":
        return "learned"
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)):
        return (float(value[0]), float(value[1]))
    raise UserError(f"config {where}: loss weights must be 'learned' or [w_r, w_mse], got {value!r}")


def _dataset(name: str, raw: Any) -> DatasetSpec:
    where = f"datasets.{name}"
    raw = _mapping(raw, where, {"data_dir", "checkpoint", "eval_patients", "input_views", "method_checkpoints"},
                   {"data_dir"})
    extra = _mapping(raw.get("method_checkpoints") or {}, f"{where}.method_checkpoints",
                     set(map(str, raw.get("method_checkpoints") or {})))
    patients = raw.get("eval_patients", [])
    views = raw.get("input_views", [0])
    if not isinstance(patients, list) or not isinstance(views, list):
        raise UserError(f"config {where}: eval_patients and input_views must be lists")
    return DatasetSpec(
        name=name, data_dir=_path(raw["data_dir"], f"{where}.data_dir"),
        checkpoint=_path(raw["checkpoint"], f"{where}.checkpoint") if raw.get("checkpoint") else None,
        eval_patients=tuple(f"{p:02d}" if isinstance(p, int) else str(p) for p in patients),
        input_views=tuple(_int(v, f"{where}.input_views") for v in views),
        method_checkpoints={str(k): _path(v, f"{where}.method_checkpoints.{k}") for k, v in extra.items()})


def _dataset_names(value: Any, where: str, datasets: dict[str, DatasetSpec]) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise UserError(f"config {where}: expected a dataset name or a non-empty list of them")
    for name in names:
        if name not in datasets:
            raise UserError(f"config {where}: dataset {name!r} is not defined under datasets:")
    return tuple(names)


def _finetune_options(raw: dict, where: str) -> dict[str, Any]:
    """The table's fine-tuning options, typed and checked by the model's config schema."""
    given = {name: raw[name] for name in FINETUNE_OPTIONS if raw.get(name) is not None}
    checked = with_finetune_options(FinetuneConfig(), given, where)
    return {name: getattr(checked, name) for name in given}


def _folder_template(value: Any, where: str) -> str:
    """A folder path with the fields {patient} and {view} only ($VARS and ~ expanded)."""
    if not isinstance(value, str) or not value:
        raise UserError(f"config {where}: expected a folder path string, got {value!r}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as error:
        raise UserError(f"config {where}: {value!r} is not a valid folder template ({error})") from None
    unknown = sorted(fields - {"patient", "view"})
    if unknown:
        raise UserError(f"config {where}: {value!r} uses {', '.join(unknown)}; "
                        "a folder template may use {patient} and {view} only")
    return os.path.expandvars(os.path.expanduser(value))


def _rendered(raw: Any, where: str, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    methods = _mapping(raw, where, set(map(str, raw or {})))
    return {str(method): {str(d): _folder_template(t, f"{where}.{method}.{d}")
                          for d, t in _mapping(folders, f"{where}.{method}", set(names)).items()}
            for method, folders in methods.items()}


def _single_view(raw: Any, where: str, datasets: dict[str, DatasetSpec]) -> SingleViewSpec:
    raw = _mapping(raw, where, {"datasets", "methods", "rendered", "baselines", "conventions", *FINETUNE_OPTIONS},
                   {"datasets"})
    methods = _mapping(raw.get("methods") or {}, f"{where}.methods", set(map(str, raw.get("methods") or {})))
    names = _dataset_names(raw["datasets"], f"{where}.datasets", datasets)
    rendered = _rendered(raw.get("rendered") or {}, f"{where}.rendered", names)
    if not methods and not rendered:
        raise UserError(f"config {where}: name at least one method (methods: to fine-tune, rendered: to score "
                        "renders made elsewhere)")
    twice = sorted(set(map(str, methods)) & set(rendered))
    if twice:
        raise UserError(f"config {where}: {', '.join(twice)} under both methods and rendered")
    conventions = tuple(raw.get("conventions", ["paper"]))
    if not conventions or set(conventions) - {"paper", "mednerf"}:
        raise UserError(f"config {where}.conventions: choose from paper, mednerf, got {list(conventions)}")
    return SingleViewSpec(
        datasets=names,
        methods={str(k): _loss_weights(v, f"{where}.methods.{k}") for k, v in methods.items()},
        baselines=bool(raw.get("baselines", True)), conventions=conventions,
        finetune=_finetune_options(raw, where), rendered=rendered)


def _generative(raw: Any, datasets: dict[str, DatasetSpec]) -> GenerativeSpec:
    raw = _mapping(raw, "table2", {"datasets", "methods", "ours", "samples", "kid_subset_size", "repeats",
                                     "fid_repeats"},
                   {"datasets"})
    names = _dataset_names(raw["datasets"], "table2.datasets", datasets)
    methods = {}
    for method, folders in (raw.get("methods") or {}).items():
        folders = _mapping(folders, f"table2.methods.{method}", set(names))
        methods[str(method)] = {d: _path(p, f"table2.methods.{method}.{d}") for d, p in folders.items()}
    ours = raw.get("ours", "UMedNeRF")
    if ours is not None and not isinstance(ours, str):
        raise UserError(f"config table2.ours: expected a method name or null, got {ours!r}")
    return GenerativeSpec(names, methods, ours, _int(raw.get("samples", 1000), "table2.samples", 2),
                          _int(raw.get("kid_subset_size", 1000), "table2.kid_subset_size", 2),
                          _int(raw.get("repeats", 100), "table2.repeats", 1),
                          _int(raw.get("fid_repeats", 10), "table2.fid_repeats", 1))


def parse_config(raw: Any) -> BenchConfig:
    """Validate a loaded YAML document into a BenchConfig (UserError on any mistake)."""
    raw = _mapping(raw, "(top level)", {"datasets", "table1", "table2", "table3", "seed", "device",
                                        "inception_weights", "feature_cache_dir"}, {"datasets"})
    datasets = {str(n): _dataset(str(n), spec) for n, spec in _mapping(
        raw["datasets"], "datasets", set(map(str, raw["datasets"] or {}))).items()}
    return BenchConfig(
        datasets=datasets,
        table1=_single_view(raw["table1"], "table1", datasets) if raw.get("table1") else None,
        table2=_generative(raw["table2"], datasets) if raw.get("table2") else None,
        table3=_single_view(raw["table3"], "table3", datasets) if raw.get("table3") else None,
        seed=_int(raw.get("seed", 0), "seed"), device=str(raw.get("device", "auto")),
        inception_weights=_path(raw["inception_weights"], "inception_weights") if raw.get("inception_weights") else None,
        feature_cache_dir=_path(raw["feature_cache_dir"], "feature_cache_dir") if raw.get("feature_cache_dir") else None)


def load_config(path: str | Path) -> tuple[BenchConfig, str]:
    """Read and validate the YAML file; returns the config and the file's exact text."""
    raw, text = read_yaml(path)
    return parse_config(raw), text


def apply_quick(config: BenchConfig) -> BenchConfig:
    """The --quick preset: first eval patient and input view, few iterations, few samples."""
    datasets = {n: dataclasses.replace(d, eval_patients=d.eval_patients[:1], input_views=d.input_views[:1])
                for n, d in config.datasets.items()}

    def quick_single(spec: SingleViewSpec | None) -> SingleViewSpec | None:
        if spec is None:
            return None
        iters = min(spec.finetune.get("max_iters", QUICK_FINETUNE_ITERS), QUICK_FINETUNE_ITERS)
        return dataclasses.replace(spec, finetune={**spec.finetune, "max_iters": iters})

    table2 = config.table2 and dataclasses.replace(
        config.table2, samples=min(config.table2.samples, QUICK_SAMPLES),
        repeats=min(config.table2.repeats, QUICK_REPEATS),
        fid_repeats=min(config.table2.fid_repeats, QUICK_REPEATS))
    return dataclasses.replace(config, datasets=datasets, table1=quick_single(config.table1),
                               table2=table2, table3=quick_single(config.table3))


def select_methods(config: BenchConfig, table: int, names: list[str]) -> BenchConfig:
    """Keep only the named methods of table 1 or 3 (their baselines still run); unknown names are an error."""
    name = f"table{table}"
    spec = getattr(config, name)
    if table == 2 or spec is None:
        raise UserError(f"--methods: applies to tables 1 and 3 with a {name}: section")
    unknown = sorted(set(names) - set(spec.method_names()))
    if unknown:
        raise UserError(f"--methods {' '.join(unknown)}: not in {name}.methods or .rendered "
                        f"({', '.join(spec.method_names())})")
    chosen = dataclasses.replace(spec, methods={k: v for k, v in spec.methods.items() if k in names},
                                 rendered={k: v for k, v in spec.rendered.items() if k in names})
    return dataclasses.replace(config, **{name: chosen})


def config_as_dict(config: BenchConfig) -> dict:
    """A YAML/JSON-ready view of the effective config (paths as strings)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value
    return plain(config)
