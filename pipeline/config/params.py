"""Typed parameters: ``configs/params.yaml`` and its preset, validated into dataclasses.

Unknown keys, missing keys and wrong types are refused with the dotted key in the message,
so a typo in a YAML file never silently falls back to a default.

Precedence (:func:`load_raw`): ``params.yaml``'s ``preset`` chooses
``configs/presets/<preset>.yaml``; the preset's keys fill in the ones ``params.yaml`` leaves
out; a key that ``params.yaml`` itself holds wins over the preset's (one INFO line names it,
the value used and the preset value replaced: what ``dvc exp run -S
'configs/params.yaml:++train.epochs=100'`` does). Every preset must set the same keys: a key
only some presets set is refused, naming the key and where to set it, since a value the
active preset alone holds could be shadowed by ``params.yaml``'s without anyone noticing.

Example:
    >>> import pathlib, tempfile
    >>> configs = pathlib.Path(tempfile.mkdtemp()) / "configs"
    >>> (configs / "presets").mkdir(parents=True)
    >>> _ = (configs / "presets" / "small.yaml").write_text("train: {epochs: 40, batch_size: 4}")
    >>> _ = (configs / "params.yaml").write_text("{preset: small, train: {epochs: 100}}")
    >>> load_raw(configs / "params.yaml")["train"]   # params.yaml's key wins over the preset's
    {'epochs': 100, 'batch_size': 4}
    >>> load_params(configs / "params.yaml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pipeline.config.params.ConfigError: missing key(s) ['calibrate', 'cohort', ...]
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import paths
from pipeline.config.schema import ModelConfig, Params
from pipeline.config.validate import problems
from pipeline.io.errors import UsageError

log = logging.getLogger(__name__)


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


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Validate the parameter sections a model folder stores (strictly: every key of
    :class:`~pipeline.config.schema.ModelConfig`, nothing else)."""
    config: ModelConfig = _build(ModelConfig, data)
    found = problems(config)
    if found:
        raise ConfigError("; ".join(found))
    return config


def params_from_dict(data: dict[str, Any], root: Path | None = None) -> Params:
    """Validate a parameter mapping (``params.yaml`` with its preset filled in)."""
    params: Params = _build(Params, data)
    params = dataclasses.replace(params, root=root or paths.project_root())
    found = problems(params)
    if found:
        raise ConfigError("; ".join(found))
    return params


def _read_mapping(path: Path, empty: bool = False) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read parameters ({exc})") from exc
    if data is None and empty:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _where(key: str, own_keys: set[str]) -> str:
    """The ``dvc exp run`` option that sets ``key`` in ``params.yaml`` (``++`` adds a key
    the file does not hold yet; DVC refuses a plain ``key=value`` for one)."""
    return f"-S configs/params.yaml:{key}=..." if key in own_keys else \
        f"-S 'configs/params.yaml:++{key}=...'"


def check_presets(active: Path, presets: dict[Path, dict[str, Any]],
                  own: dict[str, Any]) -> None:
    """Refuse presets that do not all set the same keys, or that choose the preset."""
    keys, own_keys = set(flatten(presets[active])), set(flatten(own))
    if "preset" in keys:
        raise ConfigError(f"{active}: a preset cannot set `preset`; configs/params.yaml "
                          f"chooses it")
    for other in sorted(presets, key=str):
        other_keys = set(flatten(presets[other]))
        extra = sorted(keys - other_keys)
        if extra:
            shadow = [k for k in extra if k in own_keys]
            note = f" (configs/params.yaml holds {shadow} too, and its value wins)" \
                if shadow else ""
            raise ConfigError(
                f"{active}: sets {extra}, which {other} does not set{note}; every preset "
                f"sets the same keys. Set {extra[0]} in configs/params.yaml instead "
                f"(dvc exp run {_where(extra[0], own_keys)}), where it wins over any preset")
        lacking = sorted(other_keys - keys)
        if lacking:
            raise ConfigError(
                f"{active}: does not set {lacking}, which {other} sets; every preset sets "
                f"the same keys (add them here, or move them to configs/params.yaml)")


def load_raw(path: Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` and fill in its preset's keys; ``params.yaml``'s own keys win
    (each one that replaces a preset value is logged)."""
    path = path or paths.params_file()
    own = _read_mapping(path)
    return _with_preset(own, str(own.get("preset", "demo")), path)


def with_preset(preset: str, path: Path | None = None) -> dict[str, Any]:
    """:func:`load_raw` as it would read with ``preset`` chosen in ``params.yaml``."""
    path = path or paths.params_file()
    return _with_preset({**_read_mapping(path), "preset": preset}, preset, path)


def _with_preset(own: dict[str, Any], preset: str, path: Path) -> dict[str, Any]:
    folder = path.parent / "presets"
    preset_file = folder / f"{preset}.yaml"
    if not preset_file.is_file():
        raise ConfigError(f"{path}: preset {preset!r} has no file {preset_file}")
    presets = {p: _read_mapping(p, empty=True) for p in folder.glob("*.yaml")}
    check_presets(preset_file, presets, own)
    chosen = presets[preset_file]
    ours, theirs = flatten(own), flatten(chosen)
    for key in sorted(ours.keys() & theirs.keys()):
        log.info("%s = %r from %s/%s replaces the preset %s's %r", key, ours[key],
                 path.parent.name, path.name, preset, theirs[key])
    return deep_merge(chosen, own)


def load_params(path: Path | None = None) -> Params:
    """Load, merge (:func:`load_raw`) and validate the project's parameters."""
    path = path or paths.params_file()
    return params_from_dict(load_raw(path), root=path.resolve().parent.parent)


def to_dict(params: Params | ModelConfig) -> dict[str, Any]:
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
