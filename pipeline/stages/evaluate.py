"""``vae-anomaly evaluate``: every score type and the baselines on the same held-out scans.

Healthy test scans and their lesioned copies are scored exactly as the ``score`` command does
(maps on the native grid, thresholds from the healthy calibration split); voxels inside the
native brain mask are pooled over scans. Each calibrated map of ``scoring.compare`` and the
plain-autoencoder baseline (calibrated here on the same healthy calibration scans) gets the
same metrics. Real lesioned scans of ``evaluate.extra_cases`` are prepared and scored on
their own. Writes ``reports/metrics.json`` (``extra_cases`` first, the real lesion cases,
then the primary score's metrics at the top level and ``score_types`` with every map),
``reports/score_comparison.csv``, the ROC / PR plot data ``reports/plots/{roc,pr}.csv`` and
the per-case outputs in ``data/evaluation/`` for the ``report`` stage.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipeline.cohort.store import Part, load_manifest
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.evaluation import metrics
from pipeline.evaluation.site_study import evaluate_domain_cases, evaluate_sites
from pipeline.evaluation.testset import HeldOutSet, autoencoder_baseline
from pipeline.io.atomic import write_csv, write_json
from pipeline.modelstore import tracking
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import LoadedModel

log = logging.getLogger(__name__)


def _write_reports(params: Params, result: dict[str, Any], table: dict[str, dict[str, Any]],
                   primary: metrics.Pooled) -> None:
    reports = paths.reports_dir(params.root)
    write_json(reports / "metrics.json", result)
    write_csv(reports / "score_comparison.csv", [
        {"score": name, **{k: v for k, v in row.items() if k not in ("best_dice_threshold",
                                                                     "ci95")},
         **{f"{k}_ci95_{end}": v[i] for k, v in row.get("ci95", {}).items()
            for i, end in enumerate(("low", "high"))}}
        for name, row in table.items()])
    write_csv(reports / "plots" / "roc.csv", primary.roc)
    write_csv(reports / "plots" / "pr.csv", primary.pr)
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
    tests = HeldOutSet(loaded, autoencoder_baseline(params), params)
    for part in (Part.TEST_HEALTHY, Part.TEST_LESION):
        for case in manifest[part]:
            tests.add(case, part)
    table = tests.table()
    ev = params.evaluate
    extra = {c.name: found for c in ev.extra_cases
             if (found := tests.extra_case(c)) is not None}
    primary = tests.pooled[calib.primary]
    result = {  # real pathology first: what the synthetic-lesion figures stand in for
        "extra_cases": extra, **table[calib.primary], "score": calib.primary,
        "best_dice_n_thresholds": ev.n_thresholds, "threshold": calib.threshold,
        "voxel_fpr_target": params.calibrate.voxel_fpr,
        "n_test_healthy": len(manifest[Part.TEST_HEALTHY]),
        "n_test_lesion": len(manifest[Part.TEST_LESION]),
        "lesion_voxel_fraction": float(np.concatenate(primary.labels).mean()),
        "model": loaded.meta.get("mlflow", {}), "cohort": params.cohort.name,
        "score_types": table,
        "out_of_distribution": tests.out_of_distribution,
        "rim_mm": ev.rim_mm,
        "sites": evaluate_sites(tests.scorer, params, manifest),
        "domain_cases": evaluate_domain_cases(tests.scorer, params),
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
