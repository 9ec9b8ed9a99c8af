"""A corpus of broken NIfTI inputs, generated on demand (never stored): each maker writes one
kind of broken file from a good scan. Shared by the ``score`` and ``prepare`` tests."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

Maker = Callable[[Path, nib.Nifti1Image], Path]


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``data`` on ``affine`` as NIfTI (nibabel's own header)."""
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
    """The good scan cut to a third of its bytes."""
    nib.save(good, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return path


def plain_bytes(content: bytes) -> Maker:
    """A maker writing ``content`` verbatim (whatever the file name promises)."""
    def make(path: Path, good: nib.Nifti1Image) -> Path:
        path.write_bytes(content)
        return path
    return make


def _array(fn: Callable[[np.ndarray], np.ndarray]) -> Maker:
    """A maker saving ``fn`` of the good scan's voxels on its grid."""
    def make(path: Path, good: nib.Nifti1Image) -> Path:
        return save(path, fn(np.asarray(good.dataobj, np.float32)), good.affine)
    return make


def _rgb(path: Path, good: nib.Nifti1Image) -> Path:
    rgb = np.zeros(good.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return save(path, rgb, good.affine)


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
    "not_gzip": plain_bytes(b"this is a text file, not gzip"),
    "not_nifti": plain_bytes(b"\x1f\x8b" + b"\x00" * 400),
    "zero_bytes": plain_bytes(b""),
    "random_bytes": plain_bytes(np.random.default_rng(0).bytes(4096)),
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
    "name with\nnewline": plain_bytes(b"not a scan"),
}

# What each kind's error line must say (a fragment of the reason).
REASONS: dict[str, str] = {
    "truncated_gzip": "truncated or corrupt", "not_gzip": "not a readable NIfTI",
    "not_nifti": "not a readable NIfTI", "zero_bytes": "empty",
    "random_bytes": "not a readable NIfTI", "two_d": "3D", "four_d": "3D", "five_d": "3D",
    "all_zero": "constant", "all_nan": "no finite values", "constant": "constant",
    "complex": "voxel type", "tiny_grid": "too small", "far_smaller_than_template":
    "field of view", "huge_dimensions": "too large", "nan_affine": "not finite",
    "singular_affine": "voxel size", "zero_voxel_size": "voxel size",
    "absurd_voxel_size": "voxel size", "zero_pixdim_qform": "qform", "rgb": "voxel type",
    "unreadable_permissions": "permission denied", "name with\nnewline": "not a readable NIfTI",
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
