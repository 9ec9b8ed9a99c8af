"""The held-out test set and the real lesion cases, scored through the scoring service.

Each test case (healthy scan or lesioned copy) and each real lesion case of
``evaluate.extra_cases`` is scored by :meth:`~pipeline.inference.scorer.Scorer.score_case`
exactly as ``score`` scores a new scan, with every compared map and the plain-autoencoder
baseline beside the primary one; its outputs go to ``data/evaluation/`` for the report stage.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.cohort.store import Case, Part, healthy_images, load_manifest
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.config.scoring_schema import ExtraCase
from pipeline.evaluation import metrics
from pipeline.evaluation.cases import evaluation_record, load_prepared
from pipeline.evaluation.site_study import outcome
from pipeline.generative.sampling import log_likelihood
from pipeline.inference.options import ScoreOptions
from pipeline.inference.scorer import Scorer
from pipeline.io.nifti import load_mask, load_scan, stem
from pipeline.model.objective import Likelihood
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import LoadedModel, ModelError
from pipeline.preprocess.prepare import Prepared
from pipeline.preprocess.record import PreparedScan
from pipeline.scoring.calibration import fit_calibration, healthy_raw_scores
from pipeline.scoring.outputs import extra_stem, scan_outputs
from pipeline.scoring.result import ScanResult
from pipeline.space.grid import voxel_volume_ml

log = logging.getLogger(__name__)
AUTOENCODER = "autoencoder"  # row name of the β = 0 baseline (its residual map)
CASE_METRICS = ("voxel_auroc", "voxel_auprc", "best_dice", "dice_at_calibrated_threshold",
                "lesion_detection_rate", "n_lesions")
SHIFT_KEYS = ("flagged_outside_lesions_ml", "flagged_rim_ml", "verdict", "domain")


def autoencoder_baseline(params: Params) -> Scorer | None:
    """The β = 0 baseline, calibrated (residual) on the healthy calibration split."""
    if not params.evaluate.autoencoder_baseline:
        return None
    try:
        ae = load_model(paths.autoencoder_dir(params.root), require_calibration=False)
    except ModelError as exc:
        log.warning("no autoencoder baseline (%s): run `vae-anomaly train --autoencoder`", exc)
        return None
    sp = dataclasses.replace(params.scoring, score=["residual"], compare=["residual"])
    ae.params = dataclasses.replace(ae.params, scoring=sp)
    raws = healthy_raw_scores(ae, healthy_images(params, load_manifest(params)), {"residual"})
    ae.calibration = fit_calibration(raws, sp, params.calibrate)
    return Scorer(ae)


class HeldOutSet:
    """Scores test cases into ``data/evaluation``; pools every map's metrics and keeps the
    log-likelihoods of the held-out test scans."""

    def __init__(self, model: LoadedModel, ae: Scorer | None, params: Params) -> None:
        self.scorer, self.ae, self.params = Scorer(model), ae, params
        self.model = model
        self.compare = tuple(c for c in params.scoring.compare
                             if c in model.calibrated().thresholds)
        self.options = ScoreOptions(out=paths.evaluation_dir(params.root), report=False)
        self.pooled: dict[str, metrics.Pooled] = {}
        self.seconds: list[float] = []
        self.healthy_ll: dict[str, float] = {}
        self.out_of_distribution = {str(Part.TEST_HEALTHY): 0, str(Part.TEST_LESION): 0}
        self.lesioned_ll: dict[str, tuple[str, float]] = {}

    def _maps(self, source: str | Path, got: Prepared, name: str, stored: str,
              **record: Any) -> tuple[ScanResult, dict[str, ScanResult], np.ndarray, Any]:
        """Score and write one case (its record naming the scan ``stored``, as the manifest
        or the parameters do); its primary result, every map (the baseline's too), the
        native brain mask and the summary."""
        root = self.params.root
        case = self.scorer.score_case(
            source, got, scan_outputs(self.options.out, name), self.options, self.compare,
            restate=lambda s: evaluation_record(s, stored, root, **record), images=True)
        maps = dict(case.scored.maps)
        if self.ae is not None:
            maps[AUTOENCODER] = self.ae.score_prepared(got.prepared).primary
        return case.scored.primary, maps, case.scored.brain, case.summary

    def add(self, case: Case, part: Part) -> None:
        """Score one test case exactly as ``score`` would, keep its outputs, pool its maps."""
        root = self.params.root
        t0 = time.perf_counter()
        got = load_prepared(self.params, case)
        ll = self._loglik(got.prepared)
        _, maps, brain, summary = self._maps(
            case.image, got, stem(case.image), stored=paths.stored(case.image, root),
            case=case.id, split=str(part), truth=paths.stored(case.truth, root),
            log_likelihood=ll)
        self.seconds.append(time.perf_counter() - t0)
        self.out_of_distribution[part] += summary.out_of_distribution
        if part == Part.TEST_HEALTHY:
            self.healthy_ll[case.subject or case.id] = float(ll["nats"])
        else:
            self.lesioned_ll[case.id] = (case.subject, float(ll["nats"]))
        truth = load_mask(case.truth, got.img) if part == Part.TEST_LESION else None
        for name, r in maps.items():
            acc = self.pooled.setdefault(name, metrics.Pooled())
            if truth is None:
                acc.add_healthy(r.mask[brain] > 0, r.scan_score)
            else:
                acc.add_lesioned(r.heatmap[brain], truth[brain], r.mask[brain] > 0,
                                 r.scan_score, metrics.lesions_found(r.mask, truth))

    def _loglik(self, prepared: PreparedScan) -> dict[str, Any]:
        """IWAE bound of one prepared scan (``generative.iwae_samples``, seeded)."""
        g = self.params.generative
        ll = log_likelihood(self.model.vae, Likelihood.of(self.model.params.model),
                            torch.from_numpy(prepared.image), g.iwae_samples, self.params.seed,
                            g.iwae_batch)
        return {"nats": round(ll.nats, 3), "bits_per_voxel": round(ll.bits_per_voxel, 6),
                "k": ll.k}

    def table(self) -> dict[str, dict[str, Any]]:
        """Each map's metrics (the primary one with its curves)."""
        primary, ev = self.model.calibrated().primary, self.params.evaluate
        if primary not in self.pooled or not self.pooled[primary].scores:
            raise RuntimeError("no lesioned test scans to evaluate")
        table = {}
        for name, acc in self.pooled.items():
            row: dict[str, Any] = dict(acc.summary(ev.n_thresholds,
                                                  ev.curve_points if name == primary else 0))
            if ev.bootstrap_samples:
                row["ci95"] = acc.intervals(ev.bootstrap_samples, ev.bootstrap_bins,
                                            self.params.seed)
            table[name] = row
        return table

    def extra_case(self, case: ExtraCase) -> dict[str, Any] | None:
        """Metrics of every map on one real lesioned scan (``evaluate.extra_cases``); None
        when its files are not there. Its primary outputs go to
        ``data/evaluation/extra-<case name>*`` for the report stage."""
        root, ev = self.params.root, self.params.evaluate
        image = paths.resolve(case.image, root)
        truth_path = paths.resolve(case.lesion_mask, root)
        if not image.is_file() or not truth_path.is_file():
            log.info("extra case %s skipped: %s not found", case.name, image)
            return None
        img = load_scan(image)
        brain_mask = load_mask(paths.resolve(case.brain_mask, root), img) if case.brain_mask \
            else None
        prepared = self.model.preprocessor.prepare_scan(img, brain_mask)
        truth = load_mask(truth_path, img)
        primary, maps, brain, _ = self._maps(
            image, Prepared(img, prepared, {}), extra_stem(case.name), stored=case.image,
            case=case.name, split="extra", truth=case.lesion_mask)  # paths as given
        voxel_ml = voxel_volume_ml(img.affine)
        shift = outcome(primary, brain, img, truth, ev.rim_mm)
        return {"image": case.image, "registration_ok": prepared.record.registration_ok,
                "lesion_volume_ml": round(float(truth.sum()) * voxel_ml, 2),
                **{k: shift[k] for k in SHIFT_KEYS},
                **_case_metrics(maps, truth, brain | truth, voxel_ml, ev.n_thresholds)}


def _case_metrics(results: dict[str, ScanResult], truth: np.ndarray, brain: np.ndarray,
                  voxel_ml: float, n_thresholds: int) -> dict[str, Any]:
    """Every map's metrics on one real lesioned scan."""
    out: dict[str, Any] = {}
    for name, r in results.items():
        pooled = metrics.Pooled()
        pooled.add_lesioned(r.heatmap[brain], truth[brain], r.mask[brain] > 0, r.scan_score,
                            metrics.lesions_found(r.mask, truth))
        m = pooled.summary(n_thresholds)
        out[name] = {k: m[k] for k in CASE_METRICS}
        out[name].update(flagged_volume_ml=round(float(r.mask.sum()) * voxel_ml, 2),
                         scan_abnormal=bool(r.is_abnormal))
    return out
