"""What a model folder holds, as types: the calibration of its maps and the loaded model.

A calibrated model carries, for every map it can write, the voxel-wise healthy statistics of
each normative score type (:class:`Normative`) and one :class:`Thresholds` pair: the voxel
``threshold`` (the map value above which a voxel is flagged) and the ``scan_threshold``
(the scan score above which a scan is abnormal), both chosen on healthy calibration scans.

Example:
    >>> import numpy as np
    >>> th = Thresholds(threshold=3.1, scan_threshold=4.0, healthy_scan_scores=[2.5, 3.2])
    >>> calib = Calibration(score=["nll", "intensity_normative"], stats={},
    ...                     thresholds={"nll+intensity_normative": th})
    >>> calib.primary, calib.threshold, calib.scan_threshold
    ('nll+intensity_normative', 3.1, 4.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config.schema import ModelConfig
from pipeline.preprocess.prepare import Preprocessor
from pipeline.space.template import Template


class ModelError(Exception):
    """A model that cannot be found, verified or used; ``str()`` is one line."""


@dataclass
class Normative:
    """Voxel-wise healthy mean and (floored) std of one raw score type, template space."""

    mean: np.ndarray
    std: np.ndarray


@dataclass
class Thresholds:
    """Thresholds of one calibrated map, chosen on healthy calibration scans."""

    threshold: float             # voxel: map value above which a voxel is flagged
    scan_threshold: float        # scan score above which a scan is abnormal
    healthy_scan_scores: list[float] = field(default_factory=list)


def map_name(score: list[str]) -> str:
    """Name of the map combining the ``score`` types (``residual+elbo_grad``)."""
    return "+".join(score)


@dataclass
class Calibration:
    """Everything scoring needs beyond the weights: which score, its statistics, thresholds.

    ``score`` lists the types whose calibrated maps are averaged into the primary map (the
    one ``score`` writes); ``thresholds`` holds one entry per calibrated map, keyed by
    :func:`map_name` (the primary combination and every compared type).
    """

    score: list[str]
    stats: dict[str, Normative]
    thresholds: dict[str, Thresholds]
    info: dict[str, Any] = field(default_factory=dict)
    domain: dict[str, list[float | None]] = field(default_factory=dict)  # healthy ranges

    @property
    def primary(self) -> str:
        return map_name(self.score)

    @property
    def threshold(self) -> float:
        """The primary map's voxel threshold."""
        return self.thresholds[self.primary].threshold

    @property
    def scan_threshold(self) -> float:
        return self.thresholds[self.primary].scan_threshold

    def healthy_scan_scores(self) -> list[float]:
        """Scan scores of the healthy calibration scans (the reference shown in reports)."""
        return list(self.thresholds[self.primary].healthy_scan_scores)


@dataclass
class LoadedModel:
    """A verified model folder in memory: network, parameters, metadata, calibration, and
    the preprocessor (verified template, head atlas, standard scale) scans are prepared with
    for it."""

    vae: Any
    params: ModelConfig          # the parameter sections the model keeps
    meta: dict[str, Any]
    folder: Path
    uri: str
    preprocessor: Preprocessor
    calibration: Calibration | None = None

    @property
    def template(self) -> Template:
        """The model's own template (read from its folder, checksum verified)."""
        return self.preprocessor.template

    def reference_image(self) -> np.ndarray:
        """The image a scan is compared with by the domain check: the network's mean
        training image (the template's T1 for networks without one)."""
        mean = getattr(self.vae, "mean_image", None)
        if mean is not None:
            return np.asarray(mean[0, 0].detach().float().cpu().numpy())
        return self.template.image

    def identity(self) -> dict[str, Any]:
        """Which model this is, as outputs name it: URI, registered name, version, run."""
        version = self.meta.get("mlflow", {})
        return {"uri": self.uri, "name": version.get("registered_model"),
                "version": version.get("version"), "run_id": version.get("run_id")}

    def trained_on(self) -> dict[str, Any]:
        return dict(self.meta.get("trained_on", {}))

    def calibrated(self) -> Calibration:
        """The calibration (a model loaded for scoring always has one)."""
        if self.calibration is None:
            raise ModelError(f"{self.uri}: model is not calibrated (run `vae-anomaly calibrate`)")
        return self.calibration

    def healthy_scan_scores(self) -> list[float]:
        return [] if self.calibration is None else self.calibration.healthy_scan_scores()
