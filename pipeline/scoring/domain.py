"""Can the model judge this scan? A per-scan domain check calibrated on healthy scans.

A map is only as good as the match between the scan and what the model was trained on. Two
statistics of the prepared (template-space, harmonised) scan are compared with their range
over the healthy calibration scans:

- ``tissue_contrast``: the correlation, inside the scored brain, of the scan with the model's
  mean training image. A scan of the training modality and contrast correlates highly (grey
  matter, white matter and CSF where the cohort has them); another modality (a T2 or FLAIR
  given to a T1 model: CSF bright), a mask given as an image, or a very different anatomy
  does not. Too low is out of range.
- ``reconstruction_error``: the median |x - x̂| inside the scored brain, the model's fit of
  the scan's typical (healthy-looking) tissue; a median ignores lesions of up to half the
  brain. Too high is out of range.

Each statistic's healthy range is one-sided: the calibration scans' median -/+
``calibrate.domain.tolerance`` robust standard deviations (1.4826 x the median absolute
deviation, floored at ``min_spread_fraction`` of the median). A scan outside either range is
*out of distribution*: ``score`` still writes its map, but the verdict says the map cannot be
trusted rather than calling the scan normal or abnormal.

Example:
    >>> from pipeline.config.scoring_schema import DomainParams
    >>> dp = DomainParams(tolerance=5.0, min_spread_fraction=0.02)
    >>> healthy = [{"tissue_contrast": 0.85 + 0.01 * i, "reconstruction_error": 0.045}
    ...            for i in range(-3, 4)]
    >>> ranges = fit_ranges(healthy, dp)
    >>> judge({"tissue_contrast": 0.84, "reconstruction_error": 0.046}, ranges).in_distribution
    True
    >>> t2 = judge({"tissue_contrast": -0.2, "reconstruction_error": 0.11}, ranges)
    >>> t2.in_distribution, t2.outside
    (False, ['tissue_contrast', 'reconstruction_error'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config.scoring_schema import DomainParams

NORMAL, ABNORMAL, OUT_OF_DISTRIBUTION = "normal", "abnormal", "out of distribution"
VERDICTS = (NORMAL, ABNORMAL, OUT_OF_DISTRIBUTION)  # a scored scan's verdict
MAD_TO_STD = 1.4826
# statistic -> which side is out of range ("low": below the range, "high": above it)
STATISTICS = {"tissue_contrast": "low", "reconstruction_error": "high"}
DECIMALS = 4


def statistics(image: np.ndarray, region: np.ndarray, reference: np.ndarray,
               reconstruction: np.ndarray | None) -> dict[str, float]:
    """The domain statistics of one template-space scan (``reference``: the model's mean
    training image; no ``reconstruction``: no reconstruction error)."""
    x = image[region].astype(np.float64)
    m = reference[region].astype(np.float64)
    ok = x.size > 1 and x.std() > 0 and m.std() > 0
    contrast = float(np.corrcoef(x, m)[0, 1]) if ok else 0.0
    out = {"tissue_contrast": contrast if np.isfinite(contrast) else 0.0}
    if reconstruction is not None and x.size:
        out["reconstruction_error"] = float(np.median(np.abs(x - reconstruction[region])))
    return out


Range = list[float | None]  # [low, high]; None: that side is open


def fit_ranges(healthy: list[dict[str, float]], dp: DomainParams) -> dict[str, Range]:
    """Each statistic's healthy range ``[low, high]`` (one side open: None) from the
    statistics of the healthy calibration scans."""
    ranges: dict[str, Range] = {}
    for name, side in STATISTICS.items():
        values = np.array([h[name] for h in healthy], dtype=np.float64)
        median = float(np.median(values))
        spread = max(MAD_TO_STD * float(np.median(np.abs(values - median))),
                     dp.min_spread_fraction * abs(median))
        bound = median - dp.tolerance * spread if side == "low" \
            else median + dp.tolerance * spread
        ranges[name] = [round(bound, DECIMALS), None] if side == "low" \
            else [None, round(bound, DECIMALS)]
    return ranges


@dataclass
class DomainVerdict:
    """Whether a scan lies inside the healthy range of every statistic."""

    values: dict[str, float]
    ranges: dict[str, Range]
    outside: list[str] = field(default_factory=list)

    @property
    def in_distribution(self) -> bool:
        return not self.outside

    def to_json(self) -> dict[str, Any]:
        return {"in_distribution": self.in_distribution, "outside": list(self.outside),
                "statistics": {k: {"value": round(v, DECIMALS),
                                   "healthy_range": list(self.ranges[k])}
                               for k, v in self.values.items() if k in self.ranges},
                "calibrated_on": "the healthy calibration scans (median -/+ tolerance x "
                                 "robust std)"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DomainVerdict:
        """The verdict a scan's JSON ``domain`` block records (empty: not checked)."""
        stats = data.get("statistics", {})
        return cls(values={k: float(v["value"]) for k, v in stats.items()},
                   ranges={k: list(v["healthy_range"]) for k, v in stats.items()},
                   outside=list(data.get("outside", [])))

    def _bound(self, name: str) -> str:
        low, high = self.ranges[name]
        return f">= {low}" if STATISTICS[name] == "low" else f"<= {high}"

    def summary(self) -> str:
        """Every statistic against its healthy range, in one line (the report header)."""
        if not self.ranges:
            return "not calibrated (a model calibrated before the check existed)"
        state = "inside" if self.in_distribution else "OUTSIDE"
        return f"{state} the healthy range: " + "; ".join(
            f"{k.replace('_', ' ')} {round(v, DECIMALS)} (healthy {self._bound(k)})"
            for k, v in self.values.items() if k in self.ranges)

    def reason(self) -> str:
        """Why a scan is out of distribution, as the report's banner says it."""
        return ("unlike the healthy scans the model was calibrated on ("
                + ", ".join(o.replace("_", " ") for o in self.outside)
                + " outside the healthy range).")

    def describe(self) -> str:
        """One line for reports and warnings."""
        parts = [f"{k.replace('_', ' ')} {self.values[k]:.3f} (healthy {self._bound(k)})"
                 for k in self.outside]
        return ("outside what the model was trained on: " + "; ".join(parts)
                + ". The map cannot be trusted for this scan.")


def _inside(value: float, bounds: Range) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def judge(values: dict[str, float], ranges: dict[str, Range]) -> DomainVerdict:
    """The verdict on one scan's statistics (a model calibrated before the check existed
    has no ranges: every scan is in distribution)."""
    outside = [k for k, bounds in ranges.items() if k in values and not _inside(values[k],
                                                                                bounds)]
    return DomainVerdict(values=dict(values), ranges=ranges, outside=outside)
