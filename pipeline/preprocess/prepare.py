"""Native scan → template-space network input, recorded so every map can go back.

Steps: canonical (RAS) orientation (an exact axis permutation/flip) → brain mask (given,
already stripped, or extracted with the head atlas) → N4 bias field correction inside the
brain → a scan finer than the template smoothed to its resolution
(:mod:`pipeline.preprocess.resolution`) → two-stage affine registration to the template
(brain outlines, then anatomy) → resampling onto the template crop → intensity normalisation
inside the brain: the brain's ``lower_percentile``/``upper_percentile`` intensities map to
0/1 (robust to the scanner's scale and to a few hot voxels), clipped to ``clip``, background
0 → harmonisation onto the standard scale learned from the training scans
(:mod:`pipeline.preprocess.harmonise`).
Everything needed to invert the mapping lands in a JSON-serialisable :class:`ScanRecord`.

What a scan is prepared with (template, the ``prepare`` parameters, seed, head atlas,
standard scale) is one frozen :class:`Preprocessor`: a loaded model carries its own, the
``prepare`` stage builds one from the parameters.

Example:
    >>> import numpy as np
    >>> image = np.random.default_rng(0).normal(100, 10, (20, 20, 20)).astype(np.float32)
    >>> brain = np.ones(image.shape, bool); brain[:2] = False
    >>> out, lo, hi = normalise(image, brain, NormaliseParams(1.0, 99.0, [0.0, 1.5]))
    >>> float(out[~brain].max()), round(float(np.mean(out[brain] <= 1.0)), 2)
    (0.0, 0.99)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from pipeline.config.data_schema import NormaliseParams, PrepareParams, RegistrationParams
from pipeline.io.errors import ScanError
from pipeline.io.nifti import load_mask, load_scan
from pipeline.preprocess import registration
from pipeline.preprocess.bias import correct_bias
from pipeline.preprocess.brainmask import derive_brain_mask
from pipeline.preprocess.harmonise import NONE, StandardScale, harmonise
from pipeline.preprocess.record import PreparedScan, ScanRecord
from pipeline.preprocess.resolution import match_resolution
from pipeline.space import geometry
from pipeline.space.grid import to_canonical
from pipeline.space.template import Template

if TYPE_CHECKING:
    from pipeline.config.schema import ModelConfig, Params
    from pipeline.preprocess.headatlas import HeadAtlas


@dataclass(frozen=True, eq=False)
class Preprocessor:
    """How scans are prepared for one model: its template, the ``prepare`` parameters and
    seed it was prepared with, its head atlas (brain extraction of scans with skull; ``None``:
    none) and its standard intensity ``scale`` (:data:`~pipeline.preprocess.harmonise.NONE`
    while ``prepare`` is still learning it)."""

    template: Template
    prepare: PrepareParams
    seed: int
    head_atlas: HeadAtlas | None = None
    scale: StandardScale = NONE

    @classmethod
    def of(cls, params: Params | ModelConfig, template: Template,
           head_atlas: HeadAtlas | None = None, scale: StandardScale = NONE) -> Preprocessor:
        """The preprocessor of ``params`` (its ``prepare`` section and seed)."""
        return cls(template, params.prepare, params.seed, head_atlas, scale)

    def prepare_scan(self, img: nib.Nifti1Image, mask: np.ndarray | None) -> PreparedScan:
        """:func:`prepare_scan` with this preprocessor."""
        return prepare_scan(img, mask, self)

    def prepare_file(self, scan: Path, mask_path: Path | None) -> Prepared:
        """:func:`prepare_file` with this preprocessor."""
        return prepare_file(self, scan, mask_path)


def normalise(image: np.ndarray, brain: np.ndarray, params: NormaliseParams
              ) -> tuple[np.ndarray, float, float]:
    """Map the brain's lower/upper percentiles to 0/1, clip, and zero the background."""
    inside = image[brain]
    lo, hi = np.percentile(inside, [params.lower_percentile, params.upper_percentile])
    if not hi > lo:
        raise ScanError("no intensity contrast inside the brain")
    out = np.clip((image - lo) / (hi - lo), params.clip[0], params.clip[1])
    return np.where(brain, out, 0.0).astype(np.float32), float(lo), float(hi)


def _canonical_brain(canon: np.ndarray, canon_affine: np.ndarray, native_mask: np.ndarray | None,
                     affine: np.ndarray, pre: Preprocessor) -> tuple[np.ndarray, str]:
    """The brain mask on the canonical grid and where it came from (given, or derived)."""
    if native_mask is not None:
        canon_mask, source = to_canonical(native_mask.astype(np.uint8), affine)[0] > 0, "given"
    else:
        canon_mask, source = derive_brain_mask(canon, canon_affine, pre)
    if canon_mask.sum() < 0.01 * canon_mask.size:
        raise ScanError("brain mask covers less than 1% of the image")
    return canon_mask, source


@dataclass
class _Registered:
    tx: Any
    image: np.ndarray       # normalised template-space input
    brain: np.ndarray
    dice: float
    inside: float
    low: float
    high: float


def _register(corrected: np.ndarray, canon_mask: np.ndarray, canon_affine: np.ndarray,
              pre: Preprocessor, timings: dict[str, float]) -> _Registered:
    """Affine registration to the template, resampling onto its crop and normalisation."""
    t0 = time.perf_counter()
    tpl = pre.template
    tx, moving = registration.register_to_template(corrected, canon_mask, canon_affine, tpl,
                                                   pre.prepare.registration, pre.seed)
    grid = registration.fixed_side(tpl).mask.image  # the template crop grid
    timings["registration"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    warped = geometry.from_sitk(geometry.resample(moving, grid, tx))
    brain = geometry.from_sitk(geometry.resample(
        geometry.to_sitk(canon_mask.astype(np.float32), canon_affine), grid, tx)) > 0.5
    if not brain.any():
        raise ScanError("registration moved the brain outside the template field of view")
    image, lo, hi = normalise(warped, brain, pre.prepare.normalise)
    timings["resample_normalise"] = time.perf_counter() - t0
    return _Registered(tx, image, brain, registration.dice(brain, tpl.brain),
                       registration.containment(brain, tpl.brain), lo, hi)


def prepare_scan(img: nib.Nifti1Image, mask: np.ndarray | None, pre: Preprocessor
                 ) -> PreparedScan:
    """Prepare one validated scan (see :func:`pipeline.io.nifti.load_scan`).

    Args:
        img: the scan, validated.
        mask: its brain mask on its own grid, or ``None`` to derive one (with the head atlas
            of ``pre`` for a scan with skull, when there is one).
        pre: the preprocessor; its ``scale`` is applied last (``prepare`` learns the scale
            after preparing the training scans with
            :data:`~pipeline.preprocess.harmonise.NONE`, then applies it with
            :func:`harmonised`).

    Returns:
        The template-space input with the record that maps it back.

    SimpleITK runs single-threaded: its multi-threaded registration metric sums in a varying
    order, so the transform (and the map) changed in the last bits from run to run; one
    thread was no slower for a whole ``score`` process (docs/results, performance).
    """
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tpl: Template = pre.template
    data = np.asarray(img.dataobj, dtype=np.float32)
    affine = np.asarray(img.affine, dtype=np.float64)
    canon, canon_affine, ornt = to_canonical(data, affine)
    canon_mask, mask_source = _canonical_brain(canon, canon_affine, mask, affine, pre)
    timings["brain_mask"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    corrected, bias_stats = correct_bias(canon, canon_mask, canon_affine,
                                         pre.prepare.bias_field)
    sigma = [0.0, 0.0, 0.0]
    if pre.prepare.match_resolution:
        corrected, sigma = match_resolution(corrected, canon_affine, tpl.resolution_mm)
    timings["bias_field"] = time.perf_counter() - t0
    r = _register(corrected, canon_mask, canon_affine, pre, timings)
    reg = pre.prepare.registration
    record = ScanRecord(
        native_shape=[int(s) for s in data.shape], native_affine=affine.tolist(),
        orientation=np.asarray(ornt).tolist(), canonical_shape=[int(s) for s in canon.shape],
        canonical_affine=canon_affine.tolist(),
        transform=geometry.affine_transform_to_json(r.tx),
        template_affine=tpl.affine.tolist(), template_shape=list(tpl.shape),
        template_space=tpl.space, mask_source=mask_source,
        registration_dice=round(r.dice, 4), registration_containment=round(r.inside, 4),
        registration_ok=r.dice >= reg.min_dice and r.inside >= reg.min_containment,
        intensity_low=r.low, intensity_high=r.high, bias_field=bias_stats,
        resolution_sigma_mm=[round(s, 4) for s in sigma],
        timings_s={k: round(v, 3) for k, v in timings.items()})
    return harmonised(PreparedScan(image=r.image, brain=r.brain, record=record,
                                   canonical_image=canon, canonical_brain=canon_mask),
                      pre.scale, pre.prepare.normalise)


def harmonised(prepared: PreparedScan, scale: StandardScale, norm: NormaliseParams
               ) -> PreparedScan:
    """The prepared scan on the standard intensity ``scale``, its landmarks recorded."""
    image, own = harmonise(prepared.image, prepared.brain, scale, norm.clip)
    record = replace(prepared.record, harmonisation_landmarks=own)
    return replace(prepared, image=image, record=record)


def require_registration(record: ScanRecord, rp: RegistrationParams) -> None:
    """Raise :class:`ScanError` when the scan's registration failed quality control."""
    if not record.registration_ok:
        raise ScanError(f"registration to the template failed quality control (brain Dice "
                        f"{record.registration_dice:.3f}, min {rp.min_dice}; inside template "
                        f"{record.registration_containment:.3f}, min {rp.min_containment})")


@dataclass
class Prepared:
    """A scan ready for the model, with what preparing it took and tolerated."""

    img: nib.Nifti1Image
    prepared: PreparedScan
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def prepare_file(pre: Preprocessor, scan: Path, mask_path: Path | None) -> Prepared:
    """Load, validate and prepare one native scan; raise :class:`ScanError` for anything
    wrong with it (registration quality control included)."""
    warnings: list[str] = []
    t0 = time.perf_counter()
    img = load_scan(scan, warnings)
    mask = load_mask(mask_path, img) if mask_path is not None else None
    timings = {"load": time.perf_counter() - t0}
    prepared = prepare_scan(img, mask, pre)
    timings.update(prepared.record.timings_s)
    require_registration(prepared.record, pre.prepare.registration)
    return Prepared(img, prepared, timings, warnings)
