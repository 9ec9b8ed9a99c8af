"""Parameters of the cohort, its split, the synthetic lesions and preprocessing.

Each class is one section of :class:`pipeline.config.schema.Params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipeline.config.constraints import above, at_least, choice, each, inside


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
class HarmoniseParams:
    method: Annotated[str, choice("nyul", "none")]
    quantiles: Annotated[list[float], each(inside(0.0, 1.0), nonempty=True)]


@dataclass(frozen=True)
class PrepareParams:
    workers: int
    cache: bool
    qc_thumbnail_scale: int
    bias_field: BiasFieldParams
    registration: RegistrationParams
    brain_mask: BrainMaskParams
    normalise: NormaliseParams
    harmonise: HarmoniseParams
    match_resolution: bool
