"""``vae-anomaly score``: native-space scans in, contract outputs on each scan's own grid.

The command parses its arguments into :class:`~pipeline.inference.options.ScoreOptions`,
loads the model and hands the scans to the scoring service
(:class:`~pipeline.inference.scorer.Scorer`); what it adds is what a person at a terminal
reads: a line per failure, warning and kept scan, progress, and the run's summary line.

Example:
    $ vae-anomaly score sub-01_T1.nii.gz sub-02_T1.nii.gz --out results/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.inference.options import AUTO, MODEL_CONVENTION, ScoreOptions, Status
from pipeline.inference.results import RunResult, ScanOutcome
from pipeline.inference.scorer import Scorer
from pipeline.io.errors import UsageError, shown
from pipeline.model import distributed
from pipeline.modelstore.loading import model_for_command
from pipeline.reporting.scan_report import render_result
from pipeline.scoring.domain import ABNORMAL, NORMAL, OUT_OF_DISTRIBUTION

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def options_of(args: argparse.Namespace) -> ScoreOptions:
    """The parsed command line as scoring options."""
    return ScoreOptions(out=args.out, report=not args.no_report, force=args.force,
                        convention=args.convention or MODEL_CONVENTION,
                        workers=AUTO if args.workers is None else args.workers,
                        debug=bool(getattr(args, "debug", False)))


def score_command(args: argparse.Namespace) -> int:
    """Score every input (this rank's share under torchrun); write the manifest; exit 0 when
    all inputs of the whole run were scored or up to date, else 1."""
    scans = expand_folders(list(args.scans))
    if args.brain_mask and len(scans) != len(args.scans):
        raise UsageError("--brain-mask cannot be paired with folder inputs: give the scans")
    masks: list[Path | None] = list(args.brain_mask) if args.brain_mask else [None] * len(scans)
    if len(masks) != len(scans):
        raise UsageError(f"--brain-mask given {len(masks)} time(s) for {len(scans)} scan(s)")
    options = options_of(args)
    world = distributed.from_env()
    model = model_for_command(args.model, args.device, outs=(args.out,), world=world)
    progress = Progress(len(scans))
    run = Scorer(model, world, render_result).score_files(scans, masks, options, progress.done)
    return report_run(run, len(scans))


def report_run(run: RunResult, n_inputs: int) -> int:
    """Print the run's error and summary lines (rank 0); return the exit status."""
    manifest = run.manifest
    if manifest is None:  # not rank 0: rank 0 answers for the whole run
        return 0
    if manifest["error"]:
        print(f"error: {manifest['error']} (see {shown(run.manifest_path)})", file=sys.stderr)
    if n_inputs > 1:
        status, verdict = manifest["counts"]["status"], manifest["counts"]["verdict"]
        print(f"{n_inputs} inputs: {status[Status.SCORED]} scored, {status[Status.UP_TO_DATE]} "
              f"up to date, {status[Status.FAILED]} failed; {verdict[NORMAL]} normal, "
              f"{verdict[ABNORMAL]} abnormal, {verdict[OUT_OF_DISTRIBUTION]} out of "
              f"distribution ({shown(run.manifest_path)})")
    return run.exit_status


def expand_folders(inputs: list[Path]) -> list[Path]:
    """Each folder replaced by the NIfTI files in it (sorted; not recursive). A folder with
    none stays as it is, to fail as an input of its own."""
    out: list[Path] = []
    for p in inputs:
        try:
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(
                NIFTI_SUFFIXES)) if p.is_dir() else []
        except OSError:  # an unreadable folder fails as an input, with its reason
            found = []
        out.extend(found or [p])
    return out


class Progress:
    """The lines a person reads as inputs end: every failure, out-of-distribution warning
    and kept scan; on a terminal also one line per scored scan."""

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.show = total > 1 and sys.stdout.isatty()

    def done(self, o: ScanOutcome) -> None:
        self.count += 1
        if o.status == Status.FAILED:
            print(f"error: {shown(o.input)}: {o.error}", file=sys.stderr)
        elif o.status == Status.UP_TO_DATE:
            print(f"up to date: {shown(o.input)} (outputs kept; --force re-scores)")
            return
        elif o.verdict == OUT_OF_DISTRIBUTION:
            print(f"warning: {shown(o.input)}: out of distribution: the model cannot judge "
                  f"this scan (see its JSON 'domain')", file=sys.stderr)
        if self.show:
            print(f"[{self.count}/{self.total}] {o.verdict or o.status}: {shown(o.input)}",
                  flush=True)

