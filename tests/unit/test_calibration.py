"""Calibration meets its false-positive rate on unseen healthy maps from the same distribution."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from pipeline.config.params import load_params
from pipeline.modelstore.types import Calibration, Normative, Thresholds
from pipeline.scoring.calibration import NormativeSums, fit_calibration, voxel_statistics
from pipeline.scoring.maps import calibrate_map, calibrated_maps, scan_score, threshold_mask
from pipeline.scoring.raw import RawScores

SP = dataclasses.replace(load_params().scoring, score=["residual"], compare=["residual"],
                         smoothing_sigma_vox=0.0, std_smoothing_sigma_vox=1.0,
                         std_floor_fraction=0.1, erode_brain_vox=0, min_component_voxels=1,
                         median_filter_vox=0, scan_statistic="top_voxels", scan_top_voxels=10)


def _fit(maps: list[np.ndarray], region: np.ndarray, voxel_fpr: float) -> Calibration:
    scans = [RawScores(maps={"residual": m}, region=region) for m in maps]
    return fit_calibration(scans, SP, dataclasses.replace(
        load_params().calibrate, voxel_fpr=voxel_fpr, scan_fpr=0.1))


def _healthy(rng: np.random.Generator, shape=(24, 24, 24)) -> np.ndarray:
    # spatially varying mean and spread, like a residual that is larger at edges
    ramp = np.linspace(0.5, 2.0, shape[0])[:, None, None]
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.0) * 3.0
    return (ramp + np.abs(noise) * ramp).astype(np.float32)


def test_threshold_meets_fpr_on_new_healthy_scans() -> None:
    rng = np.random.default_rng(0)
    region = np.ones((24, 24, 24), bool)
    calib = _fit([_healthy(rng) for _ in range(12)], region, 0.01)
    flagged = [calibrate_map(_healthy(rng), region, "residual", calib) > calib.threshold
               for _ in range(10)]
    fpr = float(np.mean(flagged))
    assert 0.002 < fpr < 0.03, fpr


def test_anomaly_stands_out_after_calibration() -> None:
    rng = np.random.default_rng(1)
    region = np.ones((24, 24, 24), bool)
    calib = _fit([_healthy(rng) for _ in range(8)], region, 0.01)
    sick = _healthy(rng)
    sick[10:14, 10:14, 10:14] += 10.0
    mask = threshold_mask(calibrate_map(sick, region, "residual", calib),
                          calib.threshold, 8)
    assert mask[10:14, 10:14, 10:14].mean() > 0.9
    assert mask.sum() < 64 * 3


def test_small_components_are_removed() -> None:
    heat = np.zeros((10, 10, 10), np.float32)
    heat[1, 1, 1] = 5.0
    heat[5:8, 5:8, 5:8] = 5.0
    mask = threshold_mask(heat, 1.0, 5)
    assert mask[1, 1, 1] == 0 and mask[5:8, 5:8, 5:8].all()


def test_scan_score_sees_a_small_finding() -> None:
    raw = RawScores(maps={}, region=np.ones((30, 30, 30), bool), negative_elbo=123.0)
    z = np.zeros((30, 30, 30), np.float32)
    assert scan_score(z, raw, SP) == 0.0
    z[:2, :2, :3] = 8.0  # 12 voxels
    assert scan_score(z, raw, SP) == 8.0
    assert scan_score(z, raw, dataclasses.replace(SP, scan_top_voxels=20)) == 0.0
    elbo = dataclasses.replace(SP, scan_statistic="elbo")
    assert scan_score(z, raw, elbo) == 123.0
    assert scan_score(z, raw, elbo, primary=False) == 8.0  # compared maps: always top voxels


def test_leave_one_out_sums_match_the_statistics_of_the_others() -> None:
    rng = np.random.default_rng(0)
    raws = [rng.random((16, 16, 16)).astype(np.float32) for _ in range(5)]
    zz, yy, xx = np.mgrid[:16, :16, :16]
    inside = ((zz - 7.5) ** 2 + (yy - 7.5) ** 2 + (xx - 7.5) ** 2) < 6.5**2
    regions = [inside] * 5
    sums = NormativeSums(raws, regions)
    sums.add(raws[0], regions[0], -1.0)
    raw_sp = dataclasses.replace(SP, std_smoothing_sigma_vox=0.0)
    for sp in (SP, raw_sp):
        loo, direct = sums.statistics(sp), voxel_statistics(raws[1:], regions[1:], sp)
        np.testing.assert_allclose(loo.mean, direct.mean, atol=1e-5)
        np.testing.assert_allclose(loo.std, direct.std, atol=1e-5)
    direct = voxel_statistics(raws[1:], regions[1:], raw_sp)
    np.testing.assert_allclose(direct.mean[inside], np.mean(raws[1:], 0)[inside], atol=1e-5)
    np.testing.assert_allclose(direct.std[inside],
                               np.maximum(np.std(raws[1:], 0, ddof=1)[inside],
                                          0.1 * np.median(direct.std[inside])), atol=1e-5)


def test_calibrate_map_one_and_two_sided() -> None:
    region = np.ones((2, 2, 2), bool)
    stats = {"residual": Normative(np.full((2, 2, 2), 1.0, np.float32),
                                   np.full((2, 2, 2), 0.5, np.float32)),
             "intensity_normative": Normative(np.full((2, 2, 2), 1.0, np.float32),
                                              np.full((2, 2, 2), 0.5, np.float32))}
    calib = Calibration(score=["residual"], stats=stats, thresholds={})
    raw = np.full((2, 2, 2), 0.0, np.float32)
    assert (calibrate_map(raw, region, "residual", calib) == 0).all()          # below: 0
    assert (calibrate_map(raw, region, "intensity_normative", calib) == 2).all()  # |z|
    assert (calibrate_map(raw + 3, region, "intensity", calib) == 3).all()    # not normative


def test_thresholds_meet_the_false_positive_rate_on_healthy_scans() -> None:
    rng = np.random.default_rng(1)
    scans = [RawScores(maps={"residual": rng.random((16, 16, 16)).astype(np.float32),
                             "elbo_grad": rng.random((16, 16, 16)).astype(np.float32)},
                       region=np.ones((16, 16, 16), bool)) for _ in range(8)]
    sp2 = dataclasses.replace(SP, score=["residual", "elbo_grad"], compare=["residual"])
    cp = load_params().calibrate
    calib = fit_calibration(scans, sp2, cp)
    assert set(calib.thresholds) == {"residual+elbo_grad", "residual"}
    assert calib.primary == "residual+elbo_grad"
    flagged = [calibrated_maps(s, calib, sp2)[calib.primary][s.region] > calib.threshold
               for s in scans]
    rate = float(np.mean(np.concatenate(flagged)))
    assert rate <= 3 * cp.voxel_fpr  # statistics fitted on these scans: close to the target
    th = calib.thresholds["residual"]
    assert isinstance(th, Thresholds) and len(th.healthy_scan_scores) == 8


