"""Affine registration of a native brain to the template brain (SimpleITK), in two stages.

1. **Outlines**: the brain masks, smoothed, are aligned by mean squares from a start that
   matches their centres of mass and volumes (an isotropic scale). This fixes pose and size
   robustly, whatever the scan's orientation, field of view or voxel size.
2. **Anatomy**: Mattes mutual information between the brains' intensities refines the
   affine so that ventricles, sulci and the cerebellum line up.

Each stage runs over a pyramid given in mm (``*_levels_mm``); at each level both images are
block-averaged to about that spacing and smoothed with σ = half of it, so a 1 mm and a 2 mm
scan are treated alike. Quality is the Dice of the registered brain mask with the template
brain mask, and the share of the registered brain inside the template brain; a scan below
``min_dice`` or ``min_containment`` is flagged as a failure.

Example:
    >>> import numpy as np
    >>> a = np.zeros((10, 10, 10), bool); a[2:6] = True
    >>> b = np.zeros_like(a); b[3:7] = True
    >>> round(dice(a, b), 3), round(containment(a, b), 3)
    (0.75, 0.75)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from pipeline.config.data_schema import RegistrationParams
from pipeline.space import geometry
from pipeline.space.template import Template


def pyramid_level(image: sitk.Image, level_mm: float) -> sitk.Image:
    """Block-average ``image`` to about ``level_mm`` spacing, then smooth with σ = level / 2."""
    factors = [max(1, round(level_mm / s)) for s in image.GetSpacing()]
    img = sitk.Cast(image, sitk.sitkFloat32)
    if any(f > 1 for f in factors):
        img = sitk.BinShrink(img, factors)
    return sitk.SmoothingRecursiveGaussian(img, level_mm / 2.0)


def moments_start(fixed_mask: sitk.Image, moving_mask: sitk.Image) -> sitk.AffineTransform:
    """Centre-of-mass translation plus the isotropic scale that matches the mask volumes."""
    stats = []
    for m in (fixed_mask, moving_mask):
        f = sitk.LabelShapeStatisticsImageFilter()
        f.Execute(sitk.Cast(m > 0, sitk.sitkUInt8))
        if not f.HasLabel(1):
            raise ValueError("empty mask")
        stats.append((np.asarray(f.GetCentroid(1)), f.GetPhysicalSize(1)))
    (c_fixed, v_fixed), (c_moving, v_moving) = stats
    tx = sitk.AffineTransform(3)
    tx.SetCenter([float(v) for v in c_fixed])
    tx.SetMatrix([float(v) for v in (np.eye(3) * (v_moving / v_fixed) ** (1.0 / 3.0)).ravel()])
    tx.SetTranslation([float(v) for v in c_moving - c_fixed])
    return tx


def _method(params: RegistrationParams, iterations: int, seed: int
            ) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # SimpleITK takes a sampling seed of 0 to mean "from the wall clock": never pass 0
    reg.SetMetricSamplingPercentage(params.sampling_fraction, seed % (2**31 - 1) or 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=params.learning_rate, minStep=params.min_step,
        numberOfIterations=iterations, relaxationFactor=params.relaxation)
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


class Pyramid:
    """An image and its :func:`pyramid_level` s, each computed once and then kept."""

    def __init__(self, image: sitk.Image) -> None:
        self.image = image
        self._levels: dict[tuple[float, bool], sitk.Image] = {}

    def level(self, level_mm: float, binary: bool = False) -> sitk.Image:
        """The level at ``level_mm``; ``binary``: thresholded at 0.5 (for a mask)."""
        key = (level_mm, binary)
        if key not in self._levels:
            img = pyramid_level(self.image, level_mm)
            self._levels[key] = img > 0.5 if binary else img
        return self._levels[key]


@dataclass(frozen=True)
class FixedSide:
    """The template side of a registration: brain mask and masked T1, with their pyramids."""

    mask: Pyramid
    brain: Pyramid

    @classmethod
    def of(cls, image: sitk.Image, mask: sitk.Image) -> FixedSide:
        brain = sitk.Mask(sitk.Cast(image, sitk.sitkFloat32), sitk.Cast(mask, sitk.sitkUInt8))
        return cls(mask=Pyramid(mask), brain=Pyramid(brain))


_SIDES: dict[int, tuple[Template, FixedSide]] = {}


def fixed_side(template: Template) -> FixedSide:
    """The template's :class:`FixedSide`, built once per template object (every scan reuses it)."""
    held = _SIDES.get(id(template))
    if held is None or held[0] is not template:
        side = FixedSide.of(geometry.to_sitk(template.image, template.affine),
                            geometry.to_sitk(template.brain.astype(np.uint8), template.affine))
        held = _SIDES[id(template)] = (template, side)
    return held[1]


def optimise_mi(fixed: Pyramid, moving: sitk.Image, transform: sitk.AffineTransform,
                levels_mm: Sequence[float], iterations: int, params: RegistrationParams,
                seed: int = 0, fixed_mask: Pyramid | None = None) -> None:
    """Refine ``transform`` in place by Mattes MI over a pyramid of ``levels_mm``."""
    for level in levels_mm:
        reg = _method(params, iterations, seed)
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.histogram_bins)
        if fixed_mask is not None:
            reg.SetMetricFixedMask(fixed_mask.level(level, binary=True))
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(fixed.level(level), pyramid_level(moving, level))


def register_affine(
    moving: sitk.Image,
    moving_mask: sitk.Image,
    fixed: sitk.Image | FixedSide,
    fixed_mask: sitk.Image | None,
    params: RegistrationParams,
    seed: int = 0,
) -> sitk.AffineTransform:
    """Return the affine transform mapping template (fixed) points to native (moving) points.

    ``fixed`` is the template T1 with ``fixed_mask`` its brain mask, or a prepared
    :class:`FixedSide` (then ``fixed_mask`` is ``None``).
    """
    if not isinstance(fixed, FixedSide):
        assert fixed_mask is not None
        fixed = FixedSide.of(fixed, fixed_mask)
    transform = moments_start(fixed.mask.image, moving_mask)
    for level in params.outline_levels_mm:
        reg = _method(params, params.outline_iterations, seed)
        reg.SetMetricAsMeanSquares()
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(fixed.mask.level(level), pyramid_level(moving_mask, level))
    moving_brain = sitk.Mask(sitk.Cast(moving, sitk.sitkFloat32),
                             sitk.Cast(moving_mask, sitk.sitkUInt8))
    optimise_mi(fixed.brain, moving_brain, transform, params.anatomy_levels_mm,
                params.anatomy_iterations, params, seed, fixed_mask=fixed.mask)
    return transform


def register_to_template(data: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                         template: Template, params: RegistrationParams, seed: int = 0
                         ) -> tuple[sitk.AffineTransform, sitk.Image]:
    """Register a scan's brain (arrays on the grid ``affine``) to the template brain.

    Returns the transform (template points → scan points) and the scan as a SimpleITK
    image, ready for resampling onto the template grid.
    """
    moving = geometry.to_sitk(data.astype(np.float32, copy=False), affine)
    moving_mask = geometry.to_sitk(mask.astype(np.uint8), affine)
    return register_affine(moving, moving_mask, fixed_side(template), None, params, seed), moving


def containment(inner: np.ndarray, outer: np.ndarray) -> float:
    """Fraction of ``inner`` that lies inside ``outer`` (1.0 when ``inner`` is empty).

    Unlike Dice it does not penalise a subject mask that is tighter than the template's
    (nilearn's MNI152 brain mask is generous), but it drops when a registration is off.
    """
    inner, outer = np.asarray(inner, bool), np.asarray(outer, bool)
    total = int(inner.sum())
    return 1.0 if total == 0 else int(np.logical_and(inner, outer).sum()) / total


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total
