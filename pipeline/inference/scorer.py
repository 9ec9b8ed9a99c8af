"""The scoring service: a loaded model in, typed results and the contract's files out.

Every caller scores through a :class:`Scorer`: the ``score`` command (files, batches,
``torchrun`` shards), the registered MLflow model's ``predict``, and evaluation (prepared
test cases, simulated sites, real lesion cases). One prepared scan is scored, summarised and
written in one place (:meth:`Scorer.score_case`), so what ``evaluate`` measures is what
``score`` writes. As nnU-Net v2's predictor and anomalib's ``Engine.predict`` do, the
service holds the model and returns results; the command line only parses and prints. The
HTML report is drawn by a renderer the caller hands over
(:func:`pipeline.reporting.scan_report.render_result`), so evaluation, which writes no
reports, does not depend on the report's code.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.config.output_schema import ReportParams
from pipeline.inference.batch import (
    MANIFEST,
    Entry,
    Failed,
    Job,
    prepared_in_order,
    write_manifest,
)
from pipeline.inference.options import MODEL_CONVENTION, ScoreOptions, Status
from pipeline.inference.plan import Plan
from pipeline.inference.results import RunResult, ScanOutcome, Scored, ScoredCase, failed
from pipeline.io.atomic import all_or_nothing
from pipeline.io.errors import ScanError, UsageError
from pipeline.model.distributed import SINGLE_PROCESS, World
from pipeline.modelstore.types import LoadedModel
from pipeline.preprocess.prepare import Prepared, require_registration
from pipeline.preprocess.record import PreparedScan, native_brain
from pipeline.scoring.maps import score_maps
from pipeline.scoring.outputs import ScanOutputs, write_outputs
from pipeline.scoring.result import ScanResult, ScanSummary, summarise

Renderer = Callable[[nib.Nifti1Image, ScanResult, ScanSummary, list[float], ReportParams],
                    str]


def _same(summary: ScanSummary) -> ScanSummary:
    return summary


def without_reports(*_: object) -> str:
    """The renderer of a scorer built without one: asking it for a report is an error."""
    raise UsageError("this scorer writes no HTML reports: build it with a renderer "
                     "(pipeline.reporting.scan_report.render_result) or score with "
                     "report=False")


def _nothing(outcome: ScanOutcome) -> None:
    return None


class Scorer:
    """Scores scans with one loaded, calibrated model.

    Args:
        model: the verified model (with its preprocessor and calibration).
        world: this process's place under ``torchrun`` (a single process by default).
        render: draws a scan's HTML report (:func:`without_reports`: none may be asked for).
    """

    def __init__(self, model: LoadedModel, world: World = SINGLE_PROCESS,
                 render: Renderer = without_reports) -> None:
        self.model, self.world, self.render = model, world, render

    def prepare(self, img: nib.Nifti1Image, mask: np.ndarray | None) -> PreparedScan:
        """Prepare a loaded native scan with the model's preprocessor; a registration that
        failed quality control is a :class:`~pipeline.io.errors.ScanError`."""
        pre = self.model.preprocessor
        prepared = pre.prepare_scan(img, mask)
        require_registration(prepared.record, pre.prepare.registration)
        return prepared

    def score_prepared(self, prepared: PreparedScan, compare: tuple[str, ...] = ()
                       ) -> Scored:
        """The primary map and the maps of ``compare`` of a prepared scan, native grid."""
        maps = score_maps(self.model, prepared, list(compare))
        return Scored(maps[self.model.calibrated().primary], maps, native_brain(prepared))

    def look(self, options: ScoreOptions) -> ReportParams:
        """The report's settings: the model's, with the run's convention."""
        look = self.model.params.report
        return look if options.convention == MODEL_CONVENTION else \
            replace(look, convention=options.convention)

    def score_case(self, source: str | Path, got: Prepared, files: ScanOutputs,
                   options: ScoreOptions, compare: tuple[str, ...] = (),
                   restate: Callable[[ScanSummary], ScanSummary] = _same,
                   images: bool = False) -> ScoredCase:
        """Score a prepared scan, summarise it (``restate`` adds what the caller records) and
        write its files (the report when ``options.report``, the reconstruction images when
        ``images``); if writing fails, none of the scan's files is left."""
        timings = dict(got.timings)
        t0 = time.perf_counter()
        scored = self.score_prepared(got.prepared, compare)
        timings["model_and_mapping"] = time.perf_counter() - t0
        r = scored.primary
        summary = restate(summarise(source, r, self.model, got.prepared.record, timings,
                                    got.warnings + r.warnings))
        page = self._report(got, r, summary, options) if options.report else None
        with all_or_nothing(files.every()):
            write_outputs(files, r, got.img, summary, html=page, images=images)
        return ScoredCase(scored, summary, files)

    def _report(self, got: Prepared, r: ScanResult, summary: ScanSummary,
                options: ScoreOptions) -> str:
        t0 = time.perf_counter()
        page = self.render(got.img, r, summary, self.model.healthy_scan_scores(),
                           self.look(options))
        summary.timings_s["report"] = time.perf_counter() - t0
        return page

    def score_files(self, scans: list[Path], masks: list[Path | None],
                    options: ScoreOptions,
                    on_outcome: Callable[[ScanOutcome], None] = _nothing) -> RunResult:
        """Score this rank's share of ``scans`` (each with its brain mask or ``None``) into
        ``options.out``, preparing ahead in worker processes, and write the run's manifest
        (rank 0, for every rank). ``on_outcome`` hears of each input as it ends."""
        if options.report and self.render is without_reports:
            without_reports()  # refused before any file is written
        plan = Plan.of(self.model, scans, masks, options, self.world)
        done = {o.index: o for o in plan.settled}
        for o in plan.settled:
            on_outcome(o)
        workers = plan.workers(options, self.world)
        for job, got in prepared_in_order(plan.jobs, self.model.preprocessor, workers):
            outcome = self._score_job(job, got, plan, options)
            done[outcome.index] = outcome
            on_outcome(outcome)
        mine = [done[i] for i in sorted(done)]
        return RunResult(mine, self._manifest(mine, scans, options, plan.fingerprint),
                         options.out / MANIFEST)

    def _score_job(self, job: Job, got: Prepared | Failed, plan: Plan, options: ScoreOptions
                   ) -> ScanOutcome:
        files = plan.files(job.name)
        try:
            if isinstance(got, Failed):
                if options.debug and got.trace:
                    print(got.trace, file=sys.stderr, end="")
                raise ScanError(got.reason)
            prov = job.provenance or {}
            case = self.score_case(job.scan, got, files, options, restate=lambda s: replace(
                s, extra={**s.extra, "provenance": prov}))
            return ScanOutcome(job.scan, Status.SCORED, job.index,
                               files.listed(options.report), case.summary.verdict,
                               case.summary)
        except Exception as exc:
            if options.debug and not isinstance(exc, ScanError):
                traceback.print_exc()
            return failed(job.scan, job.index, exc)

    def _manifest(self, mine: list[ScanOutcome], scans: list[Path], options: ScoreOptions,
                  fp: str) -> dict | None:
        """Gather every rank's entries; rank 0 writes and returns the manifest."""
        model = {"uri": self.model.uri, "version": self.model.identity()["version"],
                 "fingerprint": fp}
        run_key = hashlib.sha256(json.dumps([fp, [str(p) for p in scans]]).encode()
                                 ).hexdigest()
        entries = [Entry(str(o.input), o.status, self.world.rank,
                         outputs={k: str(p) for k, p in o.outputs.items()}, error=o.error,
                         verdict=o.verdict) for o in mine]
        return write_manifest(options.out, entries, self.world, model, run_key)
