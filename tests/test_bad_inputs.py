"""A corpus of broken inputs, generated here: every one gets one clear error line, exit 1,
no output file of its own, and the good scans of the same batch are still scored."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.cli import main

Maker = Callable[[Path, nib.Nifti1Image], Path]


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _with_affine(affine: np.ndarray) -> Maker:
    """The good data with ``affine`` written straight into the sform rows (qform off)."""
    def make(path: Path, good: nib.Nifti1Image) -> Path:
        img = nib.Nifti1Image(np.asarray(good.dataobj, np.float32), np.eye(4))
        hdr = img.header
        hdr["qform_code"], hdr["sform_code"] = 0, 1
        for i, row in enumerate(("srow_x", "srow_y", "srow_z")):
            hdr[row] = affine[i]
        hdr["pixdim"][1:4] = np.abs(np.diag(affine)[:3])
        with gzip.open(path, "wb") as fh:
            fh.write(hdr.binaryblock + b"\0" * 4 + np.asarray(img.dataobj).tobytes())
        return path
    return make


def _huge(path: Path, good: nib.Nifti1Image) -> Path:
    """A header claiming 30000³ voxels over a few bytes of data: refused before reading."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.float32)
    hdr.set_sform(np.eye(4), code=1)
    with gzip.open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


def _truncated(path: Path, good: nib.Nifti1Image) -> Path:
    nib.save(good, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def _plain_bytes(content: bytes) -> Maker:
    def make(path: Path, good: nib.Nifti1Image) -> Path:
        path.write_bytes(content)
        return path
    return make


def _array(fn: Callable[[np.ndarray], np.ndarray]) -> Maker:
    def make(path: Path, good: nib.Nifti1Image) -> Path:
        return _save(path, fn(np.asarray(good.dataobj, np.float32)), good.affine)
    return make


def _rgb(path: Path, good: nib.Nifti1Image) -> Path:
    rgb = np.zeros(good.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _save(path, rgb, good.affine)


def _zero_pixdim_qform(path: Path, good: nib.Nifti1Image) -> Path:
    """Only a qform (sform off) whose voxel size along one axis is 0: not invertible."""
    data = np.asarray(good.dataobj, np.float32)
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_qform(good.affine, code=1)
    hdr.set_sform(None, code=0)
    hdr["pixdim"][2] = 0.0
    hdr["vox_offset"] = 352
    with gzip.open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\0" * 4 + data.tobytes(order="F"))
    return path


def _unreadable(path: Path, good: nib.Nifti1Image) -> Path:
    nib.save(good, path)
    path.chmod(0)
    return path


CORPUS: dict[str, Maker] = {
    "truncated_gzip": _truncated,
    "not_gzip": _plain_bytes(b"this is a text file, not gzip"),
    "not_nifti": _plain_bytes(b"\x1f\x8b" + b"\x00" * 400),
    "zero_bytes": _plain_bytes(b""),
    "random_bytes": _plain_bytes(np.random.default_rng(0).bytes(4096)),
    "two_d": _array(lambda a: a[:, :, a.shape[2] // 2]),
    "four_d": _array(lambda a: np.stack([a, a], axis=-1)),
    "five_d": _array(lambda a: a[..., None, None].repeat(2, axis=3).repeat(2, axis=4)),
    "all_zero": _array(lambda a: np.zeros_like(a)),
    "all_nan": _array(lambda a: np.full_like(a, np.nan)),
    "constant": _array(lambda a: np.full_like(a, 7.0)),
    "complex": _array(lambda a: a.astype(np.complex64)),
    "tiny_grid": _array(lambda a: a[:4, :4, :4]),
    "far_smaller_than_template": _array(lambda a: a[tuple(slice(n // 2 - 6, n // 2 + 6)
                                                          for n in a.shape)]),
    "huge_dimensions": _huge,
    "nan_affine": _with_affine(np.full((4, 4), np.nan)),
    "singular_affine": _with_affine(np.diag([2.0, 2.0, 0.0, 1.0])),
    "zero_voxel_size": _with_affine(np.diag([0.0, 2.0, 2.0, 1.0])),
    "absurd_voxel_size": _with_affine(np.diag([500.0, 500.0, 500.0, 1.0])),
    "zero_pixdim_qform": _zero_pixdim_qform,
    "rgb": _rgb,
    "unreadable_permissions": _unreadable,
    "name with\nnewline": _plain_bytes(b"not a scan"),
}

# Valid variants of a good scan: each must be scored (as float32), never refused.
GOOD_VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "int16": lambda a: np.round(a / max(float(a.max()), 1e-6) * 3000).astype(np.int16),
    "uint8": lambda a: np.round(a / max(float(a.max()), 1e-6) * 255).astype(np.uint8),
    "int8": lambda a: np.round(a / max(float(a.max()), 1e-6) * 127).astype(np.int8),
    "uint16": lambda a: np.round(a / max(float(a.max()), 1e-6) * 4000).astype(np.uint16),
    "float64": lambda a: a.astype(np.float64),
    "partial nan ü": lambda a: np.where(np.arange(a.size).reshape(a.shape) % 97 == 0,
                                        np.nan, a).astype(np.float32),
}


@pytest.fixture
def deny_read(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make a file unreadable: ``chmod 0`` does it for a normal user; root reads anything, so
    there the permission check sees what a normal user's would."""
    def deny(path: Path) -> None:
        if os.geteuid() == 0:
            import pipeline.nifti as nifti

            real = nifti.os.access
            monkeypatch.setattr(nifti.os, "access", lambda p, mode, *a, **k: (
                False if Path(p) == path else real(p, mode, *a, **k)))
    return deny


def _good_scan(project: Path) -> Path:
    split = json.loads((project / "data" / "prepared" / "split.json").read_text())
    return Path(split["test_healthy"][0]["image"])


def test_score_corpus_of_bad_inputs(in_project: Path, tmp_path: Path, capsys,
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
        _save(folder / f"{name}.nii.gz", fn(data), good.affine)
        for name, fn in GOOD_VARIANTS.items()]
    out = tmp_path / "out"
    code = main(["score", *map(str, bad), *map(str, fine), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "Traceback" not in "\n".join(err)
    assert len(err) == len(bad), "\n".join(err)
    for path, line in zip(bad, err, strict=True):
        shown = str(path).replace("\n", "\\n")
        assert line.startswith(f"error: {shown}: ") and len(line) > len(f"error: {shown}: ") + 5
        assert "np.float" not in line  # numbers, not numpy reprs
        assert "SimpleITK" not in line and "Exception" not in line  # a reason, not internals
    expected = sorted(f"{p.name.removesuffix('.nii.gz')}{suffix}" for p in fine
                      for suffix in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz", ".json"))
    assert sorted(p.name for p in out.iterdir()) == expected
    for p in fine:
        name = p.name.removesuffix(".nii.gz")
        heat = nib.load(out / f"{name}_anomaly.nii.gz")
        assert heat.shape == good.shape and np.allclose(heat.affine, good.affine)
        assert np.isfinite(np.asarray(heat.dataobj)).all()
    info = json.loads((out / "partial nan ü.json").read_text())
    assert any("non-finite voxel" in w for w in info["warnings"]), info["warnings"]


def test_score_bad_brain_masks(in_project: Path, tmp_path: Path, capsys) -> None:
    """Masks on another grid, empty, missing or not NIfTI: that scan fails, the rest go on."""
    good_path = _good_scan(in_project)
    good = nib.load(good_path)
    brain = np.asarray(good.dataobj) > np.percentile(np.asarray(good.dataobj), 60)
    folder = tmp_path / "in"
    folder.mkdir()
    masks = {
        "other_grid": _save(folder / "m_grid.nii.gz", brain[:-2].astype(np.uint8), good.affine),
        "empty": _save(folder / "m_empty.nii.gz", np.zeros(good.shape, np.uint8), good.affine),
        "missing": folder / "m_missing.nii.gz",
        "not_nifti": _plain_bytes(b"mask?")(folder / "m_text.nii.gz", good),
        "fine": _save(folder / "m_fine.nii.gz", brain.astype(np.uint8), good.affine),
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
        "fine.json", "fine_anomaly.nii.gz", "fine_anomaly_mask.nii.gz"]


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


def test_unwritable_output_folder_is_a_usage_error(in_project: Path, tmp_path: Path,
                                                   capsys) -> None:
    good_path = _good_scan(in_project)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["score", str(good_path), "--out", str(a_file)]) == 2
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    with _read_only(read_only):
        assert main(["score", str(good_path), "--out", str(read_only)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("output folder is not writable" in line for line in err)
    assert a_file.read_text() == "x" and not list(read_only.iterdir())


def test_output_links_are_never_written_through(in_project: Path, tmp_path: Path,
                                                capsys) -> None:
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
    assert sorted(p.name for p in out.iterdir() if not p.is_symlink()) == sorted(
        f"{good_path.name.removesuffix('.nii.gz')}{s}"
        for s in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz", ".json"))


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
