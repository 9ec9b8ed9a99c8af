"""``vae-anomaly evaluate``: every score type and the baselines on the same held-out scans.

Healthy test scans and their lesioned copies are scored exactly as the ``score`` command does
(maps on the native grid, thresholds from the healthy calibration split); voxels inside the
native brain mask are pooled over scans. Each calibrated map of ``scoring.compare`` and the
plain-autoencoder baseline (calibrated here on the same healthy calibration scans) gets the
same metrics. Real lesioned scans of ``evaluate.extra_cases`` are prepared and scored on
their own. Writes ``reports/metrics.json`` (the primary score's metrics at the top level,
``score_types`` with every map, ``extra_cases``), ``reports/score_comparison.csv``, the ROC /
PR plot data ``reports/plots/{roc,pr}.csv`` and the per-case outputs in
``data/evaluation/`` for the ``report`` stage.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.cohort.domain_shift import evaluate_domain_cases, evaluate_sites, outcome
from pipeline.cohort.prepared import evaluation_record, load_prepared
from pipeline.cohort.store import healthy_images, load_manifest
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.config.scoring_schema import ExtraCase
from pipeline.generative.sampling import log_likelihood
from pipeline.io.atomic import atomic_write, write_json
from pipeline.io.nifti import load_mask, load_scan, stem
from pipeline.model.objective import Likelihood
from pipeline.modelstore import tracking
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import LoadedModel, ModelError
from pipeline.preprocess.prepare import prepare_scan
from pipeline.preprocess.record import PreparedScan, native_brain
from pipeline.scoring import metrics
from pipeline.scoring.calibration import fit_calibration, healthy_raw_scores
from pipeline.scoring.maps import calibrated_maps, template_scores, to_result
from pipeline.scoring.outputs import extra_stem, scan_outputs, write_outputs
from pipeline.scoring.result import ScanResult, summarise
from pipeline.space.grid import voxel_volume_mm3

log = logging.getLogger(__name__)
AUTOENCODER = "autoencoder"  # row name of the β = 0 baseline (its residual map)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    def writer(p: Path) -> None:
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["x"])
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, writer)


def _autoencoder(params: Params) -> LoadedModel | None:
    """The β = 0 baseline, calibrated (residual) on the healthy calibration split."""
    folder = paths.autoencoder_dir(params.root)
    if not params.evaluate.autoencoder_baseline:
        return None
    try:
        ae = load_model(folder, require_calibration=False)
    except ModelError as exc:
        log.warning("no autoencoder baseline (%s): run `vae-anomaly train --autoencoder`", exc)
        return None
    sp = dataclasses.replace(params.scoring, score=["residual"], compare=["residual"])
    ae.params = dataclasses.replace(ae.params, scoring=sp)
    raws = healthy_raw_scores(ae, healthy_images(params, load_manifest(params)), {"residual"})
    ae.calibration = fit_calibration(raws, sp, params.calibrate)
    return ae


def _all_maps(loaded: LoadedModel, ae: LoadedModel | None, prepared: PreparedScan,
              compare: list[str]) -> tuple[ScanResult, dict[str, ScanResult]]:
    """The primary result (with reconstructions) and one native result per compared map."""
    calib = loaded.calibrated()
    raw = template_scores(loaded, prepared.image, prepared.brain, {*calib.score, *compare})
    zmaps = calibrated_maps(raw, calib, loaded.params.scoring, compare)
    brain = native_brain(prepared)
    results = {name: to_result(loaded, prepared, raw, name, z, brain)
               for name, z in zmaps.items()}
    if ae is not None:
        ae_raw = template_scores(ae, prepared.image, prepared.brain, {"residual"})
        z = calibrated_maps(ae_raw, ae.calibrated(), ae.params.scoring)["residual"]
        results[AUTOENCODER] = to_result(ae, prepared, ae_raw, "residual", z, brain)
    return results[calib.primary], results


def _case_metrics(results: dict[str, ScanResult], truth: np.ndarray, brain: np.ndarray,
                  voxel_ml: float, n_thresholds: int) -> dict[str, Any]:
    """Every map's metrics on one real lesioned scan."""
    out: dict[str, Any] = {}
    for name, r in results.items():
        pooled = metrics.Pooled()
        pooled.add_lesioned(r.heatmap[brain], truth[brain], r.mask[brain] > 0, r.scan_score,
                            metrics.lesions_found(r.mask, truth))
        m = pooled.summary(n_thresholds)
        out[name] = {k: m[k] for k in ("voxel_auroc", "voxel_auprc", "best_dice",
                                       "dice_at_calibrated_threshold", "lesion_detection_rate",
                                       "n_lesions")}
        out[name].update(flagged_volume_ml=round(float(r.mask.sum()) * voxel_ml, 2),
                         scan_abnormal=bool(r.is_abnormal))
    return out


def _shift_outcome(primary: ScanResult, brain: np.ndarray, img: Any, truth: np.ndarray,
                   rim_mm: float) -> dict[str, Any]:
    """The primary map's flagged volume outside the lesions and in the rim, and verdict."""
    row = outcome(primary, brain, img, truth, rim_mm)
    return {k: row[k] for k in ("flagged_outside_lesions_ml", "flagged_rim_ml", "verdict",
                                "domain")}


def _extra_case(loaded: LoadedModel, ae: LoadedModel | None, case: ExtraCase, root: Path,
                compare: list[str], n_thresholds: int, rim_mm: float
                ) -> dict[str, Any] | None:
    """Metrics of every map on one real lesioned scan (``evaluate.extra_cases``); None when
    its files are not there.

    Its primary outputs go to ``data/evaluation/extra-<case name>*`` for the report stage.
    """
    image, truth_path = paths.resolve(case.image, root), paths.resolve(case.lesion_mask, root)
    if not image.is_file() or not truth_path.is_file():
        log.info("extra case %s skipped: %s not found", case.name, image)
        return None
    img = load_scan(image)
    brain_mask = load_mask(paths.resolve(case.brain_mask, root), img) if case.brain_mask \
        else None
    prepared = prepare_scan(img, brain_mask, loaded.params, loaded.head_atlas, loaded.scale)
    truth = load_mask(truth_path, img)
    t0 = time.perf_counter()
    primary, results = _all_maps(loaded, ae, prepared, compare)
    summary = evaluation_record(summarise(image, primary, loaded, prepared.record,
                                          {"score_all_maps": time.perf_counter() - t0},
                                          primary.warnings),
                                case.image, root, case=case.name, split="extra",
                                truth=case.lesion_mask)  # the paths as the parameters give them
    write_outputs(scan_outputs(paths.evaluation_dir(root), extra_stem(case.name)), primary,
                  img, summary, html=None, images=True)
    voxel_ml = voxel_volume_mm3(img.affine) / 1000.0
    return {"image": case.image, "registration_ok": prepared.record.registration_ok,
            "lesion_volume_ml": round(float(truth.sum()) * voxel_ml, 2),
            **_shift_outcome(primary, native_brain(prepared), img, truth,
                             rim_mm),
            **_case_metrics(results, truth, native_brain(prepared) | truth, voxel_ml,
                            n_thresholds)}


def _loglik(loaded: LoadedModel, params: Params, prepared: PreparedScan) -> dict[str, Any]:
    """IWAE bound of one prepared scan (``generative.iwae_samples``, seeded)."""
    g, m = params.generative, loaded.params.model
    ll = log_likelihood(loaded.vae, Likelihood.of(m),
                        torch.from_numpy(prepared.image), g.iwae_samples, params.seed,
                        g.iwae_batch)
    return {"nats": round(ll.nats, 3), "bits_per_voxel": round(ll.bits_per_voxel, 6),
            "k": ll.k}


class _TestSet:
    """Pooled metrics of every map and the log-likelihoods over the held-out test scans."""

    def __init__(self, loaded: LoadedModel, ae: LoadedModel | None, params: Params) -> None:
        self.loaded, self.ae, self.params = loaded, ae, params
        self.compare = [c for c in params.scoring.compare if c in loaded.calibrated().thresholds]
        self.pooled: dict[str, metrics.Pooled] = {}
        self.seconds: list[float] = []
        self.healthy_ll: dict[str, float] = {}
        self.out_of_distribution = {"test_healthy": 0, "test_lesion": 0}
        self.lesioned_ll: dict[str, tuple[str, float]] = {}

    def add(self, case: dict[str, Any], part: str) -> None:
        """Score one test case exactly as ``score`` would, keep its outputs, pool its maps."""
        t0 = time.perf_counter()
        prepared, native = load_prepared(self.params, case)
        primary, results = _all_maps(self.loaded, self.ae, prepared, self.compare)
        self.seconds.append(time.perf_counter() - t0)
        root = self.params.root
        ll = _loglik(self.loaded, self.params, prepared)
        summary = evaluation_record(
            summarise(case["image"], primary, self.loaded, prepared.record,
                      {"score_all_maps": self.seconds[-1]}, primary.warnings),
            paths.stored(case["image"], root), root, case=case["id"], split=part,
            truth=paths.stored(case["truth"], root), log_likelihood=ll)
        self.out_of_distribution[part] += summary.out_of_distribution
        if part == "test_healthy":
            self.healthy_ll[case.get("subject", case["id"])] = float(ll["nats"])
        else:
            self.lesioned_ll[case["id"]] = (case.get("subject", ""), float(ll["nats"]))
        write_outputs(scan_outputs(paths.evaluation_dir(self.params.root), stem(case["image"])),
                      primary, native, summary, html=None, images=True)
        truth = load_mask(case["truth"], native) if part == "test_lesion" else None
        brain = native_brain(prepared)
        for name, r in results.items():
            acc = self.pooled.setdefault(name, metrics.Pooled())
            if truth is None:
                acc.add_healthy(r.mask[brain] > 0, r.scan_score)
            else:
                acc.add_lesioned(r.heatmap[brain], truth[brain], r.mask[brain] > 0,
                                 r.scan_score, metrics.lesions_found(r.mask, truth))

    def table(self) -> dict[str, dict[str, Any]]:
        """Each map's metrics (the primary one with its curves)."""
        primary, ev = self.loaded.calibrated().primary, self.params.evaluate
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


def _write_reports(params: Params, result: dict[str, Any], table: dict[str, dict[str, Any]],
                   primary: metrics.Pooled) -> None:
    reports = paths.reports_dir(params.root)
    write_json(reports / "metrics.json", result)
    _write_csv(reports / "score_comparison.csv", [
        {"score": name, **{k: v for k, v in row.items() if k not in ("best_dice_threshold",
                                                                     "ci95")},
         **{f"{k}_ci95_{end}": v[i] for k, v in row.get("ci95", {}).items()
            for i, end in enumerate(("low", "high"))}}
        for name, row in table.items()])
    _write_csv(reports / "plots" / "roc.csv", primary.roc)
    _write_csv(reports / "plots" / "pr.csv", primary.pr)
    log.info("log-likelihood (IWAE, K=%d): %s", params.generative.iwae_samples,
             result["log_likelihood"])
    for name, row in table.items():
        log.info("%-20s AUROC %.3f  AUPRC %.3f  best Dice %.3f  Dice@calib %.3f  FPR %.4f  "
                 "scan AUROC %.3f  lesions found %.2f", name, row["voxel_auroc"],
                 row["voxel_auprc"], row["best_dice"], row["dice_at_calibrated_threshold"],
                 row["healthy_voxel_fpr"], row["scan_auroc"], row["lesion_detection_rate"])


def run(params: Params) -> dict[str, Any]:
    loaded = load_model(paths.model_dir(params.root))
    calib = loaded.calibrated()
    manifest = load_manifest(params)
    paths.evaluation_dir(params.root).mkdir(parents=True, exist_ok=True)
    tests = _TestSet(loaded, _autoencoder(params), params)
    for part in ("test_healthy", "test_lesion"):
        for case in manifest[part]:
            tests.add(case, part)
    table = tests.table()
    ev = params.evaluate
    extra = {c.name: found for c in ev.extra_cases
             if (found := _extra_case(loaded, tests.ae, c, params.root, tests.compare,
                                      ev.n_thresholds, ev.rim_mm)) is not None}
    primary = tests.pooled[calib.primary]
    result = {
        **table[calib.primary], "score": calib.primary,
        "best_dice_n_thresholds": ev.n_thresholds, "threshold": calib.threshold,
        "voxel_fpr_target": params.calibrate.voxel_fpr,
        "n_test_healthy": len(manifest["test_healthy"]),
        "n_test_lesion": len(manifest["test_lesion"]),
        "lesion_voxel_fraction": float(np.concatenate(primary.labels).mean()),
        "model": loaded.meta.get("mlflow", {}), "cohort": params.cohort.name,
        "score_types": table, "extra_cases": extra,
        "out_of_distribution": tests.out_of_distribution,
        "rim_mm": ev.rim_mm,
        "sites": evaluate_sites(loaded, params, manifest),
        "domain_cases": evaluate_domain_cases(loaded, params),
        "log_likelihood": metrics.loglik_summary(tests.healthy_ll, tests.lesioned_ll,
                                                 params.generative.iwae_samples),
    }
    _write_reports(params, result, table, primary)
    # wall-clock time goes to MLflow only: DVC outputs stay the same in every clone
    _log_to_mlflow(params, loaded, {**result, "seconds_per_scan_all_maps":
                                    float(np.median(tests.seconds))})
    return result


def _log_to_mlflow(params: Params, loaded: LoadedModel, result: dict[str, Any]) -> None:
    """Headline and per-site test metrics on the training run of the evaluated weights (the
    run of every version calibrated from them), found by its weights digest."""
    run_id = tracking.training_run(params.mlflow.experiment,
                                   str(loaded.meta.get("weights_sha256")))
    if run_id is None:
        log.warning("no MLflow run trained these weights: test metrics not logged to MLflow")
        return
    flat = {k: v for k, v in result.items() if isinstance(v, int | float)}
    for name, site in result["sites"].items():
        for key in ("voxel_auprc", "best_dice", "healthy_flagged_ml_mean"):
            if key in site:
                flat[f"site_{name}_{key}"] = site[key]
    tracking.log_evaluation(run_id, flat)
