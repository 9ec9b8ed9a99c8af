"""``vae-anomaly validate``: every calibrated map on lesions that look real, in calibration scans.

Where methods and their parameters are chosen (the test split never is): the realistic
validation set of :mod:`pipeline.evaluation.validation` (MS-like plaques, a chronic infarct, a
tumour with mass effect, atrophy that must stay quiet), scored with the calibrated model
``models/vae``. Writes ``reports/validation.json`` (per map: each kind's metrics, all lesion
kinds pooled with 95 % bootstrap intervals, the atrophy negatives' flagged volume) and
``reports/validation.csv`` (one row per map and kind) for ``dvc metrics`` and the cohort page.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.cohort.store import load_manifest
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.evaluation.validation import LESIONS, NEGATIVE, validate
from pipeline.io.atomic import write_csv, write_json
from pipeline.modelstore.loading import load_model

log = logging.getLogger(__name__)
CSV_KEYS = ("voxel_auroc", "voxel_auprc", "best_dice", "dice_at_calibrated_threshold",
            "lesion_detection_rate", "scan_auroc", "healthy_voxel_fpr")
DECIMALS = 4


FLAGGED_KEYS = ("flagged_ml_mean", "flagged_ml_max")  # the atrophy negatives' own columns


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per map and kind (the atrophy negatives: flagged mL in their own columns)."""
    return [{"map": name, "kind": kind,
             **{k: "" if kind == NEGATIVE else f"{float(row[k]):.{DECIMALS}f}"
                for k in CSV_KEYS},
             **{k: row.get(k, "") for k in FLAGGED_KEYS}}
            for name, kinds in result["maps"].items() for kind, row in kinds.items()]


def run(params: Params) -> dict[str, Any]:
    loaded = load_model(paths.model_dir(params.root))
    result = validate(loaded, params, load_manifest(params))
    reports = paths.reports_dir(params.root)
    write_json(reports / "validation.json", result)
    write_csv(reports / "validation.csv", _rows(result))
    for name, kinds in result["maps"].items():
        pooled, quiet = kinds.get(LESIONS, {}), kinds.get(NEGATIVE, {})
        log.info("%-28s AUPRC %.3f  best Dice %.3f  Dice@calib %.3f  atrophy flagged %.1f mL",
                 name, pooled.get("voxel_auprc", float("nan")),
                 pooled.get("best_dice", float("nan")),
                 pooled.get("dice_at_calibrated_threshold", float("nan")),
                 quiet.get("flagged_ml_mean", float("nan")))
    return result
