"""The command line on the tiny trained project: a folder scored scan by scan, and training
runs named by what they ran."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main


def test_a_folder_is_scored_scan_by_scan_with_a_summary(in_project: Path, tmp_path: Path,
                                                        capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for scan in sorted((in_project / "data" / "prepared" / "lesioned").glob("*_T1.nii.gz"))[:2]:
        shutil.copy(scan, folder / scan.name)
    out = tmp_path / "out"
    assert main(["score", str(folder), "--out", str(out), "--no-report"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [Path(e["input"]).parent for e in manifest["inputs"]] == [folder, folder]
    assert manifest["counts"]["status"]["scored"] == 2
    assert "2 inputs: 2 scored" in capsys.readouterr().out


def test_the_scoring_service_returns_typed_outcomes_and_refuses_reports_it_cannot_draw(
        in_project: Path, tmp_path: Path) -> None:
    """The service the CLI, the MLflow model and evaluate share: typed outcomes in input
    order (the summary in memory, equal to the JSON written); a scorer built without a
    renderer refuses a report before it writes anything."""
    from pipeline.inference.options import ScoreOptions, Status
    from pipeline.inference.scorer import Scorer
    from pipeline.io.errors import UsageError
    from pipeline.modelstore.loading import load_model

    model = load_model(in_project / "models" / "vae")
    scan = sorted((in_project / "data" / "prepared" / "lesioned").glob("*_T1.nii.gz"))[0]
    with pytest.raises(UsageError, match="no HTML reports"):
        Scorer(model).score_files([scan], [None], ScoreOptions(out=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    missing = tmp_path / "missing.nii.gz"
    run = Scorer(model).score_files([scan, missing], [None, None],
                                    ScoreOptions(out=tmp_path / "out", report=False))
    ok, failed = run.outcomes
    assert (ok.status, failed.status, run.exit_status) == (Status.SCORED, Status.FAILED, 1)
    assert ok.summary is not None and failed.summary is None and failed.error
    written = json.loads(ok.outputs["json"].read_text())
    assert written["scan_score"] == ok.summary.to_json()["scan_score"]
    assert written["verdict"] == ok.verdict


def test_training_runs_are_named_by_kind_and_cohort_and_say_what_they_ran(
        in_project: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    from pipeline.config import paths

    mlflow.set_tracking_uri(paths.default_tracking_uri())
    exp = MlflowClient().get_experiment_by_name("vae-anomaly")
    runs = MlflowClient().search_runs([exp.experiment_id])
    names = sorted(r.info.run_name for r in runs)
    assert names == ["train-autoencoder-demo-icbm152", "train-vae-demo-icbm152"]
    for r in runs:
        assert r.data.tags["git_commit"] == "unknown"     # the tiny project is no checkout
        assert len(r.data.tags["dvc_lock_sha256_at_start"]) in (4, 64)
    vae = next(r for r in runs if r.info.run_name.startswith("train-vae"))
    metrics = json.loads((in_project / "reports" / "metrics.json").read_text())
    assert vae.data.metrics["test_voxel_auprc"] == pytest.approx(metrics["voxel_auprc"])
    assert any(k.startswith("test_site_unmodified_") for k in vae.data.metrics)
