"""Typed results of the scoring service, passed to the end (never read back from files).

Example:
    >>> from pathlib import Path
    >>> o = failed(Path("bad.nii.gz"), 0, ValueError("not a NIfTI file\\nsecond line"))
    >>> o.status, o.error
    (<Status.FAILED: 'failed'>, 'not a NIfTI file')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.inference.options import Status
from pipeline.io.errors import one_line
from pipeline.scoring.outputs import ScanOutputs
from pipeline.scoring.result import ScanResult, ScanSummary


@dataclass(frozen=True)
class Scored:
    """One prepared scan under a model: the primary result and every compared map (the
    primary among them), and the native brain mask they were scored in."""

    primary: ScanResult
    maps: dict[str, ScanResult]
    brain: np.ndarray


@dataclass(frozen=True)
class ScoredCase:
    """A scored scan whose outputs are written: its maps, its summary and its files."""

    scored: Scored
    summary: ScanSummary
    files: ScanOutputs


@dataclass(frozen=True)
class ScanOutcome:
    """What became of one input of a scoring run.

    ``summary`` is this run's (scored) or the kept one (up to date; ``None`` if it cannot be
    read); ``outputs`` lists the contract's files of the input by kind.
    """

    input: Path
    status: Status
    index: int
    outputs: dict[str, Path]
    verdict: str | None = None
    summary: ScanSummary | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunResult:
    """A whole scoring run: this rank's outcomes in input order and, on rank 0, the
    manifest it wrote (``None`` on the other ranks)."""

    outcomes: list[ScanOutcome]
    manifest: dict | None
    manifest_path: Path

    @property
    def exit_status(self) -> int:
        """0 when every input of the run was scored or up to date, else 1."""
        if self.manifest is None:
            return 0
        failures = self.manifest["counts"]["status"][Status.FAILED]
        return 1 if failures or self.manifest["error"] else 0


def failed(scan: Path, index: int, exc: BaseException) -> ScanOutcome:
    """A failed input, with its one-line reason."""
    return ScanOutcome(scan, Status.FAILED, index, {}, error=one_line(exc))
