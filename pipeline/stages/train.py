"""``vae-anomaly train``: fit the VAE on healthy training scans, log and register it in MLflow.

Writes ``models/trained/`` (weights + ``model.json`` + ``history.json``), checkpoints under
``models/checkpoints/``, one MLflow run (params, per-epoch losses, the model folder as
artifacts) and a new version of the configured registered model with alias ``champion``.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import asdict
from typing import Any

import torch

from pipeline import paths, tracking
from pipeline.config import Params, flatten, to_dict
from pipeline.dataset import load_images
from pipeline.modelio import build_vae, save_model
from pipeline.nifti import write_json
from pipeline.stages.prepare import load_manifest
from pipeline.template import load_template
from pipeline.training import EpochStats, best_epoch, fit, pick_device, seed_everything

log = logging.getLogger(__name__)


def trained_on(params: Params, manifest: dict[str, Any]) -> dict[str, Any]:
    """What a model was trained on, stated in every model version and report."""
    tpl = load_template(params.template.resolution_mm, params.template.crop_shape)
    return {
        "modality": params.cohort.modality,
        "space": tpl.space,
        "cohort": params.cohort.name,
        "n_train": len(manifest["train"]),
        "n_calibration": len(manifest["calibration"]),
        "n_test_healthy": len(manifest["test_healthy"]),
        "split_seed": params.seed,
        "preprocessing": "canonical RAS, affine registration (Mattes MI) to MNI152, "
                         "brain-masked, robust-percentile intensity normalisation",
    }


def run(params: Params) -> None:
    import mlflow

    if params.train.threads > 0:
        torch.set_num_threads(params.train.threads)
    manifest = load_manifest(params)
    seed_everything(params.seed)
    train = torch.from_numpy(load_images(params, manifest["train"]))
    val = torch.from_numpy(load_images(params, manifest["calibration"]))
    vae = build_vae(params)
    info = trained_on(params, manifest)
    device = pick_device(params.train.device)
    log.info("training on %d scans (%d validation) on %s", len(train), len(val), device)

    exp_id = tracking.setup(params.mlflow.experiment)
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(to_dict(params)).items()})
        mlflow.set_tags({"modality": info["modality"], "space": info["space"],
                         "cohort": info["cohort"], "device": str(device),
                         "torch": torch.__version__, "host": platform.node()})

        def on_epoch(s: EpochStats) -> None:
            metrics = {k: v for k, v in asdict(s).items() if k != "epoch"}
            metrics["learning_rate"] = params.train.learning_rate
            if device.type == "cuda":
                metrics["gpu_peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
            mlflow.log_metrics(metrics, step=s.epoch)
            log.info("epoch %3d  loss %.1f  rec %.1f  kl %.1f  val -ELBO %.1f  (%.1f vol/s)",
                     s.epoch, s.train_loss, s.train_reconstruction, s.train_kl,
                     s.val_negative_elbo, s.volumes_per_s)

        history = fit(vae, train, val, params, paths.checkpoints_dir(params.root), on_epoch)
        folder = paths.trained_model_dir(params.root)
        final = best_epoch(history)
        meta: dict[str, Any] = {"format": "vae-anomaly/1", "trained_on": info,
                "mlflow": {"run_id": run.info.run_id, "experiment": params.mlflow.experiment,
                           "registered_model": params.mlflow.registered_model},
                "val_negative_elbo_nats": final.val_negative_elbo, "best_epoch": final.epoch,
                "epochs_run": len(history)}
        atlas = paths.prepared_dir(params.root) / paths.HEAD_ATLAS_FILE
        save_model(folder, vae, params, meta, atlas if atlas.is_file() else None)
        write_json(folder / "history.json", [asdict(h) for h in history])
        mlflow.log_artifacts(str(folder), artifact_path=tracking.MODEL_ARTIFACT)
        description = (f"3D conv VAE trained on {info['n_train']} healthy {info['modality']} "
                       f"scans of {info['cohort']} in {info['space']}; "
                       f"validation -ELBO {final.val_negative_elbo:.1f} nats/volume "
                       f"(best of {len(history)} epochs: {final.epoch}).")
        version = tracking.register_version(
            run.info.run_id, params.mlflow.registered_model, description,
            {"modality": info["modality"], "space": info["space"], "cohort": info["cohort"],
             "calibrated": "false"})
    meta["mlflow"]["version"] = version
    write_json(folder / "registration.json", meta["mlflow"])
    log.info("registered %s version %s (alias champion)", params.mlflow.registered_model, version)
