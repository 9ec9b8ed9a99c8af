"""Intensity harmonisation: Nyúl–Udupa piecewise-linear histogram standardisation.

Scanners differ in more than the intensity scale that ``normalise`` removes: the contrast
between grey matter, white matter and CSF (the shape of the brain's histogram) changes with
field strength, sequence and site. Nyúl & Udupa (2000) learn a *standard scale* on the healthy
training scans: the brain's intensities at ``prepare.harmonise.quantiles`` (the landmarks),
averaged over the training scans after ``normalise``. A scan is harmonised by mapping its own
landmarks piecewise-linearly onto the standard ones (linearly extended beyond the outer
landmarks, then clipped like ``normalise``), so every scan's brain histogram lines up with the
training cohort's at those quantiles. ``prepare`` learns the scale from the training split
(``data/prepared/harmonisation.json``, kept in every ``model.json``) and applies it to every
prepared scan; ``score`` and the generative commands apply the model's scale through the same
:func:`harmonise`. The mapping is monotone and recorded (the scan's landmarks), hence invertible.

torchio's ``HistogramStandardization`` implements the same method on image files; this module
works on the in-memory template-space volumes that ``prepare`` already holds.

Example:
    >>> import numpy as np
    >>> from pipeline.config.data_schema import HarmoniseParams
    >>> hp = HarmoniseParams(method="nyul", quantiles=[0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6,
    ...     0.7, 0.8, 0.9, 0.95, 0.99])
    >>> rng = np.random.default_rng(0)
    >>> brain = np.ones((10, 10, 10), bool)
    >>> train = [(rng.random((10, 10, 10)).astype(np.float32), brain) for _ in range(3)]
    >>> scale = learn(train, hp)
    >>> scale.n_scans, len(scale.landmarks) == len(hp.quantiles)
    (3, True)
    >>> squeezed = (train[0][0] ** 2).astype(np.float32)   # a different contrast
    >>> out, own = harmonise(squeezed, brain, scale, (-0.5, 2.0))
    >>> bool(np.allclose(np.quantile(out, hp.quantiles), scale.landmarks, atol=0.01))
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config.data_schema import HarmoniseParams
from pipeline.io.errors import ScanError


@dataclass(frozen=True)
class StandardScale:
    """The learned standard scale: the landmarks' quantiles and their standard intensities
    (``method`` none: no landmarks, :func:`harmonise` returns the image unchanged)."""

    method: str
    quantiles: tuple[float, ...]
    landmarks: tuple[float, ...]
    n_scans: int

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "quantiles": list(self.quantiles),
                "landmarks": [round(v, 6) for v in self.landmarks], "n_scans": self.n_scans}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StandardScale:
        return cls(str(data["method"]), tuple(map(float, data["quantiles"])),
                   tuple(map(float, data["landmarks"])), int(data["n_scans"]))


NONE = StandardScale("none", (), (), 0)


def scan_landmarks(image: np.ndarray, brain: np.ndarray, quantiles: Iterable[float]
                   ) -> np.ndarray:
    """The brain's intensities at ``quantiles``."""
    inside = image[brain]
    if inside.size == 0:
        raise ScanError("no brain voxels to harmonise")
    return np.quantile(inside, list(quantiles))


def learn(scans: Iterable[tuple[np.ndarray, np.ndarray]], hp: HarmoniseParams) -> StandardScale:
    """The standard scale of ``hp.method`` from (image, brain) pairs of the training scans."""
    if hp.method == "none":
        return NONE
    marks = [scan_landmarks(image, brain, hp.quantiles) for image, brain in scans]
    if not marks:
        raise ValueError("prepare.harmonise: no training scans to learn the standard scale from")
    mean = np.mean(marks, axis=0)
    return StandardScale(hp.method, tuple(hp.quantiles), tuple(float(v) for v in mean),
                         len(marks))


def _piecewise(x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Piecewise-linear map through (src, dst), extended linearly beyond both ends."""
    out = np.interp(x, src, dst)
    low_slope = (dst[1] - dst[0]) / (src[1] - src[0])
    high_slope = (dst[-1] - dst[-2]) / (src[-1] - src[-2])
    out = np.where(x < src[0], dst[0] + (x - src[0]) * low_slope, out)
    return np.where(x > src[-1], dst[-1] + (x - src[-1]) * high_slope, out)


def harmonise(image: np.ndarray, brain: np.ndarray, scale: StandardScale,
              clip: tuple[float, float] | list[float]) -> tuple[np.ndarray, list[float]]:
    """The image on the standard scale (background 0, clipped to ``clip``) and the scan's own
    landmarks (its record: with the standard ones they invert the mapping)."""
    if scale.method == "none":
        return image, []
    own = scan_landmarks(image, brain, scale.quantiles)
    if np.any(np.diff(own) <= 0):
        raise ScanError("the brain's intensity histogram has too little contrast to harmonise "
                        "(equal landmarks)")
    mapped = _piecewise(image.astype(np.float64), own, np.asarray(scale.landmarks))
    out = np.where(brain, np.clip(mapped, clip[0], clip[1]), 0.0).astype(np.float32)
    return out, [float(v) for v in own]
