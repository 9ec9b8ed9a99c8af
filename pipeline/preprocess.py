"""Native scan → template-space network input, recorded so every map can go back.

Steps: canonical (RAS) orientation (an exact axis permutation/flip) → brain mask (given,
already stripped, or extracted with the head atlas) → N4 bias field correction inside the
brain → two-stage affine registration to the template (brain outlines, then anatomy) →
resampling onto the template crop → intensity normalisation inside the brain: the brain's
``lower_percentile``/``upper_percentile`` intensities map to 0/1 (robust to the scanner's
scale and to a few hot voxels), clipped to ``clip``, background 0. Everything needed to
invert the mapping lands in a JSON-serialisable :class:`ScanRecord`.

Example:
    >>> prepared = prepare_scan(load_scan("a.nii.gz"), None, params)   # doctest: +SKIP
    >>> native_map = to_native(prepared.image, prepared.record)         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from nibabel import orientations

from pipeline import geometry, registration
from pipeline.bias import correct_bias
from pipeline.brainmask import derive_brain_mask
from pipeline.config import NormaliseParams, Params, RegistrationParams
from pipeline.nifti import ScanError
from pipeline.template import Template, load_template

if TYPE_CHECKING:
    from pipeline.headatlas import HeadAtlas

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


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
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanRecord:
        return cls(**data)


@dataclass
class PreparedScan:
    """Template-space input and brain mask, plus the native (canonical) arrays."""

    image: np.ndarray
    brain: np.ndarray
    record: ScanRecord
    canonical_image: np.ndarray
    canonical_brain: np.ndarray


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


def native_brain(prepared: PreparedScan) -> np.ndarray:
    """The scan's brain mask on its own native grid."""
    return from_canonical(prepared.canonical_brain.astype(np.uint8),
                          np.asarray(prepared.record.orientation)) > 0


def normalise(image: np.ndarray, brain: np.ndarray, params: NormaliseParams
              ) -> tuple[np.ndarray, float, float]:
    """Map the brain's lower/upper percentiles to 0/1, clip, and zero the background."""
    inside = image[brain]
    lo, hi = np.percentile(inside, [params.lower_percentile, params.upper_percentile])
    if not hi > lo:
        raise ScanError("no intensity contrast inside the brain")
    out = np.clip((image - lo) / (hi - lo), params.clip[0], params.clip[1])
    return np.where(brain, out, 0.0).astype(np.float32), float(lo), float(hi)


def prepare_scan(img: nib.Nifti1Image, mask: np.ndarray | None, params: Params,
                 atlas: HeadAtlas | None = None) -> PreparedScan:
    """Prepare one validated scan (see :func:`pipeline.nifti.load_scan`).

    ``mask`` is the scan's brain mask on its own grid, or ``None`` to derive one (with the
    head ``atlas`` for a scan with skull, when the model has one).

    SimpleITK runs single-threaded: its multi-threaded registration metric sums in a varying
    order, so the transform (and the map) changed in the last bits from run to run; on IXI
    one thread was no slower for a whole ``score`` process (6.1 s vs 6.5 s).
    """
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tpl: Template = load_template(params.template.resolution_mm, params.template.crop_shape)
    data = np.asarray(img.dataobj, dtype=np.float32)
    affine = np.asarray(img.affine, dtype=np.float64)
    canon, canon_affine, ornt = to_canonical(data, affine)
    if mask is not None:
        canon_mask = to_canonical(mask.astype(np.uint8), affine)[0] > 0
        mask_source = "given"
    else:
        canon_mask, mask_source = derive_brain_mask(canon, canon_affine, params, atlas)
    if canon_mask.sum() < 0.01 * canon_mask.size:
        raise ScanError("brain mask covers less than 1% of the image")
    timings["brain_mask"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    corrected, bias_stats = correct_bias(canon, canon_mask, canon_affine,
                                         params.prepare.bias_field)
    timings["bias_field"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tx, moving = registration.register_to_template(corrected, canon_mask, canon_affine, tpl,
                                                   params.prepare.registration, params.seed)
    grid = registration.fixed_side(tpl).mask.image  # the template crop grid
    timings["registration"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    warped = geometry.from_sitk(geometry.resample(moving, grid, tx))
    brain = geometry.from_sitk(geometry.resample(
        geometry.to_sitk(canon_mask.astype(np.float32), canon_affine), grid, tx)) > 0.5
    if not brain.any():
        raise ScanError("registration moved the brain outside the template field of view")
    dice = registration.dice(brain, tpl.brain)
    inside = registration.containment(brain, tpl.brain)
    reg_params = params.prepare.registration
    image, lo, hi = normalise(warped, brain, params.prepare.normalise)
    timings["resample_normalise"] = time.perf_counter() - t0
    record = ScanRecord(
        native_shape=[int(s) for s in data.shape],
        native_affine=affine.tolist(),
        orientation=np.asarray(ornt).tolist(),
        canonical_shape=[int(s) for s in canon.shape],
        canonical_affine=canon_affine.tolist(),
        transform=geometry.affine_transform_to_json(tx),
        template_affine=tpl.affine.tolist(),
        template_shape=list(tpl.shape),
        template_space=tpl.space,
        mask_source=mask_source,
        registration_dice=round(dice, 4),
        registration_containment=round(inside, 4),
        registration_ok=dice >= reg_params.min_dice and inside >= reg_params.min_containment,
        intensity_low=lo,
        intensity_high=hi,
        bias_field=bias_stats,
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
    return PreparedScan(image=image, brain=brain, record=record,
                        canonical_image=canon, canonical_brain=canon_mask)


def require_registration(record: ScanRecord, rp: RegistrationParams) -> None:
    """Raise :class:`ScanError` when the scan's registration failed quality control."""
    if not record.registration_ok:
        raise ScanError(f"registration to the template failed quality control (brain Dice "
                        f"{record.registration_dice:.3f}, min {rp.min_dice}; inside template "
                        f"{record.registration_containment:.3f}, min {rp.min_containment})")


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
