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
from pathlib import Path
from typing import Any

import yaml

from pipeline import paths
from pipeline.schema import (
    AugmentParams,
    BiasFieldParams,
    BrainMaskParams,
    DemoParams,
    LesionParams,
    ModelParams,
    NormaliseParams,
    Params,
    RegistrationParams,
    ScoringParams,
    TrainParams,
)
from pipeline.scoretypes import KINDS, MODEL_KINDS

__all__ = [  # the schema classes are re-exported: `from pipeline.config import Params` works
    "AugmentParams", "BiasFieldParams", "BrainMaskParams", "ConfigError", "DemoParams",
    "LesionParams", "ModelParams", "NormaliseParams", "Params", "RegistrationParams",
    "ScoringParams", "TrainParams", "UsageError", "deep_merge", "flatten", "load_params",
    "load_raw", "params_from_dict", "to_dict", "with_legacy_defaults",
]


class UsageError(ValueError):
    """A bad command line or configuration: the CLI exits with status 2."""


class ConfigError(UsageError):
    """A parameter file that cannot be turned into valid parameters."""


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(hint, value, f"{key}.")
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


_CHOICES = {  # dotted key -> accepted values
    "model.norm": {"instance", "batch", "group", "none"},
    "model.latent": {"spatial", "dense"},
    "model.likelihood": {"gaussian", "gaussian_learned", "laplace"},
    "train.device": {"auto", "cpu", "cuda"},
    "train.lr_schedule": {"cosine", "constant"},
    "train.kl_schedule": {"linear", "cyclical", "constant"},
    "scoring.residual": {"abs", "squared"},
    "scoring.scan_statistic": {"top_voxels", "elbo"},
    "scoring.precision": {"auto", "fp32", "bf16", "fp16"},
    "report.convention": {"radiological", "neurological"},
}


def _get(p: Params, dotted: str) -> Any:
    value: Any = p
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _validate(p: Params) -> None:
    for key, allowed in _CHOICES.items():
        if _get(p, key) not in allowed:
            raise ConfigError(f"{key} must be one of {sorted(allowed)}, got {_get(p, key)!r}")
    m, t = p.model, p.train
    if len(m.strides) != len(m.channels) or any(s not in (1, 2) for s in m.strides):
        raise ConfigError(f"model.strides {m.strides} needs one stride (1 or 2) per entry of "
                          f"model.channels {m.channels}")
    depth = 2 ** sum(s == 2 for s in m.strides)
    if len(p.template.crop_shape) != 3 or any(s % depth for s in p.template.crop_shape):
        raise ConfigError(f"template.crop_shape must be 3 sizes divisible by {depth}")
    if m.recon_sigma <= 0 or m.min_sigma <= 0 or m.latent_channels < 1 or m.latent_dim < 1:
        raise ConfigError("model.recon_sigma, min_sigma, latent_channels, latent_dim must be > 0")
    if t.epochs < 1 or t.batch_size < 1 or t.checkpoint_every < 1 or t.iwae_every < 1:
        raise ConfigError("train.epochs, batch_size, checkpoint_every, iwae_every must be >= 1")
    if t.free_bits < 0 or t.iwae_samples < 0 or not 0 <= t.gpu_cache_fraction <= 1:
        raise ConfigError("train.free_bits, iwae_samples >= 0; gpu_cache_fraction in [0, 1]")
    if not 0 < p.calibrate.voxel_fpr < 1 or not 0 < p.calibrate.scan_fpr < 1:
        raise ConfigError("calibrate.voxel_fpr and scan_fpr must lie in (0, 1)")
    sc = p.scoring
    for key, names in (("scoring.score", sc.score), ("scoring.compare", sc.compare)):
        bad = [n for n in names if n not in KINDS]
        if bad or not names:
            raise ConfigError(f"{key} must list score types out of {sorted(KINDS)}, got {names}")
    if not any(n in MODEL_KINDS for n in sc.score) or not all(KINDS[n].normative
                                                              for n in sc.score):
        raise ConfigError(f"scoring.score combines calibrated (normative) score types, at least "
                          f"one of the model's {list(MODEL_KINDS)}; got {sc.score}")
    if sc.mc_samples < 0 or sc.restoration.steps < 0 or sc.median_filter_vox < 0:
        raise ConfigError("scoring.mc_samples, restoration.steps, median_filter_vox must be >= 0")
    if p.split.calibration_fraction + p.split.test_fraction >= 1:
        raise ConfigError("split fractions must leave scans for training")
    reg = p.prepare.registration
    if not (reg.outline_levels_mm and reg.anatomy_levels_mm
            and p.prepare.brain_mask.atlas_levels_mm):
        raise ConfigError("registration levels (outline, anatomy, atlas) must not be empty")
    if any(v <= 0 for v in [*reg.outline_levels_mm, *reg.anatomy_levels_mm,
                            *p.prepare.brain_mask.atlas_levels_mm]):
        raise ConfigError("registration levels must be positive spacings in mm")
    if p.prepare.bias_field.levels < 1 or p.prepare.bias_field.fit_spacing_mm <= 0:
        raise ConfigError("prepare.bias_field needs levels >= 1 and fit_spacing_mm > 0")
    r = p.report
    if (len(r.heat_range) != 2 or not 0 <= r.heat_range[0] < r.heat_range[1]
            or r.display_mm <= 0 or min(r.montage_slices, r.finding_views, r.max_findings,
                                        r.viewer_max_slices, r.gallery_max, r.max_cases) < 0):
        raise ConfigError("report: heat_range is [low, high] with 0 <= low < high, display_mm "
                          "> 0, counts >= 0")
    g = p.generative
    if (g.temperature < 0 or g.interpolation_steps < 2 or g.max_step_ratio < 1
            or g.impute.steps < 1 or g.impute.step_size <= 0 or g.iwae_samples < 1
            or g.iwae_batch < 1 or g.checks.nearest_candidates < 1 or g.checks.samples < 1
            or g.checks.impute_cube_mm <= 0 or min(g.checks.impute_scans,
                                                    g.checks.iwae_scans) < 0
            or not g.checks.iwae_k or min(g.checks.iwae_k) < 1
            or g.impute.ring_vox < 1 or g.impute.min_ring_voxels < 2
            or not 0 < g.impute.template_cover < 1 or g.checks.diversity_samples < 0
            or not 0 < g.checks.intensity_tolerance < 1
            or not 0 < g.checks.novelty_max_ssim <= 1 or g.checks.impute_min_gain >= 1):
        raise ConfigError("generative: temperature >= 0, interpolation_steps >= 2, "
                          "max_step_ratio >= 1, impute.steps >= 1 and step_size > 0, "
                          "iwae_samples/iwae_batch >= 1, checks: counts >= 0 (samples, "
                          "nearest_candidates >= 1), impute_cube_mm > 0, iwae_k >= 1, "
                          "impute.ring_vox >= 1, min_ring_voxels >= 2, template_cover and "
                          "intensity_tolerance in (0, 1), novelty_max_ssim in (0, 1], "
                          "impute_min_gain < 1")
    if p.cohort.image_pattern.count("*") != 1:
        raise ConfigError("cohort.image_pattern must contain exactly one '*' (the subject id)")


# Keys added after model folders of format 1 were written, with the values that reproduce
# how those models were built and trained, so older model folders stay loadable.
LEGACY_DEFAULTS: dict[str, Any] = {
    "model": {"residual_units": 0, "latent": "spatial", "latent_dim": 1,
              "likelihood": "gaussian", "min_sigma": 0.01},
    "train": {"lr_schedule": "cosine", "grad_clip_norm": 0.0, "kl_schedule": "linear",
              "kl_cycle_epochs": 1, "free_bits": 0.0, "early_stopping_patience": 0,
              "early_stopping_min_delta": 0.0, "iwae_samples": 0, "iwae_every": 1,
              "channels_last": False, "compile": False, "gpu_cache_fraction": 0.0,
              "augment": {"rotation_deg": 0.0, "translation_vox": 0.0, "scale": 0.0,
                          "intensity_shift": 0.0, "gamma": 0.0, "bias_field": 0.0}},
    "scoring": {"score": ["residual"], "compare": ["residual"], "residual": "abs",
                "mc_samples": 0, "grad_smoothing_sigma_vox": 1.0, "median_filter_vox": 0,
                "restoration": {"steps": 0, "step_size": 0.5, "consistency": 0.05},
                "scan_statistic": "top_voxels", "precision": "fp32"},
    "evaluate": {"autoencoder_baseline": False, "extra_cases": []},
    "report": {"convention": "radiological", "finding_views": 3, "max_findings": 20,
               "viewer_max_slices": 48, "display_mm": 1.0, "heat_range": [0.5, 2.5],
               "midline_mm": 4.0, "gallery_max": 48},
    "generative": {"temperature": 1.0, "interpolation_steps": 8, "max_step_ratio": 2.0,
                   "impute": {"steps": 10, "step_size": 1.0, "ring_vox": 3,
                              "min_ring_voxels": 20, "template_cover": 0.01}, "iwae_samples": 10,
                   "iwae_batch": 10, "checks": {
                       "samples": 16, "nearest_candidates": 5, "impute_scans": 8,
                       "impute_cube_mm": 20.0, "iwae_k": [1, 10, 100], "iwae_scans": 4,
                       "diversity_samples": 8,
                       "intensity_tolerance": 0.1, "novelty_max_ssim": 0.98,
                       "impute_min_gain": 0.3}},
}
_LEGACY_RENAMED = {"augment_flip": "flip", "augment_intensity": "intensity_scale"}


def with_legacy_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """Parameters stored by an older model folder, completed to the current schema."""
    data = deep_merge(LEGACY_DEFAULTS, data)
    train = dict(data["train"])
    for old, new in _LEGACY_RENAMED.items():
        if old in train:
            train["augment"] = {**train["augment"], new: train.pop(old)}
    data["train"] = train
    model = data["model"]
    if "strides" not in model:
        data["model"] = {**model, "strides": [2] * len(model.get("channels", []))}
    return data


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
