"""Typed results of scoring one scan, passed to the end: maps, then the summary record.

:class:`ScanResult` holds one calibrated map on the scan's native grid, its binary mask and
the scan-level score; :class:`ScanSummary` is what ``<stem>.json`` records about it (the
contract's ``scan_score``, ``threshold``, ``is_abnormal``, ``model``, ``trained_on`` and
timings, plus the findings, registration quality and warnings). Reports and the cohort page
read the summary, never a dictionary; numbers are rounded only when it is written.

Example:
    >>> s = ScanSummary(input="a.nii.gz", scan_score=3.21234567, scan_threshold=3.0,
    ...                 threshold=2.5, is_abnormal=True, flagged_voxels=10,
    ...                 flagged_volume_ml=0.08, score="nll", heatmap_units="z", findings=[],
    ...                 model={}, trained_on={}, registration={}, timings_s={"load": 0.1234},
    ...                 warnings=[], created="2026-12-01T00:00:00+00:00")
    >>> record = s.to_json()
    >>> record["scan_score"], record["timings_s"]
    (3.21235, {'load': 0.123})
    >>> ScanSummary.from_json(record).threshold
    2.5
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config.kinds import KINDS
from pipeline.modelstore.types import LoadedModel
from pipeline.preprocess.record import ScanRecord
from pipeline.scoring.domain import ABNORMAL, NORMAL, OUT_OF_DISTRIBUTION, DomainVerdict
from pipeline.scoring.findings import Finding, find_located
from pipeline.space.grid import voxel_volume_ml

SCORE_DECIMALS = 5   # scan score and thresholds in the JSON
TIMING_DECIMALS = 3


@dataclass
class ScanResult:
    """One scored scan: native-grid maps of one calibrated score and its scan-level score."""

    heatmap: np.ndarray
    mask: np.ndarray
    reconstruction: np.ndarray | None
    scan_score: float
    threshold: float             # the map's voxel threshold
    scan_threshold: float
    score: str = ""
    restoration: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    negative_elbo_nats: float | None = None
    warnings: list[str] = field(default_factory=list)
    domain: DomainVerdict | None = None

    @property
    def is_abnormal(self) -> bool:
        return self.scan_score > self.scan_threshold

    @property
    def verdict(self) -> str:
        """normal | abnormal | out of distribution (the map cannot be trusted)."""
        if self.domain is not None and not self.domain.in_distribution:
            return OUT_OF_DISTRIBUTION
        return ABNORMAL if self.is_abnormal else NORMAL


@dataclass
class ScanSummary:
    """The record of one scored scan (``<stem>.json``); ``extra`` holds what a stage adds
    (evaluation case, split, truth, log-likelihood; the provenance of ``score``)."""

    input: str
    scan_score: float
    scan_threshold: float
    threshold: float
    is_abnormal: bool
    flagged_voxels: int
    flagged_volume_ml: float
    score: str
    heatmap_units: str
    findings: list[Finding]
    model: dict[str, Any]
    trained_on: dict[str, Any]
    registration: dict[str, Any]
    timings_s: dict[str, float]
    warnings: list[str]
    created: str
    negative_elbo_nats: float | None = None
    verdict: str = ""            # normal | abnormal | out of distribution
    domain: dict[str, Any] = field(default_factory=dict)  # the domain check (domain.py)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def out_of_distribution(self) -> bool:
        return self.verdict == OUT_OF_DISTRIBUTION

    def to_json(self) -> dict[str, Any]:
        """The JSON record, in the contract's key order, numbers rounded."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        extra, elbo = data.pop("extra"), data.pop("negative_elbo_nats")
        verdict, checked = data.pop("verdict"), data.pop("domain")
        for key in ("scan_score", "scan_threshold", "threshold"):
            data[key] = round(float(data[key]), SCORE_DECIMALS)
        data["flagged_volume_ml"] = round(float(data["flagged_volume_ml"]), TIMING_DECIMALS)
        data["timings_s"] = {k: round(v, TIMING_DECIMALS) for k, v in self.timings_s.items()}
        data["findings"] = [f.to_json() for f in self.findings]
        out: dict[str, Any] = {}
        for key, value in data.items():
            out[key] = value
            if key == "is_abnormal":
                out.update(verdict=verdict, domain=checked)
            if key == "findings" and elbo is not None:
                out["negative_elbo_nats"] = elbo
        return {**out, **extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanSummary:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        known["findings"] = [Finding.from_json(f) for f in data.get("findings", [])]
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})


def _domain_warning(result: ScanResult) -> list[str]:
    if result.domain is None or result.domain.in_distribution:
        return []
    return ["out of distribution: " + result.domain.describe()]


def _describe(name: str) -> str:
    return "; ".join(KINDS[t].description for t in name.split("+") if t in KINDS) or name


def summarise(source: str | Path, result: ScanResult, loaded: LoadedModel, record: ScanRecord,
              timings: dict[str, float], warnings: list[str]) -> ScanSummary:
    """The summary of a scored scan: verdict, findings, model, registration, timings."""
    native_affine = np.asarray(record.native_affine)
    voxel_ml = voxel_volume_ml(native_affine)
    flagged = int(result.mask.sum())
    return ScanSummary(
        input=str(source), scan_score=result.scan_score, scan_threshold=result.scan_threshold,
        threshold=result.threshold, is_abnormal=bool(result.is_abnormal),
        flagged_voxels=flagged, flagged_volume_ml=flagged * voxel_ml, score=result.score,
        heatmap_units="mean of the healthy-calibrated z-scores of: " + _describe(result.score),
        findings=find_located(result.heatmap, result.mask, record,
                              loaded.params.report.midline_mm),
        model=loaded.identity(),
        trained_on=loaded.trained_on(),
        registration={"dice_with_template_brain": record.registration_dice,
                      "ok": record.registration_ok, "brain_mask": record.mask_source},
        timings_s=dict(timings), warnings=list(warnings) + _domain_warning(result),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        negative_elbo_nats=result.negative_elbo_nats, verdict=result.verdict,
        domain={} if result.domain is None else result.domain.to_json())
