"""The parameter schema: one frozen dataclass per section of ``configs/params.yaml``.

:mod:`pipeline.config` reads the YAML files and validates them into these classes.

Example:
    >>> from pipeline.schema import TemplateParams
    >>> TemplateParams(resolution_mm=2.0, crop_shape=[80, 96, 80]).resolution_mm
    2.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline import paths


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
    crop_shape: list[int]


@dataclass(frozen=True)
class RegistrationParams:
    outline_levels_mm: list[float]
    outline_iterations: int
    anatomy_levels_mm: list[float]
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
    fit_spacing_mm: float
    levels: int
    iterations: int
    control_points: int
    convergence: float


@dataclass(frozen=True)
class BrainMaskParams:
    stripped_max_volume_ml: float
    atlas_spacing_mm: float
    atlas_margin_mm: float
    atlas_levels_mm: list[float]
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
    strides: list[int]
    residual_units: int
    norm: str
    latent: str
    latent_channels: int
    latent_dim: int
    likelihood: str
    recon_sigma: float
    min_sigma: float
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
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    lr_schedule: str
    grad_clip_norm: float
    beta: float
    kl_schedule: str
    kl_warmup_epochs: int
    kl_cycle_epochs: int
    free_bits: float
    early_stopping_patience: int
    early_stopping_min_delta: float
    iwae_samples: int
    iwae_every: int
    device: str
    amp: bool
    channels_last: bool
    compile: bool
    gpu_cache_fraction: float
    checkpoint_every: int
    threads: int
    augment: AugmentParams


@dataclass(frozen=True)
class RestorationParams:
    steps: int
    step_size: float
    consistency: float


@dataclass(frozen=True)
class ScoringParams:
    score: list[str]
    compare: list[str]
    residual: str
    mc_samples: int
    smoothing_sigma_vox: float
    grad_smoothing_sigma_vox: float
    restoration: RestorationParams
    std_smoothing_sigma_vox: float
    std_floor_fraction: float
    erode_brain_vox: int
    median_filter_vox: int
    min_component_voxels: int
    scan_statistic: str
    scan_top_voxels: int
    precision: str


@dataclass(frozen=True)
class CalibrateParams:
    voxel_fpr: float
    scan_fpr: float


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
    convention: str
    montage_slices: int
    finding_views: int
    max_findings: int
    viewer_max_slices: int
    display_mm: float
    heat_range: list[float]
    midline_mm: float
    gallery_max: int
    max_cases: int


@dataclass(frozen=True)
class ImputeParams:
    steps: int
    step_size: float
    ring_vox: int
    min_ring_voxels: int
    template_cover: float


@dataclass(frozen=True)
class GenerativeChecks:
    samples: int
    nearest_candidates: int
    impute_scans: int
    impute_cube_mm: float
    iwae_k: list[int]
    iwae_scans: int
    diversity_samples: int
    intensity_tolerance: float
    novelty_max_ssim: float
    impute_min_gain: float


@dataclass(frozen=True)
class GenerativeParams:
    temperature: float
    interpolation_steps: int
    max_step_ratio: float
    impute: ImputeParams
    iwae_samples: int
    iwae_batch: int
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
