"""What a scoring run is asked to do, and what became of each input: typed, end to end.

Example:
    >>> from pathlib import Path
    >>> options = ScoreOptions(out=Path("results"), report=False)
    >>> options.workers, options.convention, str(Status.UP_TO_DATE)
    ('auto', 'model', 'up_to_date')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pipeline.io.errors import UsageError

AUTO: Literal["auto"] = "auto"  # workers: one per CPU less one, none for a single scan
MODEL_CONVENTION = "model"  # convention: the model's ``report.convention``
CONVENTIONS = (MODEL_CONVENTION, "radiological", "neurological")


class Status(StrEnum):
    """What became of one input of a run (the manifest's ``status``)."""

    SCORED = "scored"
    UP_TO_DATE = "up_to_date"   # complete outputs of the same input, model and options kept
    FAILED = "failed"


@dataclass(frozen=True)
class ScoreOptions:
    """Options of a scoring run.

    Attributes:
        out: the output folder.
        report: write each scan's HTML report.
        force: re-score scans whose outputs are complete and up to date.
        convention: left/right display of the report's views (``model``: the model's own).
        workers: processes preparing the next scans while the model runs (``auto``: one per
            CPU less one, none for a single scan).
        debug: print tracebacks of unexpected failures.
    """

    out: Path
    report: bool = True
    force: bool = False
    convention: str = MODEL_CONVENTION
    workers: int | Literal["auto"] = AUTO
    debug: bool = False

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise UsageError(f"convention {self.convention!r}: one of {', '.join(CONVENTIONS)}")
        if self.workers != AUTO and (not isinstance(self.workers, int) or self.workers < 0):
            raise UsageError(f"--workers {self.workers}: give 0 or more")
