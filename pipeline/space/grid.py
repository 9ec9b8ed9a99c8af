"""Voxel grids: voxel volume, the exact reorientation to RAS and back, and display planes.

A scan's canonical grid is its own grid reoriented to the closest RAS+ layout by an axis
permutation and flips only (no resampling), so every voxel keeps its value; on a canonical
grid array axis 0 runs left → right, axis 1 posterior → anterior, axis 2 inferior → superior,
hence the axis each display plane cuts (:data:`PLANE_AXIS`). Voxel sizes come from
:func:`nibabel.affines.voxel_sizes`.

Example:
    >>> import numpy as np
    >>> flipped = np.diag([-2.0, 2.0, 2.0, 1.0])          # x runs right → left
    >>> data = np.arange(24).reshape(2, 3, 4)
    >>> canon, affine, ornt = to_canonical(data, flipped)
    >>> canon[0, 0, 0] == data[1, 0, 0], affine[0, 0]
    (np.True_, np.float64(2.0))
    >>> bool((from_canonical(canon, ornt) == data).all())
    True
    >>> round(voxel_volume_mm3(flipped), 6), PLANE_AXIS["axial"]
    (8.0, 2)
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations

PLANES = ("axial", "coronal", "sagittal")
PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # canonical (RAS) array axis cut
_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel (mm³) of a grid with this affine."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


MM3_PER_ML = 1000.0


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel (mL) of a grid with this affine."""
    return voxel_volume_mm3(affine) / MM3_PER_ML


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient to the closest RAS layout; return ``(data, affine, orientation)``."""
    ornt = nib.io_orientation(affine)
    canon = orientations.apply_orientation(data, ornt)
    canon_affine = affine @ orientations.inv_ornt_aff(ornt, data.shape)
    return np.ascontiguousarray(canon), canon_affine, ornt


def from_canonical(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo :func:`to_canonical` exactly (no resampling)."""
    back = orientations.ornt_transform(_RAS, np.asarray(ornt, dtype=float))
    return np.ascontiguousarray(orientations.apply_orientation(data, back))
