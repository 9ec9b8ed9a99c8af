"""``vae-anomaly calibrate``: healthy voxel statistics and thresholds, stored with the model.

Reads ``models/trained``, computes every score type of ``scoring.score`` and
``scoring.compare`` on the calibration split, and writes the complete scoring model
``models/vae`` (weights, config, voxel-wise statistics and thresholds of every calibrated map);
the calibration files are also attached to the MLflow model version created by ``train`` and
its thresholds set as version tags.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from pipeline.cohort.store import healthy_images, load_manifest
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.io.atomic import sha256
from pipeline.model.runtime import dtype_name, score_dtype
from pipeline.modelstore import tracking
from pipeline.modelstore.folder import (
    CALIBRATION,
    CALIBRATION_JSON,
    CALIBRATION_SHA_TAG,
    MODEL_JSON,
    copy_model,
    save_calibration,
    update_meta,
)
from pipeline.modelstore.loading import load_model
from pipeline.scoring.calibration import fit_calibration, healthy_raw_scores

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    trained = paths.trained_model_dir(params.root)
    loaded = load_model(trained, require_calibration=False)
    # scoring/calibration parameters may change without retraining: use the current ones
    loaded.params = dataclasses.replace(loaded.params, scoring=params.scoring,
                                        calibrate=params.calibrate)
    manifest = load_manifest(params)
    sp = params.scoring
    raws = healthy_raw_scores(loaded, healthy_images(params, manifest), {*sp.score, *sp.compare})
    calib = fit_calibration(raws, sp, params.calibrate)
    calib.info["cases"] = [c["id"] for c in manifest["calibration"]]
    calib.info["precision"] = dtype_name(score_dtype(sp.precision,
                                                     next(loaded.vae.parameters()).device))
    out = paths.model_dir(params.root)
    reg = json.loads((trained / "registration.json").read_text())
    copy_model(trained, out)
    update_meta(out, loaded.params, reg)
    save_calibration(out, calib)
    log.info("%s: voxel threshold %.3f (FPR %.3g), scan threshold %.3f", calib.primary,
             calib.threshold, params.calibrate.voxel_fpr, calib.scan_threshold)
    tracking.setup(params.mlflow.experiment)
    tracking.add_to_version(reg["run_id"], reg["registered_model"], reg["version"],
                            [out / CALIBRATION, out / CALIBRATION_JSON, out / MODEL_JSON],
                            {"calibrated": "true", "score": calib.primary,
                             "threshold": f"{calib.threshold:.4f}",
                             "scan_threshold": f"{calib.scan_threshold:.4f}",
                             "voxel_fpr": str(params.calibrate.voxel_fpr),
                             CALIBRATION_SHA_TAG: sha256(out / CALIBRATION)})
