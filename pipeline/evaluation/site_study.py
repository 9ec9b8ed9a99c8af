"""Evaluation under domain shift: simulated other sites, other modalities, real cases.

Held-out test subjects (``evaluate.sites.scans`` of them, healthy scan and lesioned copy) are
turned into each variant of :mod:`pipeline.evaluation.sites` and scored from their native files
by the scoring service, exactly as ``score`` does (prepared again, harmonised, the primary
map on the native grid);
``unmodified`` scores the same subjects as they are, the reference each variant is read
against. Per variant: flagged mL per healthy scan (all of it, and in the brain's outer
``evaluate.rim_mm``), how many healthy scans are called abnormal or out of distribution, and
the lesioned copies' pooled AUPRC / AUROC / best Dice. ``evaluate.domain_cases`` (scans of
another modality) report the domain verdict the model must give them.
"""

from __future__ import annotations

import logging
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from pipeline.cohort.store import Case, Manifest, Part
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.evaluation import metrics
from pipeline.evaluation.sites import SiteScan, make_variant
from pipeline.inference.scorer import Scorer
from pipeline.io.errors import ScanError, one_line
from pipeline.io.nifti import load_mask, load_scan
from pipeline.scoring.domain import ABNORMAL, OUT_OF_DISTRIBUTION
from pipeline.scoring.result import ScanResult
from pipeline.space.grid import voxel_volume_ml

log = logging.getLogger(__name__)
UNMODIFIED = "unmodified"
DECIMALS = 4
NOT_SCORED = "not scored"  # a domain case that failed before the model saw it (no verdict)


def score_native(scorer: Scorer, scan: SiteScan) -> tuple[ScanResult, np.ndarray]:
    """The primary result of a native scan and the native brain mask it was scored in."""
    scored = scorer.score_prepared(scorer.prepare(scan.img, scan.mask))
    return scored.primary, scored.brain


def outcome(result: ScanResult, brain: np.ndarray, img: nib.Nifti1Image,
            truth: np.ndarray | None, rim_mm: float) -> dict[str, Any]:
    """Flagged volume (all, outside the lesions, in the outer rim) and the verdict."""
    voxel_ml = voxel_volume_ml(img.affine)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    rim = brain & (ndimage.distance_transform_edt(brain, sampling=zooms) <= rim_mm)
    flagged = result.mask > 0
    outside = flagged & ~truth if truth is not None else flagged
    domain = result.domain.to_json() if result.domain is not None else {}
    return {"flagged_ml": round(float(flagged.sum()) * voxel_ml, 2),
            "flagged_outside_lesions_ml": round(float(outside.sum()) * voxel_ml, 2),
            "flagged_rim_ml": round(float((outside & rim).sum()) * voxel_ml, 2),
            "scan_score": round(result.scan_score, DECIMALS), "verdict": result.verdict,
            "domain": {k: v["value"] for k, v in domain.get("statistics", {}).items()}}


def _subjects(params: Params, manifest: Manifest) -> list[tuple[Case, Case | None]]:
    """(healthy case, its lesioned copy) of the first ``evaluate.sites.scans`` subjects."""
    lesioned = {c.subject: c for c in manifest[Part.TEST_LESION]}
    pairs = [(c, lesioned.get(c.subject or c.id)) for c in manifest[Part.TEST_HEALTHY]]
    n = params.evaluate.sites.scans
    return pairs[:n] if n else pairs


def _site_scan(case: Case, lesion: bool) -> SiteScan:
    img = load_scan(case.image)
    mask = load_mask(case.mask, img) if case.mask else None
    truth = load_mask(case.truth, img) if lesion else None
    return SiteScan(img, mask, truth)


class VariantOutcomes:
    """One variant's healthy outcomes and pooled lesioned maps."""

    def __init__(self) -> None:
        self.healthy: list[dict[str, Any]] = []
        self.pooled = metrics.Pooled()
        self.failed: list[str] = []

    def add(self, scorer: Scorer, scan: SiteScan, rim_mm: float) -> None:
        result, brain = score_native(scorer, scan)
        row = outcome(result, brain, scan.img, scan.truth, rim_mm)
        if scan.truth is None:
            self.healthy.append(row)
            return
        truth = scan.truth.astype(bool)
        region = brain | truth
        self.pooled.add_lesioned(result.heatmap[region], truth[region],
                                 result.mask[region] > 0, result.scan_score,
                                 metrics.lesions_found(result.mask, truth))

    def summary(self, n_thresholds: int) -> dict[str, Any]:
        h = self.healthy
        out: dict[str, Any] = {"n_healthy": len(h), "failed": self.failed}
        if h:
            out.update({
                "healthy_flagged_ml_mean": round(float(np.mean([r["flagged_ml"] for r in h])), 2),
                "healthy_flagged_ml_max": max(r["flagged_ml"] for r in h),
                "healthy_flagged_rim_ml_mean": round(float(np.mean(
                    [r["flagged_rim_ml"] for r in h])), 2),
                "healthy_abnormal": sum(r["verdict"] == ABNORMAL for r in h),
                "healthy_out_of_distribution": sum(r["verdict"] == OUT_OF_DISTRIBUTION
                                                   for r in h),
                "healthy_scans": h})
        if self.pooled.scores:
            m = self.pooled.summary(n_thresholds)
            out.update({k: m[k] for k in ("voxel_auroc", "voxel_auprc", "best_dice",
                                          "lesion_detection_rate")})
            out["n_lesioned"] = len(self.pooled.scores)
        return out


def evaluate_sites(scorer: Scorer, params: Params, manifest: Manifest
                   ) -> dict[str, Any]:
    """Every variant of ``evaluate.sites`` (and ``unmodified``) on the same test subjects."""
    ev = params.evaluate
    pairs = _subjects(params, manifest)
    out = {}
    for name in [UNMODIFIED, *ev.sites.variants]:
        acc = VariantOutcomes()
        for healthy, lesioned in pairs:
            for case, is_lesion in ((healthy, False), (lesioned, True)):
                if case is None:
                    continue
                try:
                    scan = _site_scan(case, is_lesion)
                    if name != UNMODIFIED:
                        scan = make_variant(name, scan, ev.sites)
                    acc.add(scorer, scan, ev.rim_mm)
                except ScanError as exc:
                    acc.failed.append(f"{case.id}: {one_line(exc)}")
        out[name] = acc.summary(ev.n_thresholds)
        log.info("site %-13s healthy flagged %s mL (rim %s), abnormal %s, OOD %s; lesioned "
                 "AUPRC %s", name, out[name].get("healthy_flagged_ml_mean"),
                 out[name].get("healthy_flagged_rim_ml_mean"), out[name].get("healthy_abnormal"),
                 out[name].get("healthy_out_of_distribution"), out[name].get("voxel_auprc"))
    return out


def evaluate_domain_cases(scorer: Scorer, params: Params) -> dict[str, Any]:
    """The verdict on each scan of ``evaluate.domain_cases`` (skipped when missing)."""
    out = {}
    for case in params.evaluate.domain_cases:
        image = paths.resolve(case.image, params.root)
        if not image.is_file():
            log.info("domain case %s skipped: %s not found", case.name, image)
            continue
        try:
            img = load_scan(image)
            mask = load_mask(paths.resolve(case.brain_mask, params.root), img) \
                if case.brain_mask else None
            result, brain = score_native(scorer, SiteScan(img, mask, None))
            out[case.name] = outcome(result, brain, img, None, params.evaluate.rim_mm)
        except ScanError as exc:
            out[case.name] = {"verdict": NOT_SCORED, "error": one_line(exc)}
        log.info("domain case %s: %s", case.name, out[case.name]["verdict"])
    return out
