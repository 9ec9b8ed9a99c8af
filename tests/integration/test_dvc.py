"""Integration: the DVC pipeline on the tiny demo cohort, through the `dvc` and `git` commands.

The tiny project (this checkout's files, tracked and untracked-but-not-ignored, with the
configs of :data:`conftest.TINY_OVERRIDES`) is committed in a git repository and
reproduced once; a ``git clone`` of it in another folder is reproduced once more. Then:

- the clone's ``dvc.lock`` is the original's, byte for byte: no output depends on the folder
  the project lives in or on when it ran (outputs name files relative to the project root;
  run ids and wall-clock times are in MLflow only);
- no output holds the project folder's absolute path;
- a moved clone reads its scans through those relative paths (``evaluate`` reruns there
  after the folder is renamed);
- ``dvc exp run -S`` of an evaluation parameter reruns ``evaluate`` (and ``report``) only,
  ``dvc exp show`` lists the experiment's metrics and ``dvc metrics diff`` shows the change.

Two whole ``dvc repro`` runs in all (about 2-3 minutes each on a 2-core CPU). The first
tests (no DVC) cover the path helpers: stored relative, read back, old absolute manifests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, TINY_OVERRIDES, make_project

from pipeline.cohort.store import (
    Case,
    Manifest,
    Part,
    load_manifest,
    split_file,
    stored_manifest,
)
from pipeline.config import paths
from pipeline.config.params import load_params
from pipeline.preparation.worker import rebased

REPRO_TIMEOUT_S = 1800
COMMAND_TIMEOUT_S = 300
EXPERIMENT = "fewer-thresholds"
N_THRESHOLDS = 50  # evaluate.n_thresholds: read by evaluate only (then report reruns)



def _dvc_test(test: Any) -> Any:
    """An integration test on the DVC project (the fixtures run two ``dvc repro``)."""
    tools = shutil.which("dvc") and shutil.which("git") and shutil.which("vae-anomaly")
    test = pytest.mark.skipif(not tools, reason="needs the dvc, git and vae-anomaly commands")(
        test)
    return pytest.mark.timeout(3 * REPRO_TIMEOUT_S)(pytest.mark.integration(test))


def test_stored_paths_are_relative_to_the_project_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    cases = {root / "data" / "cohort" / "a.nii.gz": "data/cohort/a.nii.gz",
             root / ".." / "shared" / "b.nii.gz": "../shared/b.nii.gz",  # from ../shared
             "../shared/c.nii.gz": "../shared/c.nii.gz", "": "",
             tmp_path / "elsewhere" / "d.nii.gz": str(tmp_path / "elsewhere" / "d.nii.gz")}
    for path, expected in cases.items():
        assert paths.stored(path, root) == expected, path
        if expected:  # read back: the same file
            want = Path(path) if Path(path).is_absolute() else root / path
            assert paths.resolve(expected, root) == want, path
    (root / "data").mkdir(parents=True)
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    assert paths.stored(tmp_path / "link" / "data" / "x", root) == "data/x"


def test_a_manifest_reads_relative_and_old_absolute_paths(tmp_path: Path) -> None:
    params = load_params(make_project(tmp_path, TINY_OVERRIDES))
    scan, outside = tmp_path / "data" / "cohort" / "t1" / "s_T1.nii.gz", "/old/place/o.nii.gz"
    lesioned = Case("o", "o", Part.TEST_LESION, outside, outside, info={"lesions": [{"x": 1}]})
    manifest = Manifest({Part.TRAIN: [Case("s", "s", Part.TRAIN, str(scan))],
                         Part.CALIBRATION: [], Part.TEST_HEALTHY: [],
                         Part.TEST_LESION: [lesioned]}, [], 3)
    stored = stored_manifest(manifest, params.root)
    assert stored["train"][0] == {"id": "s", "subject": "s", "split": "train",
                                  "image": "data/cohort/t1/s_T1.nii.gz", "mask": "", "truth": ""}
    assert stored["test_lesion"] == [lesioned.to_json()] and stored["head_atlas_scans"] == 3
    split_file(params).parent.mkdir(parents=True)
    split_file(params).write_text(json.dumps(stored))
    assert load_manifest(params) == manifest  # relative: resolved; absolute: as it was


def test_a_shared_cache_entry_names_this_projects_scans(tmp_path: Path) -> None:
    """An entry cached by another project (same scans, same key) names this run's files."""
    out = tmp_path / "here" / "data" / "prepared"
    case = {"id": "s", "subject": "s", "split": "test", "image": "/here/s_T1.nii.gz",
            "mask": "/here/s_mask.nii.gz", "truth": ""}
    cached = [{**case, "image": "/there/s_T1.nii.gz", "mask": "/there/s_mask.nii.gz",
               "split": "test_healthy"},
              {**case, "id": "s-lesion", "split": "test_lesion", "image": "s-lesion_T1.nii.gz",
               "truth": "s-lesion_lesion.nii.gz", "mask": "s-lesion_native_brain.nii.gz"}]
    healthy, lesion = (rebased(e, case, out) for e in cached)
    assert (healthy["image"], healthy["mask"]) == (case["image"], case["mask"])
    assert lesion["image"] == str(out / "lesioned" / "s-lesion_T1.nii.gz")
    assert lesion["truth"] == str(out / "lesioned" / "s-lesion_lesion.nii.gz")
    assert lesion["mask"] == str(out / "cases" / "s-lesion_native_brain.nii.gz")


def _env(root: Path) -> dict[str, str]:
    """The environment of a command in ``root``: its own code, cache and MLflow store."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VAE_ANOMALY_ROOT", "VAE_ANOMALY_CACHE", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(args: list[str], cwd: Path, timeout: float = COMMAND_TIMEOUT_S
         ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=_env(cwd), capture_output=True, text=True,
                          timeout=timeout, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} in {cwd}:\n{output[-4000:]}"
    return done


def _git_init(root: Path) -> None:
    for key, value in (("user.name", "test"), ("user.email", "test@example.org")):
        _run(["git", "config", key, value], root)


def _commit(root: Path, message: str) -> None:
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-q", "-m", message], root)


def _checkout_files() -> list[str]:
    """This checkout's files as a clone with its uncommitted work would have them."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pytest.skip("the tests do not run from a git checkout")
    return [f for f in out.split("\0")
            if f and not f.startswith("configs/") and (REPO / f).is_file()]


def _repro_every_stage(root: Path, force: bool = False) -> None:
    """``dvc repro`` in ``root``, every stage running (``force``: also a stage whose outputs
    are all in git and whose dependencies came out the same, which DVC rightly skips, such
    as ``validate`` in a clone)."""
    done = _run(["dvc", "repro", *(["--force"] if force else [])], root, REPRO_TIMEOUT_S)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    ran = [name for name in stages if f"Running stage '{name}'" in done.stdout + done.stderr]
    assert ran == list(stages), "dvc repro did not run every stage"


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project, committed, reproduced by ``dvc repro`` and committed again."""
    root = tmp_path_factory.mktemp("dvc") / "original"
    for name in _checkout_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    make_project(root, TINY_OVERRIDES)
    _run(["git", "init", "-q"], root)
    _git_init(root)
    _commit(root, "tiny project")
    _repro_every_stage(root)
    _commit(root, "dvc repro")
    return root


@pytest.fixture(scope="module")
def clone(original: Path) -> Path:
    """A ``git clone`` of the original in another folder, reproduced by ``dvc repro``."""
    root = original.parent / "clone"
    _run(["git", "clone", "-q", str(original), str(root)], original.parent)
    _git_init(root)
    _repro_every_stage(root, force=True)  # nothing comes from the original's cache
    return root


def _lock(text: str) -> dict[str, Any]:
    """``dvc.lock`` as {stage: {"cmd", "params", "deps": {path: entry}, "outs": ...}}."""
    stages = yaml.safe_load(text)["stages"]
    return {name: {**s, **{kind: {e["path"]: e for e in s.get(kind, [])}
                           for kind in ("deps", "outs")}} for name, s in stages.items()}


def _committed_lock(root: Path) -> str:
    return _run(["git", "show", "HEAD:dvc.lock"], root).stdout


@_dvc_test
def test_a_clone_reproduces_an_identical_dvc_lock(original: Path, clone: Path) -> None:
    """A ``git clone`` elsewhere reproduces the original's ``dvc.lock`` exactly: the cohort,
    the prepared scans and split, the QC, the models, the evaluation maps, records, metrics
    and curves, the generative outputs and the reports (no absolute path, run id or
    wall-clock time in any output)."""
    ours, theirs = _lock(_committed_lock(original)), _lock((clone / "dvc.lock").read_text())
    assert set(ours) == set(theirs)
    for name, stage in ours.items():  # stage by stage first: a failure names the output
        for kind in ("deps", "outs"):
            assert stage[kind] == theirs[name][kind], (name, kind)
    assert {"data/cohort", "data/prepared", "reports/prepare_qc.json", "models/vae",
            "data/evaluation", "reports/cases", "reports/metrics.json",
            "reports/generative.json"} <= {p for st in ours.values() for p in st["outs"]}
    assert (clone / "dvc.lock").read_text() == _committed_lock(original)


def _files(root: Path, outs: list[str]) -> list[Path]:
    return [p for out in outs for p in ([root / out] if (root / out).is_file()
                                        else sorted((root / out).rglob("*"))) if p.is_file()]


@_dvc_test
def test_outputs_name_no_absolute_path_into_the_project(original: Path, clone: Path) -> None:
    """No output holds the project folder."""
    outs = [p for stage in _lock(_committed_lock(original)).values() for p in stage["outs"]]
    for root in (original, clone):
        files = _files(root, outs)
        assert any(p.name == "split.json" for p in files)
        holding = [str(p.relative_to(root)) for p in files
                   if str(root).encode() in p.read_bytes()]
        assert holding == [], root
    split = json.loads((clone / "data" / "prepared" / "split.json").read_text())
    assert split["test_lesion"][0]["image"].startswith("data/prepared/lesioned/")
    assert split["train"][0]["image"].startswith("data/cohort/")


@_dvc_test
def test_a_moved_clone_reads_its_scans_through_relative_paths(clone: Path) -> None:
    """Renamed, the clone still finds every scan its manifest names, and ``evaluate`` reruns
    there to the same score comparison."""
    before = (clone / "reports" / "score_comparison.csv").read_bytes()
    moved = clone.with_name("moved")
    clone.rename(moved)
    try:
        split = json.loads((moved / "data" / "prepared" / "split.json").read_text())
        cases = [c for part in ("train", "calibration", "test_healthy", "test_lesion")
                 for c in split[part]]
        files = [c[k] for c in cases for k in ("image", "mask", "truth") if c.get(k)]
        assert files and not [f for f in files if Path(f).is_absolute()]
        assert all((moved / f).is_file() for f in files)
        (moved / "reports" / "score_comparison.csv").unlink()
        _run(["dvc", "repro", "--single-item", "--force", "evaluate"], moved, REPRO_TIMEOUT_S)
        assert (moved / "reports" / "score_comparison.csv").read_bytes() == before
        record = json.loads(next((moved / "data" / "evaluation").glob("*-lesion_T1.json"))
                            .read_text())
        assert record["input"].startswith("data/prepared/lesioned/")
        assert record["model"]["uri"] == "models/vae"
    finally:
        moved.rename(clone)


def _experiment_metrics(shown: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """reports/metrics.json of experiment ``name`` in ``dvc exp show --json``."""
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs", []):
                if rev.get("name") == name:
                    data = rev["data"]["metrics"]["reports/metrics.json"]
                    return dict(data["data"])
    raise AssertionError(f"no experiment {name} in dvc exp show: {json.dumps(shown)[:2000]}")


@_dvc_test
def test_an_experiment_on_an_evaluate_parameter_shows_its_metrics(original: Path) -> None:
    head = json.loads((original / "reports" / "metrics.json").read_text())
    assert head["best_dice_n_thresholds"] != N_THRESHOLDS
    done = _run(["dvc", "exp", "run", "-n", EXPERIMENT, "-S",
                f"configs/params.yaml:evaluate.n_thresholds={N_THRESHOLDS}"], original,
               REPRO_TIMEOUT_S)
    out = done.stdout + done.stderr
    assert "Running stage 'evaluate'" in out and "Running stage 'train'" not in out
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], original).stdout)
    metrics = _experiment_metrics(shown, EXPERIMENT)
    assert metrics["best_dice_n_thresholds"] == N_THRESHOLDS
    assert metrics["voxel_auprc"] == head["voxel_auprc"]  # the maps did not change
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], original).stdout)
    changed = diff["reports/metrics.json"]["best_dice_n_thresholds"]
    assert (changed["old"], changed["new"]) == (head["best_dice_n_thresholds"], N_THRESHOLDS)
