"""`dvc repro` / `dvc exp run -S` in a throw-away git repo on a stage that only loads the
parameters (no training): the parameters set are the ones that run, in the file that sets them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, with_preset

from pipeline.config.params import flatten


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
    with_preset(root, "ixi")
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


@pytest.mark.slow
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
