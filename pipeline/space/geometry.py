"""Exact conversions between nibabel (RAS+, array index i,j,k) and SimpleITK (LPS, x,y,z).

Example:
    >>> import numpy as np
    >>> img = to_sitk(np.zeros((4, 5, 6), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    >>> img.GetSize(), img.GetSpacing()
    ((4, 5, 6), (2.0, 2.0, 2.0))
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from nibabel.affines import voxel_sizes

from pipeline.io.errors import ScanError

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def to_sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """Wrap a nibabel-ordered array and RAS affine as a SimpleITK image (LPS)."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = voxel_sizes(affine)
    direction = linear / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ScanError("affine has shear; cannot be represented as an oriented grid")
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in (_RAS_TO_LPS @ direction).ravel()))
    img.SetOrigin(tuple(float(v) for v in _RAS_TO_LPS @ np.asarray(affine)[:3, 3]))
    return img


def from_sitk(img: sitk.Image) -> np.ndarray:
    """Array of a SimpleITK image in nibabel (i, j, k) order."""
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0)


def affine_of(img: sitk.Image) -> np.ndarray:
    """RAS affine of a SimpleITK image."""
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _RAS_TO_LPS @ direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = _RAS_TO_LPS @ np.asarray(img.GetOrigin())
    return affine


def resample(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform,
    linear: bool = True,
    default: float = 0.0,
) -> sitk.Image:
    """Resample ``moving`` onto ``reference``'s grid through ``transform`` (fixed → moving)."""
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    return sitk.Resample(moving, reference, transform, interp, default, sitk.sitkFloat32)


def affine_transform_from_json(data: dict[str, list[float]]) -> sitk.AffineTransform:
    tx = sitk.AffineTransform(3)
    tx.SetFixedParameters([float(v) for v in data["fixed_parameters"]])
    tx.SetParameters([float(v) for v in data["parameters"]])
    return tx


def affine_transform_to_json(tx: sitk.Transform) -> dict[str, list[float]]:
    return {
        "parameters": [float(v) for v in tx.GetParameters()],
        "fixed_parameters": [float(v) for v in tx.GetFixedParameters()],
    }


def transform_matrix_ras(tx: sitk.AffineTransform) -> np.ndarray:
    """4×4 RAS matrix of a SimpleITK affine transform (which works in LPS millimetres)."""
    matrix = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(tx.GetCenter(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = np.asarray(tx.GetTranslation()) + centre - matrix @ centre
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip
