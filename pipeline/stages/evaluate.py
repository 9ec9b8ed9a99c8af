"""``vae-anomaly evaluate``: score held-out test scans and measure against ground truth.

Healthy test scans and their lesioned copies are scored exactly as the ``score`` command does
(maps on the native grid); voxels inside the native brain mask are pooled over scans.
Writes ``reports/metrics.json`` and the ROC / PR plot data ``reports/plots/{roc,pr}.csv``;
per-case maps go to ``data/evaluation/`` for the ``report`` stage.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import metrics, paths
from pipeline.config import Params
from pipeline.dataset import load_prepared
from pipeline.modelio import load_model
from pipeline.nifti import atomic_write, load_mask, stem, write_json
from pipeline.outputs import summary, write_outputs
from pipeline.preprocess import native_brain
from pipeline.scoring import score_prepared
from pipeline.stages.prepare import load_manifest

log = logging.getLogger(__name__)


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    def writer(p: Path) -> None:
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["x"])
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, writer)


def run(params: Params) -> dict[str, Any]:
    loaded = load_model(paths.model_dir(params.root))
    manifest = load_manifest(params)
    out_dir = paths.evaluation_dir(params.root)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores, labels, preds = [], [], []
    healthy_scores: list[float] = []
    lesion_scores: list[float] = []
    flagged = brain_voxels = 0
    cases_found = 0
    seconds = []
    for part in ("test_healthy", "test_lesion"):
        for case in manifest[part]:
            t0 = time.perf_counter()
            prepared, native = load_prepared(params, case)
            result = score_prepared(loaded, prepared)
            seconds.append(time.perf_counter() - t0)
            brain = native_brain(prepared)
            info = summary(case["image"], result, loaded, prepared.record,
                           {"score": seconds[-1]})
            info.update({"case": case["id"], "split": part, "truth": case["truth"]})
            write_outputs(out_dir, stem(case["image"]), result, native, info,
                          reconstruction=True)
            if part == "test_healthy":
                healthy_scores.append(result.scan_score)
                flagged += int(result.mask[brain].sum())
                brain_voxels += int(brain.sum())
            else:
                truth = load_mask(case["truth"], native)
                scores.append(result.heatmap[brain])
                preds.append(result.mask[brain] > 0)
                labels.append(truth[brain])
                lesion_scores.append(result.scan_score)
                cases_found += int(bool((result.mask.astype(bool) & truth).any()))
    if not scores:
        raise RuntimeError("no lesioned test scans to evaluate")
    s, y = np.concatenate(scores), np.concatenate(labels)
    summary_curves, roc, pr = metrics.curves(s, y, params.evaluate.curve_points)
    best, best_t = metrics.best_dice(s, y, params.evaluate.n_thresholds)
    pred = np.concatenate(preds)
    result_metrics = {
        "voxel_auroc": summary_curves["auroc"],
        "voxel_auprc": summary_curves["auprc"],
        "best_dice": best,
        "best_dice_threshold": best_t,
        "best_dice_n_thresholds": params.evaluate.n_thresholds,
        "dice_at_calibrated_threshold": metrics.dice(pred, y),
        "calibrated_threshold": loaded.calibration.voxel_threshold if loaded.calibration else None,
        "healthy_voxel_fpr": flagged / max(brain_voxels, 1),
        "scan_auroc": metrics.scan_auroc(healthy_scores, lesion_scores),
        "lesioned_scans_with_detection": cases_found / max(len(lesion_scores), 1),
        "n_test_healthy": len(healthy_scores),
        "n_test_lesion": len(lesion_scores),
        "lesion_voxel_fraction": float(y.mean()),
        "seconds_per_scan": float(np.median(seconds)),
        "model": loaded.meta.get("mlflow", {}),
        "cohort": params.cohort.name,
    }
    reports = paths.reports_dir(params.root)
    write_json(reports / "metrics.json", result_metrics)
    _write_csv(reports / "plots" / "roc.csv", roc)
    _write_csv(reports / "plots" / "pr.csv", pr)
    log.info("AUROC %.3f  AUPRC %.3f  best Dice %.3f  Dice@calib %.3f  healthy FPR %.4f",
             result_metrics["voxel_auroc"], result_metrics["voxel_auprc"], best,
             result_metrics["dice_at_calibrated_threshold"], result_metrics["healthy_voxel_fpr"])
    return result_metrics
