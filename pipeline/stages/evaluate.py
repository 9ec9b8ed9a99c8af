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

from pipeline import metrics, paths
from pipeline.calibration import fit_calibration
from pipeline.config import Params
from pipeline.dataset import load_prepared
from pipeline.generative import log_likelihood
from pipeline.modelio import LoadedModel, ModelError, load_model
from pipeline.nifti import (
    atomic_write,
    load_mask,
    load_scan,
    stem,
    voxel_volume_mm3,
    write_json,
)
from pipeline.objective import Likelihood
from pipeline.outputs import extra_stem, summary, write_outputs
from pipeline.preprocess import PreparedScan, native_brain, prepare_scan
from pipeline.scoring import ScanResult, calibrated_maps, template_scores, to_result
from pipeline.stages.calibrate import healthy_raw_scores
from pipeline.stages.prepare import load_manifest

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
    raws = healthy_raw_scores(params, ae, {"residual"})
    ae.calibration = fit_calibration(raws, sp, params.calibrate)
    return ae


def _all_maps(loaded: LoadedModel, ae: LoadedModel | None, prepared: PreparedScan,
              compare: list[str]) -> tuple[ScanResult, dict[str, ScanResult]]:
    """The primary result (with reconstructions) and one native result per compared map."""
    calib = loaded.calibration
    assert calib is not None
    raw = template_scores(loaded, prepared.image, prepared.brain, {*calib.score, *compare})
    zmaps = calibrated_maps(raw, calib, loaded.params.scoring, compare)
    brain = native_brain(prepared)
    results = {name: to_result(loaded, prepared, raw, name, z, brain)
               for name, z in zmaps.items()}
    if ae is not None:
        assert ae.calibration is not None
        ae_raw = template_scores(ae, prepared.image, prepared.brain, {"residual"})
        z = calibrated_maps(ae_raw, ae.calibration, ae.params.scoring)["residual"]
        results[AUTOENCODER] = to_result(ae, prepared, ae_raw, "residual", z, brain)
    return results[calib.primary], results


def _extra_case(loaded: LoadedModel, ae: LoadedModel | None, case: Any, root: Path,
                compare: list[str], n_thresholds: int) -> dict[str, Any] | None:
    """Metrics of every map on one real lesioned scan (``evaluate.extra_cases``).

    Its primary outputs go to ``data/evaluation/extra-<case name>*`` for the report stage.
    """
    image, truth_path = paths.resolve(case.image, root), paths.resolve(case.lesion_mask, root)
    if not image.is_file() or not truth_path.is_file():
        log.info("extra case %s skipped: %s not found", case.name, image)
        return None
    img = load_scan(image)
    brain_mask = load_mask(paths.resolve(case.brain_mask, root), img) if case.brain_mask \
        else None
    prepared = prepare_scan(img, brain_mask, loaded.params, loaded.head_atlas)
    truth = load_mask(truth_path, img)
    t0 = time.perf_counter()
    primary, results = _all_maps(loaded, ae, prepared, compare)
    info = summary(image, primary, loaded, prepared.record,
                   {"score_all_maps": time.perf_counter() - t0})
    info.update({"case": case.name, "split": "extra", "truth": str(truth_path)})
    write_outputs(paths.evaluation_dir(root), extra_stem(case.name), primary, img, info,
                  reconstruction=True)
    brain = native_brain(prepared) | truth
    voxel_ml = voxel_volume_mm3(img.affine) / 1000.0
    out: dict[str, Any] = {"image": str(image), "registration_ok": prepared.record.registration_ok,
                           "lesion_volume_ml": round(float(truth.sum()) * voxel_ml, 2)}
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


def _loglik(loaded: LoadedModel, params: Params, prepared: PreparedScan) -> dict[str, Any]:
    """IWAE bound of one prepared scan (``generative.iwae_samples``, seeded)."""
    g, m = params.generative, loaded.params.model
    ll = log_likelihood(loaded.vae, Likelihood.of(m),
                        torch.from_numpy(prepared.image), g.iwae_samples, params.seed,
                        g.iwae_batch)
    return {"nats": round(ll.nats, 3), "bits_per_voxel": round(ll.bits_per_voxel, 6),
            "k": ll.k}


def loglik_summary(healthy: dict[str, float], lesioned: dict[str, tuple[str, float]], k: int
                   ) -> dict[str, Any]:
    """Healthy vs lesioned log-likelihood: means, paired drop and scan AUROC.

    ``healthy`` maps a subject to its bound (nats); ``lesioned`` maps a lesioned copy to
    (its healthy subject, its bound).
    """
    pairs = [(healthy[s], v) for s, v in lesioned.values() if s in healthy]
    drops = [h - v for h, v in pairs]
    return {
        "k": k, "healthy_mean_nats": float(np.mean(list(healthy.values()))) if healthy else None,
        "lesioned_mean_nats": float(np.mean([v for _, v in lesioned.values()]))
        if lesioned else None,
        "pairs": len(pairs),
        "lesioned_lower_fraction": float(np.mean([d > 0 for d in drops])) if drops else None,
        "mean_drop_nats": float(np.mean(drops)) if drops else None,
        "scan_auroc": metrics.scan_auroc([-v for v in healthy.values()],
                                         [-v for _, v in lesioned.values()])
        if healthy and lesioned else None}


def run(params: Params) -> dict[str, Any]:
    loaded = load_model(paths.model_dir(params.root))
    calib = loaded.calibration
    assert calib is not None
    compare = [c for c in params.scoring.compare if c in calib.thresholds]
    ae = _autoencoder(params)
    manifest = load_manifest(params)
    out_dir = paths.evaluation_dir(params.root)
    out_dir.mkdir(parents=True, exist_ok=True)
    pooled: dict[str, metrics.Pooled] = {}
    seconds = []
    healthy_ll: dict[str, float] = {}
    lesioned_ll: dict[str, tuple[str, float]] = {}
    for part in ("test_healthy", "test_lesion"):
        for case in manifest[part]:
            t0 = time.perf_counter()
            prepared, native = load_prepared(params, case)
            primary, results = _all_maps(loaded, ae, prepared, compare)
            seconds.append(time.perf_counter() - t0)
            brain = native_brain(prepared)
            info = summary(case["image"], primary, loaded, prepared.record,
                           {"score_all_maps": seconds[-1]})
            info.update({"case": case["id"], "split": part, "truth": case["truth"],
                         "log_likelihood": _loglik(loaded, params, prepared)})
            nats = float(info["log_likelihood"]["nats"])
            if part == "test_healthy":
                healthy_ll[case.get("subject", case["id"])] = nats
            else:
                lesioned_ll[case["id"]] = (case.get("subject", ""), nats)
            write_outputs(out_dir, stem(case["image"]), primary, native, info,
                          reconstruction=True)
            truth = load_mask(case["truth"], native) if part == "test_lesion" else None
            for name, r in results.items():
                acc = pooled.setdefault(name, metrics.Pooled())
                if truth is None:
                    acc.add_healthy(r.mask[brain] > 0, r.scan_score)
                else:
                    acc.add_lesioned(r.heatmap[brain], truth[brain], r.mask[brain] > 0,
                                     r.scan_score, metrics.lesions_found(r.mask, truth))
    if calib.primary not in pooled or not pooled[calib.primary].scores:
        raise RuntimeError("no lesioned test scans to evaluate")
    ev = params.evaluate
    table = {name: acc.summary(ev.n_thresholds, ev.curve_points if name == calib.primary else 0)
             for name, acc in pooled.items()}
    main = table[calib.primary]
    extra = {}
    for c in ev.extra_cases:
        found = _extra_case(loaded, ae, c, params.root, compare, ev.n_thresholds)
        if found is not None:
            extra[c.name] = found
    result_metrics = {
        **main, "score": calib.primary, "best_dice_n_thresholds": ev.n_thresholds,
        "calibrated_threshold": calib.voxel_threshold,
        "voxel_fpr_target": params.calibrate.voxel_fpr,
        "n_test_healthy": len(manifest["test_healthy"]),
        "n_test_lesion": len(manifest["test_lesion"]),
        "lesion_voxel_fraction": float(np.concatenate(pooled[calib.primary].labels).mean()),
        "seconds_per_scan_all_maps": float(np.median(seconds)),
        "model": loaded.meta.get("mlflow", {}), "cohort": params.cohort.name,
        "score_types": table, "extra_cases": extra,
        "log_likelihood": loglik_summary(healthy_ll, lesioned_ll, params.generative.iwae_samples),
    }
    reports = paths.reports_dir(params.root)
    write_json(reports / "metrics.json", result_metrics)
    _write_csv(reports / "score_comparison.csv", [
        {"score": name, **{k: v for k, v in row.items() if k != "best_dice_threshold"}}
        for name, row in table.items()])
    _write_csv(reports / "plots" / "roc.csv", pooled[calib.primary].roc)
    _write_csv(reports / "plots" / "pr.csv", pooled[calib.primary].pr)
    log.info("log-likelihood (IWAE, K=%d): %s", params.generative.iwae_samples,
             result_metrics["log_likelihood"])
    for name, row in table.items():
        log.info("%-20s AUROC %.3f  AUPRC %.3f  best Dice %.3f  Dice@calib %.3f  FPR %.4f  "
                 "scan AUROC %.3f  lesions found %.2f", name, row["voxel_auroc"],
                 row["voxel_auprc"], row["best_dice"], row["dice_at_calibrated_threshold"],
                 row["healthy_voxel_fpr"], row["scan_auroc"], row["lesion_detection_rate"])
    return result_metrics
