"""Parameters of tracking, reports and the generative checks.

Each class is one section of :class:`pipeline.config.schema.Params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pipeline.config.constraints import above, at_least, below, between, choice, each, inside


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
    reconstruction_scans: Annotated[int, at_least(0)]


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
