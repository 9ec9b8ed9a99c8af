"""The command line: version, options after the subcommand, help text, folders as input, and
a clear refusal in a project that has no model yet."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from pipeline.cli import build_parser, main
from pipeline.commands.score import expand_folders


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    # private argparse names (_actions, _SubParsersAction): argparse has no public way to list them
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

