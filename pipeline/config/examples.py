"""Complete, valid parameter sections for the package's docstring examples.

Examples build what they show from these explicit values, never from the project's
``configs/params.yaml`` (which a user edits): a doctest then means the same everywhere.

Example:
    >>> train_params(batch_size=2).batch_size, train_params().patch_size
    (2, 0)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pipeline.config.model_schema import (
    AnomalyParams,
    AugmentParams,
    DenoiseParams,
    SiteParams,
    TrainParams,
)

_TRAIN = TrainParams(
    epochs=40, steps_per_epoch=30, batch_size=4, patch_size=0, patch_min_brain=0.0,
    learning_rate=0.003, weight_decay=0.0, lr_schedule="onecycle", warmup_fraction=0.1,
    grad_clip_norm=0.0, beta=1.0, kl_schedule="linear", kl_warmup_epochs=5, kl_cycle_epochs=10,
    free_bits=0.05, early_stopping_patience=10, early_stopping_min_delta=0.0, iwae_samples=8,
    iwae_every=10, device="auto", amp=True, channels_last=False, compile=False,
    gpu_cache_fraction=0.5, checkpoint_every=10, threads=0,
    augment=AugmentParams(flip=True, rotation_deg=0.0, translation_vox=0.0, scale=0.0,
                          intensity_scale=0.0, intensity_shift=0.0, gamma=0.0, bias_field=0.0),
    site=SiteParams(probability=0.0, low_resolution=[0.5, 1.0], blur_sigma_vox=[0.3, 1.0],
                    noise_std=0.03, gamma=[0.7, 1.4], bias_field=0.15, rim_erosion_vox=2,
                    sharpen_alpha=[0.5, 2.0]),
    denoise=DenoiseParams(std=0.0, cell_vox=8),
    anomalies=AnomalyParams(probability=0.0, per_patch=[1, 3], diameter_vox=[2.0, 10.0],
                            level=[0.0, 1.2], strength=[0.5, 1.0], texture=0.1,
                            border_vox=1.0))


def train_params(**changes: Any) -> TrainParams:
    """An example ``train`` section, with ``changes``."""
    return dataclasses.replace(_TRAIN, **changes)
