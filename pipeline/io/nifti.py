"""NIfTI input validation and NIfTI output.

Every command that reads a scan goes through :func:`load_scan`, which refuses what cannot be
scored with a :class:`~pipeline.io.errors.ScanError` whose message is one line; NIfTI outputs
go through :func:`write_nifti`, atomically, on the grid (affine and header codes) given.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "sub-01_T1.nii.gz"
    >>> data = np.zeros((60, 60, 60), np.float32); data[20:40, 20:40, 20:40] = 1
    >>> _ = write_nifti(path, data, np.diag([1.0, 1.0, 1.0, 1.0]))
    >>> load_scan(path).shape, stem(path)
    ((60, 60, 60), 'sub-01_T1')
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes

from pipeline.io.atomic import atomic_write
from pipeline.io.errors import ScanError, one_line, shown

MAX_VOXELS = 512**3
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
MIN_SHAPE = 8
MIN_EXTENT_MM = 50.0  # a field of view narrower than this along any axis cannot hold a brain


def stem(path: str | Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _check_header(img: nib.Nifti1Image) -> tuple[int, ...]:
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ScanError(f"expected a 3D image, got {len(img.shape)}D with shape {img.shape}")
    if min(shape) < MIN_SHAPE:
        raise ScanError(f"image too small: shape {shape} (each axis needs >= {MIN_SHAPE} voxels)")
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise ScanError(f"image too large: shape {shape} exceeds {MAX_VOXELS} voxels")
    dtype = img.get_data_dtype()
    if dtype.kind == "c" or dtype.names is not None or dtype.kind not in "uif":
        raise ScanError(f"unsupported voxel type {dtype}")
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)):
        raise ScanError("affine is missing or not finite")
    spacing = voxel_sizes(affine)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise ScanError(f"implausible voxel size {tuple(round(float(s), 4) for s in spacing)} mm")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * float(np.prod(spacing)):
        raise ScanError("affine is singular")
    return shape


def _open(path: str | Path) -> tuple[nib.Nifti1Image, tuple[int, ...]]:
    """Open a NIfTI file and validate its header (no voxel data read yet)."""
    p = Path(path)
    if not p.exists():
        raise ScanError("file not found")
    if p.is_dir():
        raise ScanError("is a directory, not a NIfTI file")
    if not os.access(p, os.R_OK):
        raise ScanError("permission denied")
    if p.stat().st_size == 0:
        raise ScanError("file is empty")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises many types for broken files
        reason = str(exc).replace(str(p), shown(p.name))  # the path is already on the line
        raise ScanError(f"not a readable NIfTI file ({one_line(Exception(reason))})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ScanError(f"not a NIfTI image ({type(img).__name__})")
    _check_stored_pixdim(p, type(img.header))
    return img, _check_header(img)


def _check_stored_pixdim(path: Path, header_class: type[nib.Nifti1Header]) -> None:
    """Refuse a qform-only header with a zero (or NaN) voxel size, which nibabel would
    silently turn into 1 mm (it fixes the header it returns, so the stored one is read
    again)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as fh:
            raw = header_class.from_fileobj(fh, check=False)
    except Exception as exc:
        raise ScanError(f"unreadable NIfTI header ({one_line(exc)})") from exc
    if int(raw["sform_code"]) == 0 and not np.all(np.abs(np.asarray(raw["pixdim"][1:4])) > 0):
        raise ScanError("voxel size in the header is 0 along an axis: the qform is not "
                        "invertible")


def _read(img: nib.Nifti1Image, shape: tuple[int, ...]) -> np.ndarray:
    try:
        return np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise ScanError(f"truncated or corrupt image data ({one_line(exc)})") from exc


def load_scan(path: str | Path, warnings: list[str] | None = None) -> nib.Nifti1Image:
    """Load and validate a 3D NIfTI scan; return it as float32 with its header and affine.

    A few non-finite voxels (NaN/Inf, e.g. left by another tool's resampling) are set to 0
    and counted in ``warnings``; a scan with no finite voxel is refused.

    Raises:
        ScanError: the file is missing, unreadable, not NIfTI, not 3D, empty or not finite.
    """
    img, shape = _open(path)
    extent = voxel_sizes(img.affine) * np.asarray(shape, dtype=np.float64)
    if float(extent.min()) < MIN_EXTENT_MM:
        raise ScanError(f"field of view {tuple(round(float(e), 1) for e in extent)} mm is too "
                        f"small for a brain scan (each axis needs >= {MIN_EXTENT_MM:g} mm)")
    data = _read(img, shape)
    finite = np.isfinite(data)
    if not finite.any():
        raise ScanError("image has no finite values (all NaN/Inf)")
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        data = np.where(finite, data, 0.0).astype(np.float32)
        if warnings is not None:
            warnings.append(f"{bad} non-finite voxel(s) (NaN/Inf, {100 * bad / finite.size:.2g} "
                            "% of the image) were read as 0")
    if float(data.max()) == float(data.min()):
        raise ScanError("image is constant (e.g. all zero)")
    out = nib.Nifti1Image(data, img.affine, header=img.header)
    out.set_data_dtype(np.float32)
    return out


def load_mask(path: str | Path, reference: nib.Nifti1Image, what: str = "brain mask"
              ) -> np.ndarray:
    """Load a binary mask (voxels > 0.5) that must lie on ``reference``'s grid.

    ``what`` names the mask in error messages.
    """
    name = Path(path).name
    try:
        img, shape = _open(path)
        if shape != reference.shape or not np.allclose(img.affine, reference.affine, atol=1e-3):
            raise ScanError("is not on the scan's grid")
        mask = np.nan_to_num(_read(img, shape)) > 0.5
    except ScanError as exc:
        raise ScanError(f"{what} {name}: {exc}") from exc
    if not mask.any():
        raise ScanError(f"{what} {name}: mask is empty")
    return mask


def read_array(path: str | Path, dtype: Any = np.float32) -> np.ndarray:
    """Voxel array of a NIfTI file the pipeline wrote itself (no validation)."""
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=dtype)  # type: ignore[attr-defined]


def write_nifti(target: str | Path, data: np.ndarray, affine: np.ndarray,
                header: nib.Nifti1Header | None = None, dtype: Any = np.float32) -> Path:
    """Write ``data`` on the grid ``affine`` (header fields kept, scaling reset)."""
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine, header=hdr)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1.0, 0.0)
    if hdr is not None:  # keep the input's qform/sform codes exactly
        img.set_qform(affine, code=int(hdr["qform_code"]) or 1)
        img.set_sform(affine, code=int(hdr["sform_code"]) or 1)
    return atomic_write(target, lambda p: nib.save(img, str(p)))
