"""The parameter schema: :class:`Params`, whose sections (one frozen dataclass per section of
``configs/params.yaml``, each field with its allowed values as an ``Annotated`` rule) live in
``data_schema``, ``model_schema``, ``scoring_schema`` and ``output_schema``;
:mod:`pipeline.config.params` validates the YAML into them.

Example:
    >>> from pipeline.config.data_schema import TemplateParams
    >>> TemplateParams(resolution_mm=2.0, crop_shape=[80, 96, 80]).resolution_mm
    2.0
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.config import paths
from pipeline.config.data_schema import (
    CohortParams,
    DemoParams,
    LesionParams,
    PrepareParams,
    SplitParams,
    TemplateParams,
)
from pipeline.config.model_schema import (
    ModelParams,
    TrainParams,
)
from pipeline.config.output_schema import (
    GenerativeParams,
    MlflowParams,
    ReportParams,
)
from pipeline.config.scoring_schema import (
    CalibrateParams,
    EvaluateParams,
    ScoringParams,
)
from pipeline.config.validation_schema import ValidationParams


@dataclass(frozen=True)
class ModelConfig:
    """What a model folder stores of the parameters, and a loaded model carries: how scans
    are prepared for it (``seed``, ``template``, ``prepare``), its network (``model``), how
    it was trained (``train``, its provenance), how it scores (``scoring``) and the defaults
    of what it writes for people (``report``, ``generative``). The experiment around it
    (cohort, split, synthetic lesions, evaluation, tracking) stays with the project."""

    seed: int
    template: TemplateParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    scoring: ScoringParams
    report: ReportParams
    generative: GenerativeParams


MODEL_SECTIONS = tuple(f.name for f in fields(ModelConfig))


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
    validation: ValidationParams
    evaluate: EvaluateParams
    mlflow: MlflowParams
    report: ReportParams
    generative: GenerativeParams
    root: Path = field(default=Path("."), compare=False)

    def cohort_folder(self) -> Path:
        return paths.resolve(self.cohort.folder, self.root)

    def model_config(self) -> ModelConfig:
        """The sections a model trained with these parameters keeps (:class:`ModelConfig`)."""
        return ModelConfig(**{name: getattr(self, name) for name in MODEL_SECTIONS})
