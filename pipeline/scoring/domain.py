"""Can the model judge this scan? A per-scan domain check calibrated on healthy scans.

A map is only as good as the match between the scan and what the model was trained on. Two
statistics of the prepared (template-space, harmonised) scan are compared with their range
over the healthy calibration scans:

- ``grey_white_contrast``: the scan's white-minus-grey-matter intensity difference relative
  to its white-minus-CSF difference, (WM − GM) / |WM − CSF|, each tissue's intensity the
  scan's median over the voxels the model's mean training image puts in that tissue (its
  darkest, middle and brightest brain voxels, :data:`TISSUE_QUANTILES`). It measures the
  contrast's *order*, not the anatomy: a T1 from any scanner, sequence or age keeps white
  matter brighter than grey matter (IXI: about 0.5), while a T2 or FLAIR given to a T1 model
  (grey matter brighter than white), or a mask given as an image, does not. It replaced the
  correlation with the mean image, which a sharper T1 of another scanner, or a brain with
  enlarged ventricles, failed as surely as a T2. Too low is out of range.
- ``reconstruction_error``: the median |x - x̂| inside the scored brain, the model's fit of
  the scan's typical (healthy-looking) tissue; a median ignores lesions of up to half the
  brain. Too high is out of range.

Each statistic's healthy range is one-sided: the calibration scans' median -/+
``calibrate.domain.tolerance`` robust standard deviations (1.4826 x the median absolute
deviation, floored at ``min_spread_fraction`` of the median); the reconstruction error's
bound is at least ``calibrate.domain.error_ratio`` times the healthy median. Scans of one
site vary so little that their spread alone would refuse every other scanner's T1 (a real
MS patient's T1 from another scanner: 1.7x the IXI median, its T2 and FLAIR 2.6-2.8x). A
scan outside either range is *out of distribution*: ``score`` still writes its map, but the
verdict says the map cannot be trusted rather than calling the scan normal or abnormal.

Example:
    >>> from pipeline.config.scoring_schema import DomainParams
    >>> dp = DomainParams(tolerance=5.0, min_spread_fraction=0.02, site_versions=0,
    ...                   error_ratio=2.0)
    >>> healthy = [{"grey_white_contrast": 0.5 + 0.01 * i, "reconstruction_error": 0.045}
    ...            for i in range(-3, 4)]
    >>> ranges = fit_ranges(healthy, dp)
    >>> judge({"grey_white_contrast": 0.47, "reconstruction_error": 0.046},
    ...       ranges).in_distribution
    True
    >>> t2 = judge({"grey_white_contrast": -0.6, "reconstruction_error": 0.11}, ranges)
    >>> t2.in_distribution, t2.outside
    (False, ['grey_white_contrast', 'reconstruction_error'])
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
STATISTICS = {"grey_white_contrast": "low", "reconstruction_error": "high"}
DECIMALS = 4
# Quantiles of the mean training image inside the brain that delimit its tissues: CSF below
# the first, grey matter between the middle two, white matter above the last (a blurred mean
# image keeps only the clearest voxels of each tissue at its extremes and its middle).
TISSUE_QUANTILES = (0.15, 0.45, 0.55, 0.85)
MIN_CONTRAST = 1e-3  # |WM - CSF| below this: no tissue contrast at all (the statistic is 0)


def grey_white_contrast(x: np.ndarray, m: np.ndarray) -> float:
    """(WM − GM) / |WM − CSF| of the brain intensities ``x``, each tissue the voxels of the
    reference intensities ``m`` in its :data:`TISSUE_QUANTILES` band (0 when undefined)."""
    if x.size < len(TISSUE_QUANTILES) or not m.std() > 0:
        return 0.0
    q = np.quantile(m, TISSUE_QUANTILES)
    bands = (m <= q[0], (m >= q[1]) & (m <= q[2]), m >= q[3])
    if not all(b.any() for b in bands):
        return 0.0
    csf, grey, white = (float(np.median(x[b])) for b in bands)
    spread = abs(white - csf)
    return (white - grey) / spread if spread > MIN_CONTRAST else 0.0


def statistics(image: np.ndarray, region: np.ndarray, reference: np.ndarray,
               reconstruction: np.ndarray | None) -> dict[str, float]:
    """The domain statistics of one template-space scan (``reference``: the model's mean
    training image; no ``reconstruction``: no reconstruction error)."""
    x = image[region].astype(np.float64)
    m = reference[region].astype(np.float64)
    out = {"grey_white_contrast": grey_white_contrast(x, m)}
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
            else max(median + dp.tolerance * spread, dp.error_ratio * median)
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
