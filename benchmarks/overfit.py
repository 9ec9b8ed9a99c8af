"""Can the network learn at all? Overfit a few training scans (a diagnosis, not a speed figure).

The configured model is trained as a plain autoencoder (β = 0, no free bits, no flips, no
denoising; any other augmentation of the preset stays) on the first ``--scans`` prepared
training scans and validated on the *same* scans, for ``--epochs`` × ``--steps`` optimiser
steps. A network that cannot bring their reconstruction MAE (inside the brain) well below
the mean image's cannot model a subject; this is how the collapse of the earlier
whole-volume network was diagnosed (README "Training"). Prints, per epoch, the MAE, the
mean image's and their ratio.

Usage:
    VAE_ANOMALY_ROOT=<project> python benchmarks/overfit.py [--scans 4] [--epochs 10]
        [--steps 50] [--patch-size 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import torch
from common import publish

from pipeline.cohort.store import Part, load_brains, load_images, load_manifest
from pipeline.config.params import load_params
from pipeline.model.network import build_vae
from pipeline.model.runtime import seed_everything
from pipeline.model.training import fit
from pipeline.stages.train import variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50, help="optimiser steps per epoch")
    ap.add_argument("--patch-size", type=int, default=0, help="0 = whole crops")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params, _ = variant(load_params(), autoencoder=True)  # beta 0, no free bits, no KL ramp
    tp = dataclasses.replace(
        params.train, epochs=args.epochs, steps_per_epoch=args.steps, patch_size=args.patch_size,
        augment=dataclasses.replace(params.train.augment, flip=False),
        denoise=dataclasses.replace(params.train.denoise, std=0.0), iwae_samples=0,
        early_stopping_patience=0)
    params = dataclasses.replace(params, train=tp)
    ids = load_manifest(params)[Part.TRAIN][: args.scans]
    scans = torch.from_numpy(load_images(params, ids))
    brains = torch.from_numpy(load_brains(params, ids))
    seed_everything(params.seed)
    vae = build_vae(params.model, params.template.crop_shape)
    history = fit(vae, scans, scans, brains, params).history
    rows = [{"epoch": s.epoch, "steps": s.epoch * args.steps, "mae": round(s.val_mae, 4),
             "mean_image_mae": round(s.val_mean_image_mae, 4),
             "ratio": round(s.val_mae_ratio, 3), "seconds": round(s.seconds, 1)}
            for s in history]
    publish("overfit", {"scans": args.scans, "patch_size": args.patch_size, "epochs": rows})


if __name__ == "__main__":
    main()
