"""Input validation: what cannot be scored is refused with a one-line reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import oblique_affine, phantom

from pipeline.io.atomic import atomic_write
from pipeline.io.errors import ScanError
from pipeline.io.nifti import load_mask, load_scan, stem


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_good_scan_keeps_affine_and_shape(scan_file) -> None:
    img = load_scan(scan_file[0])
    assert img.shape == (40, 48, 36)
    np.testing.assert_allclose(img.affine, oblique_affine((2.2, 1.8, 2.5)), atol=1e-5)


@pytest.mark.parametrize("kind,needle", [
    ("missing", "not found"), ("directory", "directory"), ("empty", "empty"),
    ("not_nifti", "not a readable NIfTI"), ("bad_gzip", "not a readable NIfTI"),
    ("truncated", "truncated"), ("2d", "3D"), ("4d", "3D"), ("zeros", "constant"),
    ("nan", "no finite"), ("tiny_spacing", "voxel size"), ("singular", "singular"),
    ("complex", "voxel type"), ("huge", "too large"), ("small_field", "field of view"),
])
def test_bad_inputs_are_refused(tmp_path: Path, kind: str, needle: str) -> None:
    img, _ = phantom((52, 52, 52))  # 1 mm voxels: a field of view a brain fits in
    p = tmp_path / "bad.nii.gz"
    if kind == "missing":
        p = tmp_path / "nope.nii.gz"
    elif kind == "directory":
        p = tmp_path / "dir.nii.gz"
        p.mkdir()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "not_nifti":
        p.write_text("hello, I am not an image")
    elif kind == "bad_gzip":
        p.write_bytes(gzip.compress(b"x" * 400))
    elif kind == "truncated":
        _save(tmp_path / "ok.nii.gz", img)
        p.write_bytes((tmp_path / "ok.nii.gz").read_bytes()[:400])
    elif kind == "2d":
        _save(p, img[:, :, 0])
    elif kind == "4d":
        _save(p, np.stack([img, img], axis=-1))
    elif kind == "zeros":
        _save(p, np.zeros_like(img))
    elif kind == "nan":
        _save(p, np.full_like(img, np.nan))
    elif kind == "tiny_spacing":
        _save(p, img, np.diag([1e-4, 1.0, 1.0, 1.0]))
    elif kind == "singular":
        a = np.eye(4)
        a[:3, 0] = a[:3, 1]
        _save(p, img, a)
    elif kind == "complex":
        _save(p, img.astype(np.complex64))
    elif kind == "small_field":
        _save(p, img[:20, :20, :20])
    elif kind == "huge":
        hdr = nib.Nifti1Header()
        hdr.set_data_shape((2048, 2048, 2048))
        hdr.set_data_dtype(np.uint8)
        p = tmp_path / "huge.nii"
        p.write_bytes(hdr.binaryblock + b"\0" * 4)
    with pytest.raises(ScanError) as info:
        load_scan(p)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_partial_nan_is_zeroed(tmp_path: Path) -> None:
    img, _ = phantom((52, 52, 52))
    img[0, 0, 0] = np.nan
    loaded = load_scan(_save(tmp_path / "n.nii.gz", img))
    assert np.isfinite(np.asarray(loaded.dataobj)).all()


def test_mask_on_another_grid_is_refused(scan_file, tmp_path: Path) -> None:
    img = load_scan(scan_file[0])
    other = _save(tmp_path / "m.nii.gz", np.ones((16, 16, 16), np.uint8))
    with pytest.raises(ScanError, match="grid"):
        load_mask(other, img)
    empty = _save(tmp_path / "e.nii.gz", np.zeros(img.shape, np.uint8), img.affine)
    with pytest.raises(ScanError, match="empty"):
        load_mask(empty, img)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"

    def boom(p: Path) -> None:
        p.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert list(tmp_path.iterdir()) == []


def test_stem() -> None:
    assert stem("/a/b/sub-01_T1.nii.gz") == "sub-01_T1"
    assert stem("x.nii") == "x"
