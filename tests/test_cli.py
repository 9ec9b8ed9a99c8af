"""The command line: version, options after the subcommand, help text, folders as input, and
a clear refusal in a project that has no model yet."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from pipeline.cli import build_parser, main
from pipeline.commands.score import expand_folders


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_version_and_debug_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("vae-anomaly ")
    args = build_parser().parse_args(["score", "a.nii.gz", "--out", "o", "--debug"])
    assert args.debug is True
    assert build_parser().parse_args(["--debug", "report"]).debug is True
    assert build_parser().parse_args(["report"]).debug is False


def test_every_option_has_help_and_no_help_shows_rest_markup() -> None:
    parsers = {"vae-anomaly": build_parser(), **_subparsers()}
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name}: {action.dest} has no help text"
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text, name


def test_folders_are_expanded_to_their_nifti_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b.nii.gz", "a.nii", "notes.txt"):
        (folder / name).write_bytes(b"")
    empty = tmp_path / "empty.nii.gz"
    empty.mkdir()
    single = tmp_path / "c.nii.gz"
    assert expand_folders([folder, single, empty]) == [folder / "a.nii", folder / "b.nii.gz",
                                                       single, empty]


def test_score_in_a_project_without_a_model_says_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "project"
    shutil.copytree(REPO / "configs", root / "configs")
    monkeypatch.setenv("VAE_ANOMALY_ROOT", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(root)
    out = root / "results"
    assert main(["score", str(tmp_path / "scan.nii.gz"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "dvc repro" in err and "--model" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in root.iterdir()) == ["configs"]   # nothing was created


@pytest.mark.integration
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
    assert manifest["counts"]["scored"] == 2
    assert "2 inputs: 2 scored" in capsys.readouterr().out


@pytest.mark.integration
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
