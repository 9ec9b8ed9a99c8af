"""``vae-anomaly train [--resume]``: fit the VAE on healthy scans, log and register it.

Writes ``models/trained/`` (weights + ``model.json`` + ``history.json``), checkpoints under
``models/checkpoints/``, ``reports/train_metrics.json`` and ``reports/plots/train.csv``,
one MLflow run (params, per-epoch losses, KL per latent channel, IWAE bound, learning rate,
throughput, GPU memory; the model folder as artifacts ``trained/``). The run is found again
by its tags (``training_fingerprint`` to resume, ``weights_sha256`` for ``calibrate``, which
registers the calibrated model as a version): no run id goes into the DVC outputs, so the same
data, parameters and code give the same files in any clone. Wall-clock figures (seconds,
volumes/s) go to MLflow only, for the same reason.

``--autoencoder`` trains the baseline of the evaluation instead: the same network as a plain
autoencoder (β = 0, no posterior sampling), into ``models/autoencoder/`` with its own
checkpoints, reports (``*_autoencoder``) and MLflow run (calibrated inside ``evaluate``).

``--resume`` continues from the newest checkpoint made with the same parameters, data and
code (and the same MLflow run); without one it starts from the beginning. Under
``torchrun --nproc_per_node=N`` it trains data-parallel; only rank 0 writes and logs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import platform
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pipeline.cohort.store import Manifest, Part, load_brains, load_images, load_manifest
from pipeline.config import paths
from pipeline.config.code import closure_digest
from pipeline.config.params import flatten, to_dict
from pipeline.config.schema import Params
from pipeline.io.atomic import atomic_write, sha256, write_json, write_text
from pipeline.model import checkpoint, distributed
from pipeline.model.network import build_vae
from pipeline.model.runtime import pick_device, seed_everything
from pipeline.model.training import EpochStats, FitResult, fit
from pipeline.modelstore import tracking
from pipeline.modelstore.folder import WEIGHTS, WEIGHTS_SHA_TAG, save_model
from pipeline.space.template import build_template, template_space

log = logging.getLogger(__name__)

# train.* keys that change how fast, not what, a run computes: a checkpoint stays resumable
RUNTIME_KEYS = ("device", "threads", "checkpoint_every", "gpu_cache_fraction", "compile",
                "channels_last", "iwae_samples", "iwae_every")
# their import closure determines the weights: the training loop and the networks it trains
TRAINING_CODE = ("pipeline.model.training", "pipeline.model.network")
PLOT_COLUMNS = ("epoch", "train_loss", "val_negative_elbo", "val_reconstruction",
                "val_iwae_nll", "val_kl", "val_mae", "val_mean_image_mae",
                "learning_rate")
TIMING_KEYS = ("seconds", "volumes_per_s")  # MLflow only: never in DVC outputs


def trained_on(params: Params, manifest: Manifest) -> dict[str, Any]:
    """What a model was trained on, stated in every model version and report."""
    return {
        "modality": params.cohort.modality,
        "space": template_space(params.template.resolution_mm),
        "cohort": params.cohort.name,
        "n_train": len(manifest[Part.TRAIN]),
        "n_calibration": len(manifest[Part.CALIBRATION]),
        "n_test_healthy": len(manifest[Part.TEST_HEALTHY]),
        "split_seed": params.seed,
        "preprocessing": "canonical RAS, N4 bias field correction, affine registration to "
                         "MNI152, brain-masked, robust-percentile intensity normalisation, "
                         + ("Nyul histogram standardisation learned on the training scans"
                            if params.prepare.harmonise.method == "nyul"
                            else "no histogram standardisation"),
    }


def fingerprint(params: Params, train: torch.Tensor, val: torch.Tensor) -> str:
    """SHA-256 of what determines the trained weights: parameters, data and training code
    (the import closure of the training loop)."""
    raw = to_dict(params)
    tp = {k: v for k, v in raw["train"].items() if k not in RUNTIME_KEYS}
    h = hashlib.sha256(json.dumps({"model": raw["model"], "train": tp,
                                   "template": raw["template"], "seed": params.seed},
                                  sort_keys=True).encode())
    for t in (train, val):
        h.update(t.numpy().tobytes())
    h.update(closure_digest(*TRAINING_CODE).encode())
    return h.hexdigest()


def validation_key(info: dict[str, Any], manifest: Manifest, params: Params) -> str:
    """Identifies the validation scans and their space (champion comparisons need both)."""
    ids = sorted(c.id for c in manifest[Part.CALIBRATION])
    body = json.dumps([info["cohort"], info["space"], params.template.crop_shape, ids])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _epoch_metrics(s: EpochStats) -> dict[str, float]:
    metrics = {k: float(v) for k, v in asdict(s).items()
               if k not in ("epoch", "kl_channels") and v is not None}
    metrics.update({f"kl_channel_{i:03d}": v for i, v in enumerate(s.kl_channels)})
    metrics["val_mae_ratio"] = s.val_mae_ratio
    return metrics


@dataclasses.dataclass(frozen=True)
class Variant:
    """Where one kind of training run writes (the VAE, or the autoencoder baseline)."""

    model_dir: Path
    checkpoints: Path
    suffix: str      # of the report files
    kind: str        # in the MLflow description
    name: str        # in the MLflow run name


def variant(params: Params, autoencoder: bool) -> tuple[Params, Variant]:
    """Parameters and output places of the VAE run, or of the β = 0 autoencoder baseline."""
    root = params.root
    if not autoencoder:
        return params, Variant(paths.trained_model_dir(root), paths.checkpoints_dir(root), "",
                               "3D conv VAE", "vae")
    train = dataclasses.replace(params.train, beta=0.0, free_bits=0.0, kl_schedule="constant")
    ml = dataclasses.replace(params.mlflow,
                             registered_model=f"{params.mlflow.registered_model}-autoencoder")
    return (dataclasses.replace(params, train=train, mlflow=ml),
            Variant(paths.autoencoder_dir(root), paths.autoencoder_checkpoints_dir(root),
                    "_autoencoder", "Baseline: the same 3D conv network as a plain "
                                    "autoencoder (beta = 0, no sampling)", "autoencoder"))


def _write_disabled(params: Params, where: Variant) -> None:
    """Outputs of a disabled baseline run (DVC wants them): a note, no model."""
    if where.model_dir.exists():
        shutil.rmtree(where.model_dir)
    where.model_dir.mkdir(parents=True)
    write_text(where.model_dir / "DISABLED.txt",
               "evaluate.autoencoder_baseline is false: no autoencoder baseline was trained.\n")
    reports = paths.reports_dir(params.root)
    (reports / "plots").mkdir(parents=True, exist_ok=True)
    write_json(reports / f"train{where.suffix}_metrics.json", {"disabled": True})
    atomic_write(reports / "plots" / f"train{where.suffix}.csv",
                 lambda p: p.write_text(",".join(PLOT_COLUMNS) + "\n"))
    where.checkpoints.mkdir(parents=True, exist_ok=True)
    log.info("autoencoder baseline disabled (evaluate.autoencoder_baseline: false)")


def _write_reports(params: Params, result: FitResult, suffix: str) -> None:
    plots = paths.reports_dir(params.root) / "plots"
    plots.mkdir(parents=True, exist_ok=True)

    def table(p: Path) -> None:
        with open(p, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(PLOT_COLUMNS)
            for s in result.history:
                row = asdict(s)
                w.writerow(["" if row[c] is None else row[c] for c in PLOT_COLUMNS])

    atomic_write(plots / f"train{suffix}.csv", table)
    best = next(s for s in result.history if s.epoch == result.best_epoch)
    iwae = [s.val_iwae_nll for s in result.history if s.val_iwae_nll is not None]
    write_json(paths.reports_dir(params.root) / f"train{suffix}_metrics.json", {
        "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val_negative_elbo": best.val_negative_elbo, "val_kl": best.val_kl,
        "val_iwae_nll_last": iwae[-1] if iwae else None,
        "active_latent_channels": best.active_channels,
        "val_mae": best.val_mae, "val_mean_image_mae": best.val_mean_image_mae,
        "val_mae_ratio": best.val_mae_ratio})


def run(params: Params, resume: bool = False, autoencoder: bool = False) -> None:
    params, where = variant(params, autoencoder)
    if autoencoder and not params.evaluate.autoencoder_baseline:
        _write_disabled(params, where)
        return
    world = distributed.from_env()
    if not world.is_main:  # one log, from rank 0; the other ranks only report problems
        logging.getLogger().setLevel(logging.WARNING)
    distributed.init(world, pick_device(params.train.device))
    try:
        _run(params, resume, world, where)
    finally:
        distributed.shutdown()


def _run(params: Params, resume: bool, world: distributed.World, where: Variant) -> None:
    import mlflow

    if params.train.threads > 0:
        torch.set_num_threads(params.train.threads)
    manifest = load_manifest(params)
    seed_everything(params.seed)
    train = torch.from_numpy(load_images(params, manifest[Part.TRAIN]))
    val = torch.from_numpy(load_images(params, manifest[Part.CALIBRATION]))
    val_brain = torch.from_numpy(load_brains(params, manifest[Part.CALIBRATION]))
    vae = build_vae(params.model, params.template.crop_shape)
    info = trained_on(params, manifest)
    device = pick_device(params.train.device)
    ckdir = where.checkpoints
    fp = fingerprint(params, train, val)
    start = checkpoint.load_latest(ckdir, fp) if resume else None
    if start is None and world.is_main and ckdir.exists():
        shutil.rmtree(ckdir)  # another run's checkpoints must not mix with this one's
    distributed.barrier(world)
    log.info("training on %d scans (%d validation) on %s x %d%s", len(train), len(val), device,
             world.size, f", resuming after epoch {start.epoch}" if start else "")
    run_ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if world.is_main:
        exp_id = tracking.setup(params.mlflow.experiment)
        run_id = start.extra.get("mlflow_run_id") if start else None
        if run_id and not tracking.run_exists(run_id):
            run_id = None
        run_ctx = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id,
                                   run_name=None if run_id else
                                   f"train-{where.name}-{params.cohort.name.split()[0]}")
    with run_ctx as active:
        extra = {"mlflow_run_id": active.info.run_id} if active else {}
        if active and not start:
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(to_dict(params)).items()})
            mlflow.set_tags({"modality": info["modality"], "space": info["space"],
                             "cohort": info["cohort"], "device": str(device),
                             "world_size": str(world.size), "torch": torch.__version__,
                             "host": platform.node(), **tracking.provenance_tags(params.root)})

        def on_epoch(s: EpochStats) -> None:
            mlflow.log_metrics(_epoch_metrics(s), step=s.epoch)
            log.info("epoch %3d  loss %.1f  rec %.1f  kl %.1f  val -ELBO %.1f%s  MAE %.4f "
                     "(mean image %.4f, ratio %.3f)  (%.1f vol/s)", s.epoch, s.train_loss,
                     s.train_reconstruction, s.train_kl, s.val_negative_elbo,
                     "" if s.val_iwae_nll is None else f"  IWAE {s.val_iwae_nll:.1f}",
                     s.val_mae, s.val_mean_image_mae, s.val_mae_ratio, s.volumes_per_s)

        result = fit(vae, train, val, val_brain, params, checkpoint_dir=ckdir, start=start,
                     fingerprint=fp, extra=extra, on_epoch=on_epoch if active else None,
                     world=world)
        if active:
            _finish(params, vae, result, info, manifest, active.info.run_id, where)


def _finish(params: Params, vae: Any, result: FitResult, info: dict[str, Any],
            manifest: Manifest, run_id: str, where: Variant) -> None:
    import mlflow

    folder = where.model_dir
    best = next(s for s in result.history if s.epoch == result.best_epoch)
    meta: dict[str, Any] = {
        "trained_on": info,
        "mlflow": {"experiment": params.mlflow.experiment,
                   "registered_model": params.mlflow.registered_model},
        "kind": where.kind, "validation_key": validation_key(info, manifest, params),
        "val_negative_elbo_nats": best.val_negative_elbo, "best_epoch": best.epoch,
        "epochs_run": len(result.history), "stopped_early": result.stopped_early,
        "harmonisation": json.loads((paths.prepared_dir(params.root) / paths.HARMONISATION_FILE)
                                    .read_text())}
    atlas = paths.prepared_dir(params.root) / paths.HEAD_ATLAS_FILE
    template = build_template(params.template.resolution_mm, params.template.crop_shape)
    save_model(folder, vae, params, meta, atlas if atlas.is_file() else None, template)
    write_json(folder / "history.json", [{k: v for k, v in asdict(h).items()
                                          if k not in TIMING_KEYS} for h in result.history])
    _write_reports(params, result, where.suffix)
    mlflow.log_artifacts(str(folder), artifact_path=tracking.TRAINED_ARTIFACT)
    rates = sorted(s.volumes_per_s for s in result.history)
    mlflow.log_metrics({"best_epoch": best.epoch, "best_val_negative_elbo":
                        best.val_negative_elbo, "volumes_per_s_median": rates[len(rates) // 2],
                        "train_seconds": sum(s.seconds for s in result.history)})
    mlflow.set_tag(WEIGHTS_SHA_TAG, sha256(folder / WEIGHTS))
    log.info("trained %s (run %s): calibrate registers it", folder, run_id)
