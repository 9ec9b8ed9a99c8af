"""The parameter schema: a frozen dataclass per section of ``configs/params.yaml``, each field
with its allowed values (``Annotated``); :mod:`pipeline.config.params` validates the YAML.

Example:
    >>> from pipeline.config.schema import TemplateParams
    >>> TemplateParams(resolution_mm=2.0, crop_shape=[80, 96, 80]).resolution_mm
    2.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pipeline.config import paths
from pipeline.config.constraints import above, at_least, below, between, choice, each, inside
from pipeline.config.kinds import KINDS


@dataclass(frozen=True)
class CohortParams:
    name: str
    modality: str
    folder: str
    image_pattern: str
    mask_pattern: str
    max_subjects: int


@dataclass(frozen=True)
class DemoParams:
    n_subjects: int
    deformation_mm: float
    deformation_control_points: int
    rotation_deg: float
    translation_mm: float
    scale_range: list[float]
    spacing_mm_range: list[float]
    bias_field_strength: float
    noise_fraction: float
    gamma_range: list[float]


@dataclass(frozen=True)
class SplitParams:
    calibration_fraction: float
    test_fraction: float


@dataclass(frozen=True)
class LesionParams:
    per_scan: list[int]
    diameter_mm: list[float]
    hypo_fraction: float
    contrast_range: list[float]
    border_mm: float
    irregularity: float


@dataclass(frozen=True)
class TemplateParams:
    resolution_mm: float
    crop_shape: Annotated[list[int], each(at_least(1), length=3)]


@dataclass(frozen=True)
class RegistrationParams:
    outline_levels_mm: Annotated[list[float], each(above(0), nonempty=True)]
    outline_iterations: int
    anatomy_levels_mm: Annotated[list[float], each(above(0), nonempty=True)]
    anatomy_iterations: int
    histogram_bins: int
    sampling_fraction: float
    learning_rate: float
    min_step: float
    relaxation: float
    min_dice: float
    min_containment: float


@dataclass(frozen=True)
class BiasFieldParams:
    enabled: bool
    fit_spacing_mm: Annotated[float, above(0)]
    levels: Annotated[int, at_least(1)]
    iterations: int
    control_points: int
    convergence: float


@dataclass(frozen=True)
class BrainMaskParams:
    stripped_max_volume_ml: float
    atlas_spacing_mm: float
    atlas_margin_mm: float
    atlas_levels_mm: Annotated[list[float], each(above(0), nonempty=True)]
    atlas_iterations: int
    atlas_min_scans: int
    atlas_probability: float
    skull_erosion_mm: float
    refine_dilation_mm: float


@dataclass(frozen=True)
class NormaliseParams:
    lower_percentile: float
    upper_percentile: float
    clip: list[float]


@dataclass(frozen=True)
class PrepareParams:
    workers: int
    cache: bool
    qc_thumbnail_scale: int
    bias_field: BiasFieldParams
    registration: RegistrationParams
    brain_mask: BrainMaskParams
    normalise: NormaliseParams


@dataclass(frozen=True)
class ModelParams:
    channels: list[int]
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
class TrainParams:
    epochs: Annotated[int, at_least(1)]
    batch_size: Annotated[int, at_least(1)]
    learning_rate: float
    weight_decay: float
    lr_schedule: Annotated[str, choice("cosine", "constant")]
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


@dataclass(frozen=True)
class RestorationParams:
    steps: Annotated[int, at_least(0)]
    step_size: float
    consistency: float


@dataclass(frozen=True)
class ScoringParams:
    score: Annotated[list[str], each(choice(*KINDS), nonempty=True)]
    compare: Annotated[list[str], each(choice(*KINDS), nonempty=True)]
    residual: Annotated[str, choice("abs", "squared")]
    mc_samples: Annotated[int, at_least(0)]
    smoothing_sigma_vox: float
    grad_smoothing_sigma_vox: float
    restoration: RestorationParams
    std_smoothing_sigma_vox: float
    std_floor_fraction: float
    erode_brain_vox: int
    median_filter_vox: Annotated[int, at_least(0)]
    min_component_voxels: int
    scan_statistic: Annotated[str, choice("top_voxels", "elbo")]
    scan_top_voxels: int
    precision: Annotated[str, choice("auto", "fp32", "bf16", "fp16")]


@dataclass(frozen=True)
class CalibrateParams:
    voxel_fpr: Annotated[float, inside(0, 1)]
    scan_fpr: Annotated[float, inside(0, 1)]


@dataclass(frozen=True)
class ExtraCase:
    name: str
    image: str
    lesion_mask: str
    brain_mask: str


@dataclass(frozen=True)
class EvaluateParams:
    n_thresholds: int
    curve_points: int
    autoencoder_baseline: bool
    extra_cases: list[ExtraCase]


@dataclass(frozen=True)
class MlflowParams:
    experiment: str
    registered_model: str


@dataclass(frozen=True)
class ReportParams:
    convention: Annotated[str, choice("radiological", "neurological")]
    montage_slices: Annotated[int, at_least(0)]
    finding_views: Annotated[int, at_least(0)]
    max_findings: Annotated[int, at_least(0)]
    viewer_max_slices: Annotated[int, at_least(0)]
    display_mm: Annotated[float, above(0)]
    heat_range: Annotated[list[float], each(at_least(0), length=2)]
    midline_mm: float
    gallery_max: Annotated[int, at_least(0)]
    max_cases: Annotated[int, at_least(0)]


@dataclass(frozen=True)
class ImputeParams:
    steps: Annotated[int, at_least(1)]
    step_size: Annotated[float, above(0)]
    ring_vox: Annotated[int, at_least(1)]
    min_ring_voxels: Annotated[int, at_least(2)]
    template_cover: Annotated[float, inside(0, 1)]


@dataclass(frozen=True)
class GenerativeChecks:
    samples: Annotated[int, at_least(1)]
    nearest_candidates: Annotated[int, at_least(1)]
    impute_scans: Annotated[int, at_least(0)]
    impute_cube_mm: Annotated[float, above(0)]
    iwae_k: Annotated[list[int], each(at_least(1), nonempty=True)]
    iwae_scans: Annotated[int, at_least(0)]
    diversity_samples: Annotated[int, at_least(0)]
    intensity_tolerance: Annotated[float, inside(0, 1)]
    novelty_max_ssim: Annotated[float, between(0, 1, low_open=True)]
    impute_min_gain: Annotated[float, below(1)]


@dataclass(frozen=True)
class GenerativeParams:
    temperature: Annotated[float, at_least(0)]
    interpolation_steps: Annotated[int, at_least(2)]
    max_step_ratio: Annotated[float, at_least(1)]
    impute: ImputeParams
    iwae_samples: Annotated[int, at_least(1)]
    iwae_batch: Annotated[int, at_least(1)]
    checks: GenerativeChecks


@dataclass(frozen=True)
class Params:
    preset: str
    seed: int
    cohort: CohortParams
    demo: DemoParams
    split: SplitParams
    lesions: LesionParams
    template: TemplateParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    scoring: ScoringParams
    calibrate: CalibrateParams
    evaluate: EvaluateParams
    mlflow: MlflowParams
    report: ReportParams
    generative: GenerativeParams
    root: Path = field(default=Path("."), compare=False)

    def cohort_folder(self) -> Path:
        return paths.resolve(self.cohort.folder, self.root)
