"""N4 bias field correction (SimpleITK), fitted coarsely inside the brain, applied at full size.

The multiplicative field is smooth, so it is fitted on the scan block-averaged to about
``fit_spacing_mm`` (a few thousand brain voxels) and then evaluated on the full grid: the
cost is a fraction of a second instead of several seconds. The default B-spline is one
cubic span (``levels: 1``, ``control_points: 4``): finer fields also absorb anatomy (deep
grey matter, the cortex) differently per subject, which widened the healthy intensity
spread across IXI subjects instead of narrowing it.

Example:
    >>> import numpy as np
    >>> from pipeline.config.data_schema import BiasFieldParams
    >>> bp = BiasFieldParams(enabled=True, fit_spacing_mm=8.0, levels=1, iterations=50,
    ...     control_points=4, convergence=0.001)
    >>> grid = np.meshgrid(*[np.linspace(-1, 1, 40)] * 3, indexing="ij")
    >>> brain = sum(g ** 2 for g in grid) < 0.6
    >>> biased = np.where(brain, 100.0 * np.exp(0.3 * grid[0]), 0.0).astype(np.float32)
    >>> corrected, stats = correct_bias(biased, brain, np.diag([3.0, 3.0, 3.0, 1.0]),
    ...                                 bp)
    >>> spread = lambda v: float(np.std(np.log(v[brain])))
    >>> spread(corrected) < 0.5 * spread(biased), stats["log_bias_p99"] > stats["log_bias_p1"]
    (True, True)
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from pipeline.config.data_schema import BiasFieldParams
from pipeline.space import geometry

_FLOOR_FRACTION = 1e-3  # intensities are floored at this share of the brain's 99th percentile


def correct_bias(data: np.ndarray, brain: np.ndarray, affine: np.ndarray,
                 params: BiasFieldParams) -> tuple[np.ndarray, dict[str, float]]:
    """Divide ``data`` by the N4 field fitted inside ``brain``; return it and field statistics.

    Returns the input unchanged (and empty statistics) when correction is disabled.
    """
    if not params.enabled:
        return data, {}
    ceiling = float(np.percentile(data[brain], 99)) if brain.any() else 0.0
    if ceiling <= 0:
        return data, {}
    positive = np.maximum(data, _FLOOR_FRACTION * ceiling).astype(np.float32)
    image = geometry.to_sitk(positive, affine)
    mask = geometry.to_sitk(brain.astype(np.uint8), affine)
    factors = [max(1, round(params.fit_spacing_mm / s)) for s in image.GetSpacing()]
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([params.iterations] * params.levels)
    n4.SetNumberOfControlPoints([params.control_points] * 3)
    n4.SetConvergenceThreshold(params.convergence)
    small_mask = sitk.BinShrink(sitk.Cast(mask, sitk.sitkFloat32), factors) > 0.5
    n4.Execute(sitk.BinShrink(image, factors), small_mask)
    log_bias = geometry.from_sitk(n4.GetLogBiasFieldAsImage(image))
    log_bias = log_bias - float(np.median(log_bias[brain]))  # keep the brain's median level
    corrected = (data / np.exp(log_bias)).astype(np.float32)
    p1, p99 = np.percentile(log_bias[brain], [1, 99])
    return corrected, {"log_bias_p1": round(float(p1), 4), "log_bias_p99": round(float(p99), 4)}
