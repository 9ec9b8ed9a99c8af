"""NIfTI input validation and atomic output writing.

Every command that reads a scan goes through :func:`load_scan`, which refuses what cannot be
scored with a :class:`ScanError` whose message is one line; every output goes through
:func:`atomic_write` so a file is either complete or absent.

Example:
    >>> img = load_scan("sub-01_T1.nii.gz")     # doctest: +SKIP
    >>> img.shape                                # doctest: +SKIP
    (120, 120, 90)
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

MAX_VOXELS = 512**3
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
MIN_SHAPE = 8
TEMP_MARK = ".partial-"  # hidden temp files: .<target name>.partial-XXXX<suffixes>
MIN_EXTENT_MM = 50.0  # a field of view narrower than this along any axis cannot hold a brain


class ScanError(Exception):
    """An input that cannot be processed; ``str()`` is a one-line reason."""


def sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    spacing = voxel_spacing(affine)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise ScanError(f"implausible voxel size {tuple(round(float(s), 4) for s in spacing)} mm")
    if voxel_volume_mm3(affine) < 1e-6 * float(np.prod(spacing)):
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
    extent = voxel_spacing(img.affine) * np.asarray(shape, dtype=np.float64)
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


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), for ``error:`` lines."""
    text = str(exc).strip().splitlines()
    return shown(text[0] if text else type(exc).__name__)[:limit]


def shown(path: str | Path) -> str:
    r"""A path (or text) printable on one line: control characters escaped, unicode kept.

    Example:
        >>> shown("scan\nüber.nii.gz")
        'scan\\nüber.nii.gz'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel size (mm) along each array axis of a grid with this affine."""
    return np.asarray(np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0)))


def voxel_volume_mm3(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


def write_arrays(target: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write numpy arrays as safetensors, atomically.

    safetensors stores each array's raw buffer, so arrays are made C-contiguous first
    (a transposed view would otherwise come back scrambled).
    """
    from safetensors.numpy import save_file

    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return atomic_write(target, lambda p: save_file(contiguous, str(p)))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}", suffix=suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp's 0600 would hide outputs from colleagues
        with open(tmp_path, "rb") as fh:  # on disk before the rename: never a renamed stub
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)  # replaces a planted symlink, never writes through it
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def remove_stale_temps(target: str | Path) -> int:
    """Delete what a killed :func:`atomic_path` left beside ``target`` (its hidden temp file);
    return how many were removed."""
    target = Path(target)
    suffix = "".join(target.suffixes) or ".tmp"
    removed = 0
    for p in target.parent.glob(f".{glob.escape(target.name + TEMP_MARK)}*{glob.escape(suffix)}"):
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


def atomic_write(target: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` then atomically rename the result to ``target``."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def copy_file(src: str | Path, target: str | Path) -> Path:
    """Copy ``src`` to ``target`` atomically (a killed copy leaves no truncated file)."""
    return atomic_write(target, lambda p: shutil.copyfile(src, p))


def write_json(target: str | Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(target, lambda p: p.write_text(text))


def write_text(target: str | Path, text: str) -> Path:
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
