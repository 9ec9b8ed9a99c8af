"""Calibration meets its false-positive rate on unseen healthy maps from the same distribution."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.calibration import fit_calibration
from pipeline.config import ScoringParams
from pipeline.scoring import calibrate_map, threshold_mask

SP = ScoringParams(smoothing_sigma_vox=0.0, std_smoothing_sigma_vox=1.0, std_floor_fraction=0.1,
                   erode_brain_vox=0, min_component_voxels=1, scan_top_voxels=10)


def _healthy(rng: np.random.Generator, shape=(24, 24, 24)) -> np.ndarray:
    # spatially varying mean and spread, like a residual that is larger at edges
    ramp = np.linspace(0.5, 2.0, shape[0])[:, None, None]
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.0) * 3.0
    return (ramp + np.abs(noise) * ramp).astype(np.float32)


def test_threshold_meets_fpr_on_new_healthy_scans() -> None:
    rng = np.random.default_rng(0)
    region = np.ones((24, 24, 24), bool)
    calib = fit_calibration([_healthy(rng) for _ in range(12)], [region] * 12, SP, 0.01, 0.1)
    flagged = [calibrate_map(_healthy(rng), region, calib) > calib.voxel_threshold
               for _ in range(10)]
    fpr = float(np.mean(flagged))
    assert 0.002 < fpr < 0.03, fpr


def test_anomaly_stands_out_after_calibration() -> None:
    rng = np.random.default_rng(1)
    region = np.ones((24, 24, 24), bool)
    calib = fit_calibration([_healthy(rng) for _ in range(8)], [region] * 8, SP, 0.01, 0.1)
    sick = _healthy(rng)
    sick[10:14, 10:14, 10:14] += 10.0
    mask = threshold_mask(calibrate_map(sick, region, calib), calib.voxel_threshold, 8)
    assert mask[10:14, 10:14, 10:14].mean() > 0.9
    assert mask.sum() < 64 * 3


def test_small_components_are_removed() -> None:
    heat = np.zeros((10, 10, 10), np.float32)
    heat[1, 1, 1] = 5.0
    heat[5:8, 5:8, 5:8] = 5.0
    mask = threshold_mask(heat, 1.0, 5)
    assert mask[1, 1, 1] == 0 and mask[5:8, 5:8, 5:8].all()


def test_scan_score_sees_a_small_finding() -> None:
    from pipeline.scoring import scan_score

    region = np.ones((30, 30, 30), bool)
    z = np.zeros((30, 30, 30), np.float32)
    assert scan_score(z, region, 10) == 0.0
    z[:2, :2, :3] = 8.0  # 12 voxels
    assert scan_score(z, region, 10) == 8.0
    assert scan_score(z, region, 20) == 0.0
