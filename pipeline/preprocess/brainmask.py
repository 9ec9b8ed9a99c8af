"""Brain masks for scans that arrive without one.

An already skull-stripped scan (a compact foreground smaller than a head) is used as it is:
its foreground is the mask (source ``"stripped"``). A scan with skull is registered to the
model's head atlas, whose brain probability map warped back is the mask (``"atlas"``, see
:mod:`pipeline.preprocess.headatlas`). Without an atlas (a model trained on stripped scans only), an
eroded head mask drives an affine registration to the template brain, and the template
brain mask warped back and refined by intensity is the mask (``"derived"``, less exact).

Example:
    >>> import numpy as np
    >>> grid = np.meshgrid(*[np.linspace(-1, 1, 60)] * 3, indexing="ij")
    >>> stripped = np.where(sum(g ** 2 for g in grid) < 0.5, 100.0, 0.0)  # a bare brain
    >>> is_skull_stripped(stripped, np.array([2.0, 2.0, 2.0]), max_volume_ml=2200.0)
    True
    >>> bool((stripped_foreground(stripped) == (stripped > 0)).all())
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from nibabel.affines import voxel_sizes
from scipy import ndimage
from skimage.filters import threshold_otsu

from pipeline.preprocess.headatlas import extract_brain
from pipeline.preprocess.morphology import ball, foreground, largest_component

if TYPE_CHECKING:
    from pipeline.preprocess.prepare import Preprocessor

_TISSUE_FRACTION_OF_OTSU = 0.5  # voxels darker than this share of the Otsu level are not tissue


def background_value(data: np.ndarray) -> float:
    """The constant background of a stripped scan: 0 or the minimum, whichever is commoner.

    (Bias-corrected scans can hold a few negative voxels inside the brain, so the minimum
    alone is not the background.)
    """
    low = float(data.min())
    return 0.0 if np.count_nonzero(data == 0.0) >= np.count_nonzero(data == low) else low


def stripped_foreground(data: np.ndarray) -> np.ndarray:
    """Largest connected non-background region, holes filled."""
    fg = largest_component(data != background_value(data))
    return np.asarray(ndimage.binary_fill_holes(fg))


def _volume_ml(mask: np.ndarray, spacing: np.ndarray) -> float:
    return float(mask.sum()) * float(np.prod(spacing)) / 1000.0


def is_skull_stripped(data: np.ndarray, spacing: np.ndarray, max_volume_ml: float) -> bool:
    """True when the non-background region is small enough to be a brain, not a head."""
    return _volume_ml(stripped_foreground(data), spacing) <= max_volume_ml


def derive_brain_mask(data: np.ndarray, affine: np.ndarray, pre: Preprocessor
                      ) -> tuple[np.ndarray, str]:
    """Return ``(mask, source)`` for a canonical-orientation scan without a given mask
    (with the head atlas of ``pre`` when it has one).

    ``source`` is ``"stripped"`` (already skull-stripped), ``"atlas"`` or ``"derived"``.
    """
    spacing = voxel_sizes(affine)
    bm, atlas = pre.prepare.brain_mask, pre.head_atlas
    stripped = stripped_foreground(data)
    if _volume_ml(stripped, spacing) <= bm.stripped_max_volume_ml:
        return stripped, "stripped"
    head = foreground(data)
    if atlas is not None:
        mask = extract_brain(data, head, affine, atlas, pre.prepare, pre.seed)
        if mask.any():
            return mask, "atlas"
    rough = largest_component(ndimage.binary_erosion(head, ball(bm.skull_erosion_mm, spacing)))
    if not rough.any():
        rough = head
    return _refine_with_template(data, affine, rough, head, spacing, pre), "derived"


def _refine_with_template(data: np.ndarray, affine: np.ndarray, rough: np.ndarray,
                          head: np.ndarray, spacing: np.ndarray, pre: Preprocessor
                          ) -> np.ndarray:
    from pipeline.preprocess import registration
    from pipeline.space import geometry

    tpl = pre.template
    tx, moving = registration.register_to_template(data, rough, affine, tpl,
                                                   pre.prepare.registration, pre.seed)
    warped = geometry.from_sitk(geometry.resample(
        geometry.to_sitk(tpl.brain.astype(np.float32), tpl.affine), moving, tx.GetInverse()))
    prior = warped > 0.5
    support = ndimage.binary_dilation(prior, ball(pre.prepare.brain_mask.refine_dilation_mm,
                                                   spacing)) & head
    if not prior.any():
        return rough
    tissue = support & (data > threshold_otsu(data[support]) * _TISSUE_FRACTION_OF_OTSU)
    mask = largest_component(ndimage.binary_opening(tissue | (prior & head)))
    return np.asarray(ndimage.binary_fill_holes(mask))
