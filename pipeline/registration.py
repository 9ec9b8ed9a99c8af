"""Affine registration of a native brain to the template brain (SimpleITK, Mattes MI).

The moving image is the scan's brain (masked), initialised from the brain masks' centres of
mass, then optimised over three resolution levels. Quality is the Dice of the registered brain
mask with the template brain mask and the fraction of the registered brain inside the template
brain; a scan below ``min_dice`` or ``min_containment`` is flagged as a failure.

Example:
    >>> tx = register_affine(native, native_mask, fixed, fixed_mask, params)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from pipeline import geometry
from pipeline.config import RegistrationParams
from pipeline.template import Template


def _masked(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    return sitk.Mask(sitk.Cast(image, sitk.sitkFloat32), sitk.Cast(mask, sitk.sitkUInt8))


def register_affine(
    moving: sitk.Image,
    moving_mask: sitk.Image,
    fixed: sitk.Image,
    fixed_mask: sitk.Image,
    params: RegistrationParams,
    seed: int = 0,
) -> sitk.AffineTransform:
    """Return the affine transform mapping template (fixed) points to native (moving) points."""
    moving_brain = _masked(moving, moving_mask)
    fixed_brain = _masked(fixed, fixed_mask)
    init = sitk.CenteredTransformInitializer(
        sitk.Cast(fixed_mask, sitk.sitkFloat32),
        sitk.Cast(moving_mask, sitk.sitkFloat32),
        sitk.AffineTransform(3),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    transform = sitk.AffineTransform(init)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.histogram_bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(params.sampling_fraction, seed)
    reg.SetMetricFixedMask(sitk.Cast(fixed_mask, sitk.sitkUInt8))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=params.learning_rate,
        minStep=params.min_step,
        numberOfIterations=params.iterations,
        relaxationFactor=params.relaxation,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(params.shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(params.smoothing_sigmas_mm))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(fixed_brain, moving_brain)
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
    fixed = geometry.to_sitk(template.image, template.affine)
    fixed_mask = geometry.to_sitk(template.brain.astype(np.uint8), template.affine)
    return register_affine(moving, moving_mask, fixed, fixed_mask, params, seed), moving


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
