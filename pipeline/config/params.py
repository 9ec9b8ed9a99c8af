"""Typed parameters: ``configs/params.yaml`` (plus its preset) validated into dataclasses.

Unknown keys, missing keys and wrong types are refused with the dotted key in the message,
so a typo in a YAML file never silently falls back to a default.

Example:
    >>> params = load_params()        # the project's configs/params.yaml and its preset
    >>> params.template.crop_shape == load_raw()["template"]["crop_shape"]
    True
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.config.validate import problems
from pipeline.io.errors import UsageError


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


def params_from_dict(data: dict[str, Any], root: Path | None = None) -> Params:
    """Validate a parameter mapping (already merged with its preset)."""
    params: Params = _build(Params, data)
    params = dataclasses.replace(params, root=root or paths.project_root())
    found = problems(params)
    if found:
        raise ConfigError("; ".join(found))
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
