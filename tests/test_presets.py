"""Parameters and presets: every key that runs is tracked in the file that sets it.

configs/params.yaml chooses the preset; the preset fills in its keys; a key that
configs/params.yaml holds wins (logged); presets that do not all set the same keys are
refused. The DVC test runs `dvc repro` / `dvc exp run -S` in a throw-away git repo on a stage
that only loads the parameters (no training)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config.params import ConfigError, flatten, load_params, load_raw

REPO = Path(__file__).resolve().parents[1]
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


def _with_preset(root: Path, preset: str) -> Path:
    shutil.copytree(CONFIGS, root / "configs")
    path = root / "configs" / "params.yaml"
    text = path.read_text()
    assert "\npreset: demo\n" in text
    path.write_text(text.replace("\npreset: demo\n", f"\npreset: {preset}\n"))
    return path


FROZEN = {  # the merged parameters of each preset before the keys moved into the presets
    "demo": {"seed": 20261123, "cohort.folder": "data/cohort", "cohort.name": "demo-icbm152",
             "split.test_fraction": 0.2, "lesions.diameter_mm": [6.0, 20.0],
             "template.resolution_mm": 3.0, "template.crop_shape": [56, 64, 56],
             "model.channels": [16, 32, 64], "model.stem": 2, "train.epochs": 40,
             "train.steps_per_epoch": 30, "train.batch_size": 4, "train.denoise.std": 0.0,
             "train.site.probability": 0.0, "train.device": "auto",
             "scoring.score": ["restoration"], "scoring.restoration.steps": 40,
             "evaluate.sites.scans": 2, "evaluate.extra_cases": [],
             "mlflow.registered_model": "vae-anomaly-demo", "mlflow.experiment": "vae-anomaly"},
    "ixi": {"seed": 20261123, "cohort.folder": "../shared/data/ixi-t1",
            "cohort.name": "IXI-T1 (Hammersmith Hospital, Philips 3T, healthy adults 20-82 y)",
            "split.test_fraction": 0.15, "lesions.diameter_mm": [4.0, 15.0],
            "template.resolution_mm": 2.0, "template.crop_shape": [80, 96, 80],
            "model.channels": [16, 32], "model.stem": 2, "train.epochs": 40,
            "train.steps_per_epoch": 500, "train.batch_size": 8, "train.denoise.std": 0.2,
            "train.site.probability": 0.3, "train.device": "auto",
            "scoring.score": ["residual", "restoration"], "scoring.restoration.steps": 10,
            "evaluate.sites.scans": 8, "mlflow.registered_model": "vae-anomaly-ixi-t1",
            "mlflow.experiment": "vae-anomaly"},
}


@pytest.mark.parametrize("preset", sorted(FROZEN))
def test_the_presets_run_the_parameters_they_ran_before(preset: str, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    path = _with_preset(tmp_path, preset)
    with caplog.at_level(logging.INFO, logger="pipeline.config.params"):
        raw = flatten(load_raw(path))
        params = load_params(path)  # valid (the IXI folder need not exist for that)
    assert {k: raw[k] for k in FROZEN[preset]} == FROZEN[preset]
    assert params.preset == preset and params.train.epochs == FROZEN[preset]["train.epochs"]
    assert [e.name for e in params.evaluate.extra_cases] == (
        ["lesjak-ms-patient26-T1"] if preset == "ixi" else [])
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


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _ok(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = _run(cmd, cwd, env)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


LOADER = ("import json, pathlib; from pipeline.config.params import load_params; "
          "p = load_params(pathlib.Path('configs/params.yaml')); "
          "pathlib.Path('ran.json').write_text(json.dumps({'preset': p.preset, "
          "'epochs': p.train.epochs, 'steps': p.train.steps_per_epoch}))")


def _dvc_project(root: Path) -> dict[str, str]:
    """A git + DVC repo with the repo's configs (preset ixi) and one stage that tracks the
    train stage's parameters and writes the ones that ran."""
    _with_preset(root, "ixi")
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stage = {"cmd": f"{shlex.quote(sys.executable)} -c {shlex.quote(LOADER)}",
             "params": dvc["stages"]["train"]["params"],
             "outs": [{"ran.json": {"cache": False}}]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"vars": dvc["vars"],
                                                   "stages": {"train": stage}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAE_ANOMALY", "GIT_"))}
    env.update(PYTHONPATH=str(REPO), DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "t"],
                ["git", "config", "user.email", "t@example.org"], ["dvc", "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "init"], ["dvc", "repro"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "repro"]):
        _ok(cmd, root, env)
    return env


def _ran(root: Path) -> dict[str, Any]:
    return json.loads((root / "ran.json").read_text())


def _changed(root: Path, env: dict[str, str]) -> dict[str, Any]:
    """`dvc params diff` against the last commit, as {file: {key: (old, new)}}."""
    diff = json.loads(_ok(["dvc", "params", "diff", "--json"], root, env).stdout or "{}")
    return {f: {k: (v["old"], v["new"]) for k, v in keys.items()} for f, keys in diff.items()}


def _exp_run(root: Path, env: dict[str, str], setting: str) -> str:
    """`dvc exp run -S setting`; the experiment's name."""
    out = _ok(["dvc", "exp", "run", "-S", setting], root, env).stdout
    return out.split("Ran experiment(s): ")[1].split()[0]


def _shown(root: Path, env: dict[str, str], name: str, file: str) -> dict[str, Any]:
    """The parameters of `file` that `dvc exp show` records for experiment `name`."""
    rows = json.loads(_ok(["dvc", "exp", "show", "--json"], root, env).stdout)
    runs = [run for row in rows for exp in row.get("experiments") or () for run in exp["revs"]]
    (run,) = [r for r in runs if r["name"] == name]
    return flatten(run["data"]["params"][file]["data"])


def _reset(root: Path, env: dict[str, str]) -> None:
    _ok(["git", "checkout", "-q", "HEAD", "--", "configs", "ran.json", "dvc.lock"], root, env)


@pytest.mark.skipif(not (shutil.which("dvc") and shutil.which("git")),
                    reason="needs the dvc and git commands")
def test_dvc_exp_run_set_params_are_the_ones_that_run(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    env = _dvc_project(root)
    assert _ran(root) == {"preset": "ixi", "epochs": 40, "steps": 500}
    # a plain -S of a key params.yaml does not hold is refused by DVC itself, not ignored
    refused = _run(["dvc", "exp", "run", "-S", "configs/params.yaml:train.epochs=7"], root, env)
    assert refused.returncode != 0
    assert "Could not override 'train.epochs'" in refused.stdout + refused.stderr
    assert _ran(root)["epochs"] == 40
    # params.yaml's key wins over the preset's, and DVC records the value that ran
    name = _exp_run(root, env, "configs/params.yaml:++train.epochs=7")
    assert _ran(root)["epochs"] == 7
    assert _changed(root, env) == {"configs/params.yaml": {"train.epochs": (None, 7)}}
    assert _shown(root, env, name, "configs/params.yaml")["train.epochs"] == 7
    _reset(root, env)
    # the preset file is tracked: setting its key runs it
    name = _exp_run(root, env, "configs/presets/ixi.yaml:train.epochs=5")
    assert _ran(root) == {"preset": "ixi", "epochs": 5, "steps": 500}
    assert _changed(root, env) == {"configs/presets/ixi.yaml": {"train.epochs": (40, 5)}}
    assert _shown(root, env, name, "configs/presets/ixi.yaml")["train.epochs"] == 5
    _reset(root, env)
    # switching the preset switches the tracked file (dvc.yaml's ${preset})
    _exp_run(root, env, "configs/params.yaml:preset=demo")
    assert _ran(root) == {"preset": "demo", "epochs": 40, "steps": 30}
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["train"]["params"]
    assert set(lock) == {"configs/params.yaml", "configs/presets/demo.yaml"}
    _reset(root, env)
    # a key only the active preset sets (params.yaml holds it and would win) is refused
    shadowed = _run(["dvc", "exp", "run", "-S", "configs/presets/ixi.yaml:++train.device=cuda"],
                    root, env)
    assert shadowed.returncode != 0
    assert "-S configs/params.yaml:train.device=..." in shadowed.stdout + shadowed.stderr
