"""Parameters of the network and its training.

Each class is one section of :class:`pipeline.config.schema.Params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipeline.config.constraints import above, at_least, between, choice, each, inside


@dataclass(frozen=True)
class ModelParams:
    architecture: Annotated[str, choice("patch", "classic")]
    channels: Annotated[list[int], each(at_least(1), nonempty=True)]
    blocks: Annotated[list[int], each(at_least(0))]
    stem: Annotated[int, at_least(1)]
    upsample: Annotated[str, choice("shuffle", "nearest", "trilinear", "transposed")]
    mean_input: bool
    strides: Annotated[list[int], each(choice(1, 2))]
    residual_units: int
    norm: Annotated[str, choice("instance", "batch", "group", "none")]
    latent: Annotated[str, choice("spatial", "dense")]
    latent_channels: Annotated[int, at_least(1)]
    latent_dim: Annotated[int, at_least(1)]
    likelihood: Annotated[str, choice("gaussian", "gaussian_learned", "laplace")]
    recon_sigma: Annotated[float, above(0)]
    min_sigma: Annotated[float, above(0)]
    learn_mean_image: bool


@dataclass(frozen=True)
class AugmentParams:
    flip: bool
    rotation_deg: float
    translation_vox: float
    scale: float
    intensity_scale: float
    intensity_shift: float
    gamma: float
    bias_field: float


@dataclass(frozen=True)
class SiteParams:
    probability: Annotated[float, between(0.0, 1.0)]
    low_resolution: Annotated[list[float], each(between(0.0, 1.0, low_open=True), length=2)]
    blur_sigma_vox: Annotated[list[float], each(at_least(0), length=2)]
    noise_std: Annotated[float, at_least(0)]
    gamma: Annotated[list[float], each(above(0), length=2)]
    bias_field: Annotated[float, at_least(0)]
    rim_erosion_vox: Annotated[int, at_least(0)]
    sharpen_alpha: Annotated[list[float], each(at_least(0), length=2)]


@dataclass(frozen=True)
class DenoiseParams:
    std: Annotated[float, at_least(0)]
    cell_vox: Annotated[int, at_least(1)]


@dataclass(frozen=True)
class AnomalyParams:
    probability: Annotated[float, between(0.0, 1.0)]
    per_patch: Annotated[list[int], each(at_least(1), length=2)]
    diameter_vox: Annotated[list[float], each(above(0), length=2)]
    level: Annotated[list[float], each(between(-0.5, 2.0), length=2)]
    strength: Annotated[list[float], each(between(0.0, 1.0), length=2)]
    texture: Annotated[float, at_least(0)]
    border_vox: Annotated[float, above(0)]


@dataclass(frozen=True)
class TrainParams:
    epochs: Annotated[int, at_least(1)]
    steps_per_epoch: Annotated[int, at_least(0)]
    batch_size: Annotated[int, at_least(1)]
    patch_size: Annotated[int, at_least(0)]
    patch_min_brain: Annotated[float, between(0, 1)]
    learning_rate: Annotated[float, at_least(0)]
    weight_decay: float
    lr_schedule: Annotated[str, choice("onecycle", "cosine", "constant")]
    warmup_fraction: Annotated[float, inside(0, 1)]
    grad_clip_norm: float
    beta: float
    kl_schedule: Annotated[str, choice("linear", "cyclical", "constant")]
    kl_warmup_epochs: int
    kl_cycle_epochs: int
    free_bits: Annotated[float, at_least(0)]
    early_stopping_patience: int
    early_stopping_min_delta: float
    iwae_samples: Annotated[int, at_least(0)]
    iwae_every: Annotated[int, at_least(1)]
    device: Annotated[str, choice("auto", "cpu", "cuda")]
    amp: bool
    channels_last: bool
    compile: bool
    gpu_cache_fraction: Annotated[float, between(0, 1)]
    checkpoint_every: Annotated[int, at_least(1)]
    threads: int
    augment: AugmentParams
    site: SiteParams
    denoise: DenoiseParams
    anomalies: AnomalyParams
