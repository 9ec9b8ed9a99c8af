"""Parameters of scoring, calibration and evaluation.

Each class is one section of :class:`pipeline.config.schema.Params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipeline.config.constraints import above, at_least, choice, each, inside
from pipeline.config.kinds import KINDS


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
class DomainParams:
    tolerance: Annotated[float, above(0)]
    min_spread_fraction: Annotated[float, at_least(0)]
    site_versions: Annotated[int, at_least(0)]
    error_ratio: Annotated[float, at_least(1)]


@dataclass(frozen=True)
class CalibrateParams:
    voxel_fpr: Annotated[float, inside(0, 1)]
    scan_fpr: Annotated[float, inside(0, 1)]
    domain: DomainParams


@dataclass(frozen=True)
class ExtraCase:
    name: str
    image: str
    lesion_mask: str
    brain_mask: str


SITE_VARIANTS = ("resampled", "thick_slices", "derived_mask", "loose_mask", "gamma", "n4")


@dataclass(frozen=True)
class SitesParams:
    scans: Annotated[int, at_least(0)]
    variants: Annotated[list[str], each(choice(*SITE_VARIANTS))]
    resampled_mm: Annotated[float, above(0)]
    thick_slice_mm: Annotated[float, above(0)]
    loose_mask_mm: Annotated[float, above(0)]
    gamma: Annotated[float, above(0)]
    n4_levels: Annotated[int, at_least(1)]


@dataclass(frozen=True)
class DomainCase:
    name: str
    image: str
    brain_mask: str


@dataclass(frozen=True)
class EvaluateParams:
    n_thresholds: int
    curve_points: int
    autoencoder_baseline: bool
    extra_cases: list[ExtraCase]
    bootstrap_samples: Annotated[int, at_least(0)]
    bootstrap_bins: Annotated[int, at_least(2)]
    rim_mm: Annotated[float, above(0)]
    sites: SitesParams
    domain_cases: list[DomainCase]
