"""A corpus of broken inputs, generated here: every one gets one clear error line, exit 1,
no output file of its own, and the good scans of the same batch are still scored."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from corpus import CORPUS, GOOD_VARIANTS, REASONS, plain_bytes, save

from pipeline.cli import main


@pytest.fixture
def deny_read(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make a file unreadable: ``chmod 0`` does it for a normal user; root reads anything, so
    there the permission check sees what a normal user's would."""
    def deny(path: Path) -> None:
        if os.geteuid() == 0:
            import pipeline.io.nifti as nifti

            real = nifti.os.access
            monkeypatch.setattr(nifti.os, "access", lambda p, mode, *a, **k: (
                False if Path(p) == path else real(p, mode, *a, **k)))
    return deny


def _good_scan(project: Path) -> Path:
    split = json.loads((project / "data" / "prepared" / "split.json").read_text())
    return Path(split["test_healthy"][0]["image"])


def test_score_corpus_of_bad_inputs(in_project: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    deny_read: Callable[[Path], None]) -> None:
    good_path = _good_scan(in_project)
    good = nib.load(good_path)
    folder = tmp_path / "in"
    folder.mkdir()
    bad = [maker(folder / f"{name}.nii.gz", good) for name, maker in CORPUS.items()]
    deny_read(folder / "unreadable_permissions.nii.gz")
    bad.append(folder / "a_directory.nii.gz")
    bad[-1].mkdir()
    bad.append(folder / "missing_file.nii.gz")
    assert len(bad) >= 20
    data = np.asarray(good.dataobj, np.float32)
    fine = [good_path, shutil.copy(good_path, folder / "scan with spaces – ü.nii.gz")]
    fine = [Path(p) for p in fine] + [
        save(folder / f"{name}.nii.gz", fn(data), good.affine)
        for name, fn in GOOD_VARIANTS.items()]
    out = tmp_path / "out"
    # in this process: the permission denial is patched in here (tests run as root)
    code = main(["score", *map(str, bad), *map(str, fine), "--out", str(out), "--no-report",
                 "--workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "Traceback" not in "\n".join(err)
    assert len(err) == len(bad), "\n".join(err)
    reasons = [*REASONS.values(), "directory", "not found"]
    assert list(REASONS) == list(CORPUS)
    for path, line, reason in zip(bad, err, reasons, strict=True):
        shown = str(path).replace("\n", "\\n")
        assert line.startswith(f"error: {shown}: ") and reason in line, (line, reason)
        assert "np.float" not in line  # numbers, not numpy reprs
        assert "SimpleITK" not in line and "Exception" not in line  # a reason, not internals
    expected = sorted(f"{p.name.removesuffix('.nii.gz')}{suffix}" for p in fine
                      for suffix in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz", ".json"))
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "manifest.json"])
    manifest = json.loads((out / "manifest.json").read_text())
    counts = {**manifest["counts"]["status"], **manifest["counts"]["verdict"]}
    assert {k: counts[k] for k in ("scored", "up_to_date", "failed")} == {
        "scored": len(fine), "up_to_date": 0, "failed": len(bad)}
    # the same brain in another encoding (type, scale, orientation) is no other domain
    assert counts["normal"] + counts["abnormal"] == len(fine)
    assert counts["out of distribution"] == 0
    for p in fine:
        name = p.name.removesuffix(".nii.gz")
        heat = nib.load(out / f"{name}_anomaly.nii.gz")
        assert heat.shape == good.shape and np.allclose(heat.affine, good.affine)
        assert np.isfinite(np.asarray(heat.dataobj)).all()
    info = json.loads((out / "partial nan ü.json").read_text())
    assert any("non-finite voxel" in w for w in info["warnings"]), info["warnings"]


def test_score_bad_brain_masks(in_project: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Masks on another grid, empty, missing or not NIfTI: that scan fails, the rest go on."""
    good_path = _good_scan(in_project)
    good = nib.load(good_path)
    brain = np.asarray(good.dataobj) > np.percentile(np.asarray(good.dataobj), 60)
    folder = tmp_path / "in"
    folder.mkdir()
    masks = {
        "other_grid": save(folder / "m_grid.nii.gz", brain[:-2].astype(np.uint8), good.affine),
        "empty": save(folder / "m_empty.nii.gz", np.zeros(good.shape, np.uint8), good.affine),
        "missing": folder / "m_missing.nii.gz",
        "not_nifti": plain_bytes(b"mask?")(folder / "m_text.nii.gz", good),
        "fine": save(folder / "m_fine.nii.gz", brain.astype(np.uint8), good.affine),
    }
    scans = {k: Path(shutil.copy(good_path, folder / f"{k}.nii.gz")) for k in masks}
    args = [str(p) for p in scans.values()]
    for m in masks.values():
        args += ["--brain-mask", str(m)]
    out = tmp_path / "out"
    assert main(["score", *args, "--out", str(out), "--no-report"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "Traceback" not in "\n".join(err)
    for key, line in zip(["other_grid", "empty", "missing", "not_nifti"], err, strict=True):
        assert line.startswith(f"error: {scans[key]}: brain mask {masks[key].name}: ")
    assert "not on the scan's grid" in err[0] and "empty" in err[1]
    assert sorted(p.name for p in out.iterdir()) == [
        "fine.json", "fine_anomaly.nii.gz", "fine_anomaly_mask.nii.gz", "manifest.json"]


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only: ``chmod`` for a normal user, a read-only bind mount for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("running as root without the right to mount a read-only folder")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_output_folder_that_is_a_file_is_a_usage_error(in_project: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["score", str(_good_scan(in_project)), "--out", str(a_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output folder is not writable" in err[0]
    assert a_file.read_text() == "x"


def test_read_only_output_folder_is_a_usage_error(in_project: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    with _read_only(read_only):
        assert main(["score", str(_good_scan(in_project)), "--out", str(read_only)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output folder is not writable" in err[0]
    assert not list(read_only.iterdir())


def test_output_links_are_never_written_through(in_project: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A link planted where an output goes (it could point anywhere) fails that scan only."""
    good_path = _good_scan(in_project)
    folder, out, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside.json"
    folder.mkdir()
    out.mkdir()
    outside.write_text("precious")
    trap = Path(shutil.copy(good_path, folder / "trap.nii.gz"))
    (out / "trap.json").symlink_to(outside)
    assert main(["score", str(trap), str(good_path), "--out", str(out), "--no-report"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {trap}: output trap.json is a link")
    assert outside.read_text() == "precious"
    assert sorted(p.name for p in out.iterdir() if not p.is_symlink()) == sorted([
        *(f"{good_path.name.removesuffix('.nii.gz')}{s}"
          for s in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz", ".json")), "manifest.json"])


@pytest.mark.parametrize("name", ["not_gzip", "all_nan", "four_d"])
def test_generative_commands_refuse_bad_scans(in_project: Path, tmp_path: Path, capsys,
                                              name: str) -> None:
    good_path = _good_scan(in_project)
    path = CORPUS[name](tmp_path / f"{name}.nii.gz", nib.load(good_path))
    capsys.readouterr()
    assert main(["loglik", str(path), str(good_path), "--k", "2"]) == 1
    assert main(["interpolate", str(good_path), str(path), "--out", str(tmp_path / "i")]) == 1
    assert main(["impute", str(path), "--mask", str(path), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith(f"error: {path}: ") for line in err)
    assert not list((tmp_path / "m").iterdir()) and not list((tmp_path / "i").iterdir())


def test_loglik_refuses_the_whole_corpus_and_still_scores_the_good_scan(
        in_project: Path, tmp_path: Path, capsys, deny_read: Callable[[Path], None]) -> None:
    good_path = _good_scan(in_project)
    good = nib.load(good_path)
    bad = [maker(tmp_path / f"{name}.nii.gz", good) for name, maker in CORPUS.items()]
    deny_read(tmp_path / "unreadable_permissions.nii.gz")
    capsys.readouterr()
    assert main(["loglik", *map(str, bad), str(good_path), "--k", "2"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == len(bad) and "Traceback" not in captured.err
    for path, line in zip(bad, err, strict=True):
        assert line.startswith(f"error: {str(path).replace(chr(10), chr(92) + 'n')}: ")
    assert str(good_path) in captured.out
