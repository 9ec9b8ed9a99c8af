"""Parameters and presets: every key that runs is tracked in the file that sets it.

configs/params.yaml chooses the preset; the preset fills in its keys; a key that
configs/params.yaml holds wins (logged); presets that do not all set the same keys are
refused. What DVC makes of them: tests/integration/test_presets_dvc.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, with_preset

from pipeline.config.params import ConfigError, flatten, load_params, load_raw

CONFIGS = REPO / "configs"


def _configs(root: Path, params: dict[str, Any], presets: dict[str, dict[str, Any]]) -> Path:
    (root / "configs" / "presets").mkdir(parents=True)
    for name, data in presets.items():
        (root / "configs" / "presets" / f"{name}.yaml").write_text(yaml.safe_dump(data))
    path = root / "configs" / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


TWO_PRESETS = {"a": {"train": {"epochs": 40, "denoise": {"std": 0.2}}},
               "b": {"train": {"epochs": 10, "denoise": {"std": 0.0}}}}


def test_the_preset_fills_in_the_keys_params_yaml_leaves_out(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    path = _configs(tmp_path, {"preset": "b", "train": {"device": "auto"}}, TWO_PRESETS)
    with caplog.at_level(logging.INFO, logger="pipeline.config.params"):
        raw = load_raw(path)
    assert raw == {"preset": "b", "train": {"device": "auto", "epochs": 10,
                                            "denoise": {"std": 0.0}}}
    assert not caplog.records  # nothing replaced, nothing logged


def test_a_params_yaml_key_wins_over_the_preset_and_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # what `dvc exp run -S 'configs/params.yaml:++train.epochs=100'` leaves in params.yaml
    params = {"preset": "a", "train": {"device": "auto", "epochs": 100}}
    path = _configs(tmp_path, params, TWO_PRESETS)
    with caplog.at_level(logging.INFO, logger="pipeline.config.params"):
        raw = load_raw(path)
    assert raw["train"] == {"device": "auto", "epochs": 100, "denoise": {"std": 0.2}}
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # one line, for that key
    line = caplog.records[0].getMessage()
    assert "train.epochs" in line and "100" in line and "40" in line
    assert "configs/params.yaml" in line and "preset a" in line


def test_a_key_only_the_active_preset_sets_is_refused_and_says_where_to_set_it(
        tmp_path: Path) -> None:
    # `-S configs/presets/a.yaml:++train.device=cuda` for a key params.yaml holds: shadowed
    presets = {"a": {"train": {"epochs": 40, "device": "cuda"}}, "b": {"train": {"epochs": 10}}}
    path = _configs(tmp_path, {"preset": "a", "train": {"device": "auto"}}, presets)
    with pytest.raises(ConfigError, match=r"train\.device") as err:
        load_raw(path)
    assert "-S configs/params.yaml:train.device=..." in str(err.value)
    assert "holds ['train.device'] too" in str(err.value)
    # a key params.yaml does not hold: DVC adds it with `++`
    path = _configs(tmp_path / "other", {"preset": "a"}, presets)
    with pytest.raises(ConfigError, match=r"configs/params\.yaml:\+\+train\.device=\.\.\."):
        load_raw(path)


def test_presets_that_set_different_keys_are_refused(tmp_path: Path) -> None:
    presets = {"a": {"train": {"epochs": 40}}, "b": {"train": {"epochs": 10, "iwae_every": 5}}}
    path = _configs(tmp_path, {"preset": "a"}, presets)
    with pytest.raises(ConfigError, match=r"does not set \['train\.iwae_every'\].*b\.yaml"):
        load_raw(path)
    nested = {"a": {"train": {"site": 0.3}}, "b": {"train": {"site": {"probability": 0.3}}}}
    with pytest.raises(ConfigError, match=r"train\.site"):
        load_raw(_configs(tmp_path / "nested", {"preset": "b"}, nested))


def test_unknown_or_self_choosing_presets_are_refused(tmp_path: Path) -> None:
    path = _configs(tmp_path, {"preset": "nowhere"}, TWO_PRESETS)
    with pytest.raises(ConfigError, match=r"preset 'nowhere' has no file"):
        load_raw(path)
    presets = {"a": {"preset": "b"}, "b": {"preset": "a"}}
    with pytest.raises(ConfigError, match="cannot set `preset`"):
        load_raw(_configs(tmp_path / "self", {"preset": "a"}, presets))


def _repo_presets() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(CONFIGS.glob("presets/*.yaml"))}


def test_each_key_of_the_repo_has_one_home() -> None:
    """Every preset sets the same keys; params.yaml holds none of them but keeps every
    section a preset sets (as {} when the preset sets all of it) for DVC to track."""
    presets = _repo_presets()
    assert set(presets) >= {"demo", "ixi"}
    keys = {name: set(flatten(data)) for name, data in presets.items()}
    assert all(k == keys["demo"] for k in keys.values()), keys
    own = yaml.safe_load((CONFIGS / "params.yaml").read_text())
    assert not set(flatten(own)) & keys["demo"]
    for section in presets["demo"]:
        assert isinstance(own.get(section), dict), section


@pytest.mark.parametrize("preset", sorted(_repo_presets()))
def test_each_repo_preset_loads_as_valid_parameters(preset: str, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Each preset of the repo, chosen in the repo's params.yaml, validates against the schema
    (the IXI folder need not exist for that) and no key of it is shadowed."""
    path = with_preset(tmp_path, preset)
    with caplog.at_level(logging.INFO, logger="pipeline.config.params"):
        params = load_params(path)
    assert params.preset == preset
    assert not caplog.records  # the repo's params.yaml shadows no preset key


def _entries(stage: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in stage.get("params", []):
        assert isinstance(entry, dict), entry
        out.update(entry)
    return out


def _has(data: dict[str, Any], dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def test_dvc_tracks_the_sections_of_both_files() -> None:
    """Each stage tracks, in the preset, exactly those of its params.yaml entries that the
    presets set; every tracked entry exists in its file (DVC fails on a missing one)."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert "configs/params.yaml:preset" in dvc["vars"]
    own = yaml.safe_load((CONFIGS / "params.yaml").read_text())
    presets = _repo_presets()
    for name, stage in dvc["stages"].items():
        entries = _entries(stage)
        assert "configs/presets" not in stage.get("deps", []), name  # tracked as params
        mine = entries["configs/params.yaml"]
        assert "preset" in mine and all(_has(own, e) for e in mine), name
        expected = [e for e in mine if _has(presets["demo"], e)]
        assert entries.get("configs/presets/${preset}.yaml", []) == expected, name
        assert all(_has(p, e) for p in presets.values() for e in expected), name

