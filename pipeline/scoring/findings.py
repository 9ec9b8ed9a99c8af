"""Findings: the connected components of a thresholded anomaly mask, described for a reader.

Each component gets its volume (mL), peak and mean score, centroid in native voxel indices,
in the scanner's world coordinates (mm, RAS+) and, through the scan's registration, in MNI152
coordinates, with the hemisphere (from the MNI x coordinate) and the dominant tissue class
from the ICBM152 grey/white matter probability maps that nilearn ships (offline).

Example:
    >>> import numpy as np
    >>> heat = np.zeros((8, 8, 8), np.float32); heat[2:4, 2:4, 2:4] = 5.0
    >>> rows = find_components(heat, heat > 1, np.eye(4))
    >>> rows[0].volume_ml, rows[0].peak, rows[0].centroid_voxel
    (0.008, 5.0, [2.5, 2.5, 2.5])
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.space.geometry import affine_transform_from_json, transform_matrix_ras
from pipeline.space.grid import voxel_volume_ml

_TISSUE_FILES = {"grey matter": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                 "white matter": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
TISSUE_MIN_PROBABILITY = 0.5  # below this for both GM and WM: "CSF or outside GM/WM"


@dataclass
class Finding:
    """One connected component above the calibrated voxel threshold."""

    volume_ml: float
    voxels: int
    peak: float
    mean: float
    centroid_voxel: list[float]
    centroid_mm: list[float]
    peak_voxel: list[int]
    centroid_mni: list[float] | None = None
    hemisphere: str = ""
    tissue: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(**data)


def native_to_mni(record: Any) -> np.ndarray:
    """4×4 matrix: native voxel index → template (MNI152) millimetres, via the registration.

    ``record`` is the scan's :class:`pipeline.preprocess.record.ScanRecord`. The registration maps
    template points to scan points, so the scan's world coordinates go back through its
    inverse.
    """
    template_to_native = transform_matrix_ras(affine_transform_from_json(record.transform))
    return np.linalg.inv(template_to_native) @ np.asarray(record.native_affine, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _tissue_maps() -> dict[str, tuple[np.ndarray, float, np.ndarray]]:
    import nibabel as nib
    import nilearn

    folder = Path(nilearn.__file__).parent / "datasets" / "data"
    out = {}
    for name, file in _TISSUE_FILES.items():
        img = nib.load(folder / file)
        assert isinstance(img, nib.Nifti1Image)
        raw = np.asarray(img.dataobj)  # nilearn ships them as uint8: 255 = probability 1
        scale = float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else 1.0
        out[name] = (raw, scale, np.linalg.inv(img.affine))
    return out


def tissue_probabilities(mni_points: np.ndarray) -> dict[str, float]:
    """Mean ICBM152 grey/white matter probability at MNI points (N×3, mm; nearest voxel)."""
    out = {}
    for name, (prob, scale, world_to_vox) in _tissue_maps().items():
        idx = np.rint(mni_points @ world_to_vox[:3, :3].T + world_to_vox[:3, 3]).astype(int)
        inside = np.all((idx >= 0) & (idx < np.asarray(prob.shape)), axis=1)
        values = np.zeros(len(idx), np.float32)
        values[inside] = prob[tuple(idx[inside].T)] / scale
        out[name] = float(values.mean()) if len(values) else 0.0
    return out


def _tissue_label(probs: dict[str, float]) -> str:
    name, best = max(probs.items(), key=lambda kv: kv[1])
    if best < TISSUE_MIN_PROBABILITY:
        return "CSF or outside GM/WM"
    return f"{name} ({best:.2f})"


def _hemisphere(x_mni: float, midline_mm: float) -> str:
    if abs(x_mni) <= midline_mm:
        return "midline"
    return "left" if x_mni < 0 else "right"  # RAS+: x grows towards the patient's right


def _labelled(mask: np.ndarray) -> Iterator[np.ndarray]:
    """Voxel coordinates of each component of ``mask`` (26-connected)."""
    labels, n = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), bool))
    for idx, sl in enumerate(ndimage.find_objects(labels) if n else [], start=1):
        if sl is not None:
            yield np.argwhere(labels[sl] == idx) + np.array([s.start for s in sl])


def _described(heat: np.ndarray, coords: np.ndarray, affine: np.ndarray) -> Finding:
    values = heat[tuple(coords.T)]
    centroid = coords.mean(0)
    world = affine[:3, :3] @ centroid + affine[:3, 3]
    return Finding(volume_ml=round(float(len(coords)) * voxel_volume_ml(affine), 3),
                   voxels=len(coords), peak=round(float(values.max()), 2),
                   mean=round(float(values.mean()), 2),
                   centroid_voxel=[round(float(v), 1) for v in centroid],
                   centroid_mm=[round(float(v), 1) for v in world],
                   peak_voxel=[int(v) for v in coords[int(np.argmax(values))]])


def _strongest_first(rows: Iterator[Finding]) -> list[Finding]:
    return sorted(rows, key=lambda r: (-r.peak, -r.voxels))


def find_components(heat: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> list[Finding]:
    """Components of ``mask`` on a scan's grid (``affine``: voxel → scanner mm), strongest
    peak first: volume, peak and mean of ``heat`` (the calibrated map), centroid, peak voxel."""
    heat = np.asarray(heat, dtype=np.float32)
    return _strongest_first(_described(heat, c, affine) for c in _labelled(mask))


def find_located(heat: np.ndarray, mask: np.ndarray, record: Any, midline_mm: float,
                 tissue: bool = True) -> list[Finding]:
    """:func:`find_components` on the scan's native grid, each also placed in MNI152 space
    through its registration (``record``: the scan's
    :class:`~pipeline.preprocess.record.ScanRecord`): centroid, hemisphere and, with
    ``tissue``, the dominant ICBM152 tissue class."""
    heat = np.asarray(heat, dtype=np.float32)
    affine = np.asarray(record.native_affine, dtype=np.float64)
    to_mni = native_to_mni(record)
    rows = []
    for coords in _labelled(mask):
        row = _described(heat, coords, affine)
        mni = to_mni[:3, :3] @ coords.mean(0) + to_mni[:3, 3]
        row.centroid_mni = [round(float(v), 1) for v in mni]
        row.hemisphere = _hemisphere(float(mni[0]), midline_mm)
        if tissue:
            points = coords @ to_mni[:3, :3].T + to_mni[:3, 3]
            row.tissue = _tissue_label(tissue_probabilities(points))
        rows.append(row)
    return _strongest_first(iter(rows))
