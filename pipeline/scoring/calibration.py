"""Normative calibration on healthy scans: voxel-wise statistics and thresholds per score.

For every normative score type, the voxel-wise mean and standard deviation of its raw map over
the healthy calibration scans (spatially smoothed, the std floored at a fraction of its
median) turn raw maps into z-scores; this removes the false positives at edges and in
structures the model always reconstructs poorly. Thresholds are chosen on leave-one-out
z-maps (each scan normalised by the statistics of the others) so they are not fitted to the
very scans they are measured on: the voxel threshold is the ``1 - voxel_fpr`` quantile of
healthy brain voxels, the scan threshold the ``1 - scan_fpr`` quantile of healthy scan
scores. One threshold pair is fitted per map: the primary combination and each compared type.
The domain check's healthy ranges (:mod:`pipeline.scoring.domain`) are fitted on the
calibration scans and on ``calibrate.domain.site_versions`` versions of each with another
site's look (:func:`simulated_site_domains`): a scan from another scanner is judged, not
dismissed.

Example:
    >>> from pipeline.config.scoring_schema import (CalibrateParams, DomainParams,
    ...                                             RestorationParams, ScoringParams)
    >>> from pipeline.scoring.raw import RawScores
    >>> sp = ScoringParams(score=["nll", "intensity_normative"], compare=[], residual="abs",
    ...     mc_samples=4, smoothing_sigma_vox=1.0, grad_smoothing_sigma_vox=1.0,
    ...     restoration=RestorationParams(steps=40, step_size=0.5, consistency=0.05),
    ...     std_smoothing_sigma_vox=2.0, std_floor_fraction=0.5, erode_brain_vox=1,
    ...     median_filter_vox=0, min_component_voxels=5, scan_statistic="top_voxels",
    ...     scan_top_voxels=10, precision="auto")
    >>> cp = CalibrateParams(voxel_fpr=0.001, scan_fpr=0.05, domain=DomainParams(tolerance=5.0,
    ...     min_spread_fraction=0.02, site_versions=0, error_ratio=2.0))
    >>> rng = np.random.default_rng(0)
    >>> region = np.ones((8, 8, 8), bool)
    >>> scans = [RawScores(maps={"nll": rng.random((8, 8, 8)).astype(np.float32),
    ...                          "intensity_normative": rng.random((8, 8, 8)).astype(np.float32)},
    ...                    region=region) for _ in range(5)]
    >>> calib = fit_calibration(scans, sp, cp)
    >>> calib.primary, calib.threshold > 0, len(calib.healthy_scan_scores())
    ('nll+intensity_normative', True, 5)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from scipy import ndimage

from pipeline.config.kinds import KINDS
from pipeline.config.scoring_schema import CalibrateParams, ScoringParams
from pipeline.modelstore.types import Calibration, LoadedModel, Normative, Thresholds, map_name
from pipeline.scoring import domain
from pipeline.scoring.maps import calibrated_maps, scan_score, template_scores
from pipeline.scoring.raw import RawScores

MIN_SCANS = 3


class NormativeSums:
    """Per-voxel sums over scans, so leave-one-out statistics cost one subtraction."""

    def __init__(self, raws: list[np.ndarray], regions: list[np.ndarray]) -> None:
        self.w = np.zeros(raws[0].shape)
        self.s1 = np.zeros(raws[0].shape)
        self.s2 = np.zeros(raws[0].shape)
        for r, m in zip(raws, regions, strict=True):
            self.add(r, m, 1.0)

    def add(self, raw: np.ndarray, region: np.ndarray, sign: float) -> None:
        w = region.astype(np.float64)
        r = raw.astype(np.float64) * w
        self.w += sign * w
        self.s1 += sign * r
        self.s2 += sign * r * raw

    def left_out(self, raw: np.ndarray, region: np.ndarray, sp: ScoringParams) -> Normative:
        """The statistics of every scan but the one of ``raw`` / ``region``."""
        self.add(raw, region, -1.0)
        try:
            return self.statistics(sp)
        finally:
            self.add(raw, region, 1.0)

    def statistics(self, sp: ScoringParams) -> Normative:
        w = np.maximum(self.w, 0.0)
        mean = self.s1 / np.maximum(w, 1.0)
        var = np.maximum(self.s2 - w * mean**2, 0.0) / np.maximum(w - 1.0, 1.0)
        if sp.std_smoothing_sigma_vox > 0:
            cover = ndimage.gaussian_filter(w, sp.std_smoothing_sigma_vox) + 1e-6
            mean = ndimage.gaussian_filter(mean * w, sp.std_smoothing_sigma_vox) / cover
            var = ndimage.gaussian_filter(var * w, sp.std_smoothing_sigma_vox) / cover
        std = np.sqrt(var)
        inside = w > 0
        floor = sp.std_floor_fraction * float(np.median(std[inside])) if inside.any() else 1.0
        return Normative(mean.astype(np.float32),
                         np.maximum(std, max(floor, 1e-12)).astype(np.float32))


def voxel_statistics(raws: list[np.ndarray], regions: list[np.ndarray], sp: ScoringParams
                     ) -> Normative:
    """Smoothed voxel-wise mean and floored std of raw maps over healthy scans."""
    return NormativeSums(raws, regions).statistics(sp)


def fit_calibration(scans: list[RawScores], sp: ScoringParams, cp: CalibrateParams,
                    other_sites: Sequence[dict[str, float]] = ()) -> Calibration:
    """Statistics on all ``scans``; thresholds of the primary map and of each type of
    ``sp.compare`` (that the scans have maps of) on leave-one-out z-maps; the domain ranges
    on the scans' domain statistics and those of their simulated ``other_sites``."""
    if len(scans) < MIN_SCANS:
        raise ValueError(f"calibration needs at least {MIN_SCANS} healthy scans, got {len(scans)}")
    compared = [n for n in sp.compare if n in scans[0].maps]
    types = sorted({*sp.score, *compared} & set(scans[0].maps))
    regions = [s.region for s in scans]
    sums = {t: NormativeSums([s.maps[t] for s in scans], regions)
            for t in types if KINDS[t].normative}
    stats = {t: s.statistics(sp) for t, s in sums.items()}
    maps = [*dict.fromkeys([map_name(sp.score), *compared])]
    voxels: dict[str, list[np.ndarray]] = {m: [] for m in maps}
    scan_scores: dict[str, list[float]] = {m: [] for m in maps}
    for scan in scans:
        loo = {t: s.left_out(scan.maps[t], scan.region, sp) for t, s in sums.items()}
        calib = Calibration(score=list(sp.score), stats=loo, thresholds={})
        for m, z in calibrated_maps(scan, calib, sp, compared).items():
            voxels[m].append(z[scan.region])
            scan_scores[m].append(scan_score(z, scan, sp, m == calib.primary))
    thresholds = {m: Thresholds(threshold=float(np.quantile(np.concatenate(voxels[m]),
                                                            1.0 - cp.voxel_fpr)),
                                scan_threshold=float(np.quantile(scan_scores[m],
                                                                 1.0 - cp.scan_fpr)),
                                healthy_scan_scores=[round(v, 4) for v in scan_scores[m]])
                  for m in maps}
    healthy_domain = [s.domain for s in scans] + list(other_sites)
    ranges = domain.fit_ranges(healthy_domain, cp.domain) \
        if all(set(domain.STATISTICS) <= set(d) for d in healthy_domain) else {}
    info = {"voxel_fpr": cp.voxel_fpr, "scan_fpr": cp.scan_fpr, "n_scans": len(scans),
            "domain_tolerance": cp.domain.tolerance,
            "domain_site_versions": len(other_sites),
            "domain_healthy": [{k: round(v, domain.DECIMALS) for k, v in d.items()}
                               for d in healthy_domain],
            "score_types": {t: KINDS[t].description for t in types},
            "units": "voxel-wise z-score against the healthy calibration scans"}
    return Calibration(score=list(sp.score), stats=stats, thresholds=thresholds, info=info,
                       domain=ranges)


def healthy_raw_scores(loaded: LoadedModel, images: Iterable[tuple[np.ndarray, np.ndarray]],
                       kinds: set[str]) -> list[RawScores]:
    """Raw maps of healthy template-space (image, brain) pairs, the images themselves
    dropped (calibration keeps only the maps)."""
    out = []
    for image, brain in images:
        raw = template_scores(loaded, image, brain, kinds)
        out.append(RawScores(maps=raw.maps, region=raw.region,
                             negative_elbo=raw.negative_elbo, domain=raw.domain))
    return out


def simulated_site_domains(loaded: LoadedModel, images: Iterable[tuple[np.ndarray, np.ndarray]],
                           versions: int, seed: int) -> list[dict[str, float]]:
    """Domain statistics of ``versions`` looks of another site per healthy template-space
    (image, brain) pair: the model's own training site simulation
    (:class:`~pipeline.model.sites.SiteSimulator`, ``train.site``) with every transform
    applied, seeded."""
    if versions <= 0:
        return []
    from pipeline.model.sites import SiteSimulator  # MONAI: calibration only, never scoring

    simulate = SiteSimulator(dataclasses.replace(loaded.params.train.site, probability=1.0))
    gen = torch.Generator().manual_seed(seed)
    out = []
    for image, brain in images:
        x = torch.from_numpy(np.where(brain, image, 0.0).astype(np.float32))[None, None]
        for _ in range(versions):
            other = simulate(x, gen)[0, 0].numpy()
            out.append(template_scores(loaded, other, brain, {"residual"}).domain)
    return out
