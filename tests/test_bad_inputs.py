"""A corpus of broken inputs, generated here: every one gets one clear error line, exit 1,
no output file of its own, and the good scan of the same batch is still scored."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
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
}


def test_score_corpus_of_bad_inputs(in_project: Path, tmp_path: Path, capsys) -> None:
    split = json.loads((in_project / "data" / "prepared" / "split.json").read_text())
    good_path = Path(split["test_healthy"][0]["image"])
    good = nib.load(good_path)
    folder = tmp_path / "in"
    folder.mkdir()
    bad = [maker(folder / f"{name}.nii.gz", good) for name, maker in CORPUS.items()]
    bad.append(folder / "a_directory.nii.gz")
    bad[-1].mkdir()
    bad.append(folder / "missing_file.nii.gz")
    assert len(bad) >= 20
    out = tmp_path / "out"
    code = main(["score", *map(str, bad), str(good_path), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "Traceback" not in "\n".join(err)
    assert len(err) == len(bad), "\n".join(err)
    for path, line in zip(bad, err, strict=True):
        assert line.startswith(f"error: {path}: ") and len(line) > len(f"error: {path}: ") + 5
        assert "np.float" not in line  # numbers, not numpy reprs
        assert "SimpleITK" not in line and "Exception" not in line  # a reason, not internals
    stem = good_path.name.removesuffix(".nii.gz")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}_anomaly.nii.gz", f"{stem}_anomaly_mask.nii.gz", f"{stem}.json"])


@pytest.mark.parametrize("name", ["not_gzip", "all_nan", "four_d"])
def test_generative_commands_refuse_bad_scans(in_project: Path, tmp_path: Path, capsys,
                                              name: str) -> None:
    split = json.loads((in_project / "data" / "prepared" / "split.json").read_text())
    good_path = Path(split["test_healthy"][0]["image"])
    path = CORPUS[name](tmp_path / f"{name}.nii.gz", nib.load(good_path))
    capsys.readouterr()
    assert main(["loglik", str(path), str(good_path), "--k", "2"]) == 1
    assert main(["interpolate", str(good_path), str(path), "--out", str(tmp_path / "i")]) == 1
    assert main(["impute", str(path), "--mask", str(path), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith(f"error: {path}: ") for line in err)
    assert not list((tmp_path / "m").iterdir()) and not list((tmp_path / "i").iterdir())
