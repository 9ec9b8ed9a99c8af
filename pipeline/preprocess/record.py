"""How a scan was prepared, and the exact way back: template-space arrays → native grid.

:class:`ScanRecord` holds the native and canonical grids, the registration transform and the
template grid of one prepared scan (JSON-serialisable, saved next to every prepared case);
:func:`to_native` maps any template-space array back onto the scan's own grid (shape, axis
order and affine) and :func:`to_template` maps a native array (e.g. a lesion mask) into the
template crop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.space import geometry
from pipeline.space.grid import from_canonical, to_canonical


@dataclass
class ScanRecord:
    """How one scan was prepared; enough to map template-space arrays back to its grid."""

    native_shape: list[int]
    native_affine: list[list[float]]
    orientation: list[list[float]]
    canonical_shape: list[int]
    canonical_affine: list[list[float]]
    transform: dict[str, list[float]]
    template_affine: list[list[float]]
    template_shape: list[int]
    template_space: str
    mask_source: str
    registration_dice: float
    registration_containment: float
    registration_ok: bool
    intensity_low: float
    intensity_high: float
    bias_field: dict[str, float] = field(default_factory=dict)
    harmonisation_landmarks: list[float] = field(default_factory=list)  # the scan's own
    resolution_sigma_mm: list[float] = field(default_factory=list)  # resolution matching
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanRecord:
        return cls(**data)


WALL_CLOCK = "timings_s"  # the record's field that data/prepared never holds


def without_timings(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """A record's JSON as ``data/prepared`` keeps it (no wall-clock time) and its timings."""
    rest = dict(data)
    return rest, rest.pop(WALL_CLOCK, {})


@dataclass
class PreparedScan:
    """Template-space input and brain mask, plus the native (canonical) arrays."""

    image: np.ndarray
    brain: np.ndarray
    record: ScanRecord
    canonical_image: np.ndarray
    canonical_brain: np.ndarray


def native_brain(prepared: PreparedScan) -> np.ndarray:
    """The scan's brain mask on its own native grid."""
    return from_canonical(prepared.canonical_brain.astype(np.uint8),
                          np.asarray(prepared.record.orientation)) > 0


def to_canonical_grid(template_array: np.ndarray, record: ScanRecord, linear: bool = True
                      ) -> np.ndarray:
    """Resample a template-space array onto the scan's canonical (RAS) native grid."""
    ref = geometry.to_sitk(np.zeros(record.canonical_shape, np.uint8),
                           np.asarray(record.canonical_affine))
    moving = geometry.to_sitk(np.asarray(template_array, dtype=np.float32),
                              np.asarray(record.template_affine))
    inverse = geometry.affine_transform_from_json(record.transform).GetInverse()
    return geometry.from_sitk(geometry.resample(moving, ref, inverse, linear=linear))


def to_native(template_array: np.ndarray, record: ScanRecord, linear: bool = True) -> np.ndarray:
    """Map a template-space array back onto the scan's own grid (shape and axis order)."""
    canon = to_canonical_grid(template_array, record, linear=linear)
    return from_canonical(canon, np.asarray(record.orientation))


def to_template(native_array: np.ndarray, record: ScanRecord, linear: bool = True) -> np.ndarray:
    """Map a native-grid array (e.g. a lesion mask) into the template crop."""
    canon = to_canonical(np.asarray(native_array, dtype=np.float32),
                         np.asarray(record.native_affine))[0]
    moving = geometry.to_sitk(canon, np.asarray(record.canonical_affine))
    ref = geometry.to_sitk(np.zeros(record.template_shape, np.uint8),
                           np.asarray(record.template_affine))
    tx = geometry.affine_transform_from_json(record.transform)
    return geometry.from_sitk(geometry.resample(moving, ref, tx, linear=linear))
