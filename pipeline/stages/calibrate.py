"""``vae-anomaly calibrate``: healthy voxel statistics and thresholds, stored with the model.

Reads ``models/trained``, computes every score type of ``scoring.score`` and
``scoring.compare`` on the calibration split, and writes the complete scoring model
``models/vae`` (weights, config, voxel-wise statistics and thresholds of every calibrated map);
that folder becomes a new MLflow model version (an MLflow model: ``mlflow.pyfunc`` loads it)
with its thresholds and digests as tags, set once: a registered version never changes, and a
recalibration is a new version (lineage tag ``recalibrates``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cohort.store import Part, healthy_images, load_manifest
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.io.errors import UsageError
from pipeline.model.runtime import dtype_name, score_dtype
from pipeline.modelstore import tracking
from pipeline.modelstore.folder import (
    MODEL_JSON,
    WEIGHTS_SHA_TAG,
    copy_model,
    file_digests,
    save_calibration,
    update_meta,
)
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import Calibration
from pipeline.scoring.calibration import (
    fit_calibration,
    healthy_raw_scores,
    simulated_site_domains,
)

log = logging.getLogger(__name__)


def run(params: Params) -> None:
    trained = paths.trained_model_dir(params.root)
    loaded = load_model(trained, require_calibration=False)
    # scoring parameters may change without retraining: use the current ones
    loaded.params = dataclasses.replace(loaded.params, scoring=params.scoring)
    manifest = load_manifest(params)
    sp = params.scoring
    images = list(healthy_images(params, manifest))  # read once: maps and simulated sites
    raws = healthy_raw_scores(loaded, images, {*sp.score, *sp.compare})
    other_sites = simulated_site_domains(loaded, images, params.calibrate.domain.site_versions,
                                         params.seed)
    calib = fit_calibration(raws, sp, params.calibrate, other_sites)
    calib.info["cases"] = [c.id for c in manifest[Part.CALIBRATION]]
    calib.info["precision"] = dtype_name(score_dtype(sp.precision,
                                                     next(loaded.vae.parameters()).device))
    out = paths.model_dir(params.root)
    copy_model(trained, out)
    update_meta(out, loaded.params)
    save_calibration(out, calib)
    log.info("%s: voxel threshold %.3f (FPR %.3g), scan threshold %.3f", calib.primary,
             calib.threshold, params.calibrate.voxel_fpr, calib.scan_threshold)
    reg = register(params, out, calib)
    log.info("registered %s version %s: %s", params.mlflow.registered_model, reg.version,
             reg.reason)


def register(params: Params, folder: Path, calib: Calibration) -> tracking.Registration:
    """The calibrated model folder as a new MLflow model version (MLflow model: the folder,
    a signature, the code) of the training run that made its weights."""
    from pipeline.serving import packaging

    meta = json.loads((folder / MODEL_JSON).read_text())
    digests = file_digests(folder)
    run_id = tracking.training_run(params.mlflow.experiment, digests[WEIGHTS_SHA_TAG])
    if run_id is None:
        raise UsageError(f"{folder}: no MLflow run in experiment {params.mlflow.experiment!r} "
                         "trained these weights: run `vae-anomaly train` (or `dvc repro -f "
                         "train`) with this tracking store")
    info = meta["trained_on"]
    tags = {"modality": info["modality"], "space": info["space"], "cohort": info["cohort"],
            "calibrated": "true", "score": calib.primary,
            "threshold": f"{calib.threshold:.4f}", "scan_threshold": f"{calib.scan_threshold:.4f}",
            "voxel_fpr": str(params.calibrate.voxel_fpr),
            tracking.VAL_ELBO_TAG: f"{meta['val_negative_elbo_nats']:.6f}", **digests}
    with tempfile.TemporaryDirectory(prefix="vae-anomaly-mlflow-model-") as tmp:
        staged = Path(tmp) / "model"
        packaging.save(folder, staged, {k: tags[k] for k in ("modality", "space", "cohort")})
        return tracking.register_calibrated(run_id, params.mlflow.registered_model, staged,
                                            describe(meta, calib), tags,
                                            # folders trained before it was recorded: none, so
                                            # never comparable with another version's
                                            meta.get("validation_key", "not recorded"))


def describe(meta: dict[str, Any], calib: Calibration) -> str:
    """The model version's description: what it is, what it was trained and calibrated on."""
    info = meta["trained_on"]
    return (f"{meta.get('kind', '3D conv VAE')} trained on {info['n_train']} healthy "
            f"{info['modality']} scans of {info['cohort']}, registered to {info['space']}. "
            f"Split (seed {info['split_seed']}): {info['n_train']} train / "
            f"{info['n_calibration']} validation+calibration / {info['n_test_healthy']} healthy "
            f"test subjects. Validation -ELBO {meta['val_negative_elbo_nats']:.1f} nats/volume "
            f"at epoch {meta['best_epoch']} of {meta['epochs_run']}. Calibrated on "
            f"{len(calib.info.get('cases', []))} healthy scans: map {calib.primary}.")
