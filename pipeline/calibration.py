"""Normative calibration on healthy scans: voxel-wise statistics and thresholds.

The voxel-wise mean and standard deviation of the raw score over the calibration scans
(spatially smoothed, the std floored at a fraction of its median) turn raw maps into z-scores.
Thresholds are chosen on leave-one-out z-maps (each scan normalised by the others' statistics)
so they are not fitted to the very scans they are measured on: the voxel threshold is the
``1 - voxel_fpr`` quantile of healthy brain voxels, the scan threshold the ``1 - scan_fpr``
quantile of healthy scan scores.

Example:
    >>> calib = fit_calibration(raw_maps, regions, scoring, 0.01, 0.05)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.config import ScoringParams
from pipeline.modelio import Calibration
from pipeline.scoring import calibrate_map, scan_score

MIN_SCANS = 3


def voxel_statistics(raws: np.ndarray, regions: np.ndarray, sp: ScoringParams
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed voxel-wise mean and floored std of stacked raw maps ``(n, *shape)``."""
    weight = regions.astype(np.float64).sum(0)
    safe = np.maximum(weight, 1.0)
    mean = (raws * regions).sum(0) / safe
    var = (((raws - mean) ** 2) * regions).sum(0) / np.maximum(weight - 1.0, 1.0)
    if sp.std_smoothing_sigma_vox > 0:
        cover = ndimage.gaussian_filter(weight, sp.std_smoothing_sigma_vox) + 1e-6
        mean = ndimage.gaussian_filter(mean * weight, sp.std_smoothing_sigma_vox) / cover
        var = ndimage.gaussian_filter(var * weight, sp.std_smoothing_sigma_vox) / cover
    std = np.sqrt(var)
    inside = weight > 0
    floor = sp.std_floor_fraction * float(np.median(std[inside])) if inside.any() else 1.0
    return mean.astype(np.float32), np.maximum(std, max(floor, 1e-6)).astype(np.float32)


def fit_calibration(raws: list[np.ndarray], regions: list[np.ndarray], sp: ScoringParams,
                    voxel_fpr: float, scan_fpr: float) -> Calibration:
    """Fit statistics on all scans and thresholds on leave-one-out z-maps."""
    if len(raws) < MIN_SCANS:
        raise ValueError(f"calibration needs at least {MIN_SCANS} healthy scans, got {len(raws)}")
    stack = np.stack(raws).astype(np.float64)
    masks = np.stack(regions).astype(bool)
    mean, std = voxel_statistics(stack, masks, sp)
    voxels, scans = [], []
    for i in range(len(raws)):
        keep = np.arange(len(raws)) != i
        loo_mean, loo_std = voxel_statistics(stack[keep], masks[keep], sp)
        loo = Calibration(mean=loo_mean, std=loo_std, voxel_threshold=0.0, scan_threshold=0.0)
        z = calibrate_map(raws[i], masks[i], loo)
        voxels.append(z[masks[i]])
        scans.append(scan_score(z, masks[i], sp.scan_top_voxels))
    voxel_threshold = float(np.quantile(np.concatenate(voxels), 1.0 - voxel_fpr))
    scan_threshold = float(np.quantile(scans, 1.0 - scan_fpr))
    info = {"voxel_fpr": voxel_fpr, "scan_fpr": scan_fpr, "n_scans": len(raws),
            "healthy_scan_scores": [round(s, 4) for s in scans],
            "score": "smoothed |x - x_hat| (posterior mean), voxel-wise z-score"}
    return Calibration(mean=mean, std=std, voxel_threshold=voxel_threshold,
                       scan_threshold=scan_threshold, info=info)
