"""Typed parameters: ``configs/params.yaml`` (plus its preset) validated into dataclasses.

Unknown keys, missing keys and wrong types are refused with the dotted key in the message,
so a typo in a YAML file never silently falls back to a default.

Example:
    >>> from pipeline.config import load_params
    >>> params = load_params()           # doctest: +SKIP
    >>> params.template.resolution_mm    # doctest: +SKIP
    2.0
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import paths


class UsageError(ValueError):
    """A bad command line or configuration: the CLI exits with status 2."""


class ConfigError(UsageError):
    """A parameter file that cannot be turned into valid parameters."""


@dataclass(frozen=True)
class CohortParams:
    name: str
    modality: str
    folder: str
    image_pattern: str
    mask_pattern: str
    max_subjects: int


@dataclass(frozen=True)
class DemoParams:
    n_subjects: int
    deformation_mm: float
    deformation_control_points: int
    rotation_deg: float
    translation_mm: float
    scale_range: list[float]
    spacing_mm_range: list[float]
    bias_field_strength: float
    noise_fraction: float
    gamma_range: list[float]


@dataclass(frozen=True)
class SplitParams:
    calibration_fraction: float
    test_fraction: float


@dataclass(frozen=True)
class LesionParams:
    per_scan: list[int]
    diameter_mm: list[float]
    hypo_fraction: float
    contrast_range: list[float]
    border_mm: float
    irregularity: float


@dataclass(frozen=True)
class TemplateParams:
    resolution_mm: float
    crop_shape: list[int]


@dataclass(frozen=True)
class RegistrationParams:
    outline_levels_mm: list[float]
    outline_iterations: int
    anatomy_levels_mm: list[float]
    anatomy_iterations: int
    histogram_bins: int
    sampling_fraction: float
    learning_rate: float
    min_step: float
    relaxation: float
    min_dice: float
    min_containment: float


@dataclass(frozen=True)
class BiasFieldParams:
    enabled: bool
    fit_spacing_mm: float
    levels: int
    iterations: int
    control_points: int
    convergence: float


@dataclass(frozen=True)
class BrainMaskParams:
    stripped_max_volume_ml: float
    atlas_spacing_mm: float
    atlas_margin_mm: float
    atlas_levels_mm: list[float]
    atlas_iterations: int
    atlas_min_scans: int
    atlas_probability: float
    skull_erosion_mm: float
    refine_dilation_mm: float


@dataclass(frozen=True)
class NormaliseParams:
    lower_percentile: float
    upper_percentile: float
    clip: list[float]


@dataclass(frozen=True)
class PrepareParams:
    workers: int
    cache: bool
    qc_thumbnail_scale: int
    bias_field: BiasFieldParams
    registration: RegistrationParams
    brain_mask: BrainMaskParams
    normalise: NormaliseParams


@dataclass(frozen=True)
class ModelParams:
    channels: list[int]
    latent_channels: int
    norm: str
    recon_sigma: float
    learn_mean_image: bool


@dataclass(frozen=True)
class TrainParams:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    beta: float
    kl_warmup_epochs: int
    device: str
    amp: bool
    checkpoint_every: int
    augment_flip: bool
    augment_intensity: float
    threads: int


@dataclass(frozen=True)
class ScoringParams:
    smoothing_sigma_vox: float
    std_smoothing_sigma_vox: float
    std_floor_fraction: float
    erode_brain_vox: int
    min_component_voxels: int
    scan_top_voxels: int


@dataclass(frozen=True)
class CalibrateParams:
    voxel_fpr: float
    scan_fpr: float


@dataclass(frozen=True)
class EvaluateParams:
    n_thresholds: int
    curve_points: int


@dataclass(frozen=True)
class MlflowParams:
    experiment: str
    registered_model: str


@dataclass(frozen=True)
class ReportParams:
    montage_slices: int
    max_cases: int


@dataclass(frozen=True)
class Params:
    preset: str
    seed: int
    cohort: CohortParams
    demo: DemoParams
    split: SplitParams
    lesions: LesionParams
    template: TemplateParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    scoring: ScoringParams
    calibrate: CalibrateParams
    evaluate: EvaluateParams
    mlflow: MlflowParams
    report: ReportParams
    root: Path = field(default=Path("."), compare=False)

    def cohort_folder(self) -> Path:
        return paths.resolve(self.cohort.folder, self.root)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(hint, value, key)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: union types are not supported in params")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: Any, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "root"}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(f'{prefix}{k}' for k in unknown)}")
    missing = names - set(data)
    if missing:
        raise ConfigError(f"missing key(s) {sorted(f'{prefix}{k}' for k in missing)}")
    kwargs = {n: _coerce(data[n], hints[n], f"{prefix}{n}") for n in names}
    return cls(**kwargs)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in, recursing into mappings."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(p: Params) -> None:
    depth = 2 ** len(p.model.channels)
    if len(p.template.crop_shape) != 3 or any(s % depth for s in p.template.crop_shape):
        raise ConfigError(f"template.crop_shape must be 3 sizes divisible by {depth}")
    if not 0 < p.calibrate.voxel_fpr < 1 or not 0 < p.calibrate.scan_fpr < 1:
        raise ConfigError("calibrate.voxel_fpr and scan_fpr must lie in (0, 1)")
    if p.split.calibration_fraction + p.split.test_fraction >= 1:
        raise ConfigError("split fractions must leave scans for training")
    if p.model.norm not in {"instance", "batch", "group", "none"}:
        raise ConfigError("model.norm must be instance, batch, group or none")
    if p.train.device not in {"auto", "cpu", "cuda"}:
        raise ConfigError("train.device must be auto, cpu or cuda")
    reg = p.prepare.registration
    if not (reg.outline_levels_mm and reg.anatomy_levels_mm
            and p.prepare.brain_mask.atlas_levels_mm):
        raise ConfigError("registration levels (outline, anatomy, atlas) must not be empty")
    if any(v <= 0 for v in [*reg.outline_levels_mm, *reg.anatomy_levels_mm,
                            *p.prepare.brain_mask.atlas_levels_mm]):
        raise ConfigError("registration levels must be positive spacings in mm")
    if p.prepare.bias_field.levels < 1 or p.prepare.bias_field.fit_spacing_mm <= 0:
        raise ConfigError("prepare.bias_field needs levels >= 1 and fit_spacing_mm > 0")
    if p.cohort.image_pattern.count("*") != 1:
        raise ConfigError("cohort.image_pattern must contain exactly one '*' (the subject id)")


def params_from_dict(data: dict[str, Any], root: Path | None = None) -> Params:
    """Validate a parameter mapping (already merged with its preset)."""
    params: Params = _build(Params, data)
    params = dataclasses.replace(params, root=root or paths.project_root())
    _validate(params)
    return params


def load_raw(path: Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` and merge its preset file over it."""
    path = path or paths.params_file()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read parameters ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    preset = data.get("preset", "demo")
    preset_file = path.parent / "presets" / f"{preset}.yaml"
    if not preset_file.is_file():
        raise ConfigError(f"{path}: preset {preset!r} has no file {preset_file}")
    overrides = yaml.safe_load(preset_file.read_text()) or {}
    return deep_merge(data, overrides)


def load_params(path: Path | None = None) -> Params:
    """Load, merge and validate the project's parameters."""
    path = path or paths.params_file()
    return params_from_dict(load_raw(path), root=path.resolve().parent.parent)


def to_dict(params: Params) -> dict[str, Any]:
    """Plain mapping of ``params`` (without the root), e.g. for MLflow or a model folder."""
    data = dataclasses.asdict(params)
    data.pop("root", None)
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys (MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
