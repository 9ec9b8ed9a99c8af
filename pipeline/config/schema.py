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

from dataclasses import dataclass, field
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
