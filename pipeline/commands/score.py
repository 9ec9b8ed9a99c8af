"""``vae-anomaly score``: native-space scans in, contract outputs on each scan's own grid.

Example:
    $ vae-anomaly score sub-01_T1.nii.gz sub-02_T1.nii.gz --out results/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config.code import package_digest
from pipeline.config.output_schema import ReportParams
from pipeline.io.atomic import all_or_nothing, check_writable_dir
from pipeline.io.errors import ScanError, UsageError, one_line, shown
from pipeline.io.nifti import stem
from pipeline.model import distributed
from pipeline.model.distributed import World
from pipeline.model.runtime import score_dtype
from pipeline.modelstore.folder import CALIBRATION_JSON, MODEL_JSON
from pipeline.modelstore.loading import command_model_uri, load_for_command
from pipeline.modelstore.types import LoadedModel
from pipeline.preprocess.prepare import Prepared
from pipeline.scoring.batch import (
    MANIFEST,
    Entry,
    Failed,
    Job,
    default_workers,
    prepared_in_order,
    share,
    write_manifest,
)
from pipeline.scoring.domain import OUT_OF_DISTRIBUTION
from pipeline.scoring.outputs import ScanOutputs, check_output_paths, scan_outputs, write_outputs
from pipeline.scoring.provenance import model_fingerprint, scan_provenance, up_to_date
from pipeline.scoring.result import summarise
from pipeline.space.template import load_template


def finish(loaded: LoadedModel, job: Job, got: Prepared, out: Path, look: ReportParams,
           report: bool) -> str:
    """Model pass, native maps, summary, report and outputs of one prepared scan; if
    writing fails, none of the scan's files is left. Returns the verdict."""
    from pipeline.scoring.maps import score_prepared

    timings = dict(got.timings)
    t0 = time.perf_counter()
    result = score_prepared(loaded, got.prepared)
    timings["model_and_mapping"] = time.perf_counter() - t0
    summary = summarise(job.scan, result, loaded, got.prepared.record, timings,
                        got.warnings + result.warnings)
    summary.extra["provenance"] = job.provenance or {}
    page = None
    if report:
        from pipeline.reporting.scan_report import (
            CanonicalVolumes,
            ReportVolumes,
            render_scan_report,
        )

        t0 = time.perf_counter()
        vols = ReportVolumes(np.asarray(got.img.dataobj), got.img.affine, result.heatmap,
                             result.mask, result.reconstruction, result.restoration)
        page = render_scan_report(CanonicalVolumes(vols), summary, loaded.healthy_scan_scores(),
                                  look)
        summary.timings_s["report"] = time.perf_counter() - t0
    files = scan_outputs(out, job.name)
    with all_or_nothing(files.every()):
        write_outputs(files, result, got.img, summary, html=page, images=False)
    return summary.verdict


def score_command(args: argparse.Namespace) -> int:
    """Score every input (this rank's share under torchrun); write the manifest; exit 0 when
    all inputs of the whole run were scored or up to date, else 1."""
    scans = expand_folders(list(args.scans))
    if args.brain_mask and len(scans) != len(args.scans):
        raise UsageError("--brain-mask cannot be paired with folder inputs: give the scans")
    masks: list[Path | None] = list(args.brain_mask) if args.brain_mask else [None] * len(scans)
    if len(masks) != len(scans):
        raise UsageError(f"--brain-mask given {len(masks)} time(s) for {len(scans)} scan(s)")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 or more")
    world = distributed.from_env()
    uri = command_model_uri(args.model)  # before any file is created
    check_writable_dir(args.out)
    loaded = load_for_command(uri, args.device, world=world)
    return score_loaded(args, loaded, world, scans, masks)


def score_loaded(args: argparse.Namespace, loaded: LoadedModel, world: World,
                 scans: list[Path], masks: list[Path | None]) -> int:
    """Score the scans with a model already loaded (the CLI, and the MLflow model's
    ``predict``): outputs, manifest, exit status."""
    run = _Run(args, loaded, world)
    entries, jobs = run.plan(scans, masks)
    entries.update(run.score(jobs))
    return run.finish([entries[i] for i in sorted(entries)], scans)


class _Run:
    """One ``score`` invocation on this rank: its model, options and output folder."""

    def __init__(self, args: argparse.Namespace, loaded: LoadedModel, world: World) -> None:
        self.args, self.loaded, self.world = args, loaded, world
        self.report = not args.no_report
        self.fingerprint = model_fingerprint(loaded.folder, (MODEL_JSON, CALIBRATION_JSON))
        device = next(loaded.vae.parameters()).device
        self.options = {"report": self.report, "convention": args.convention,
                        "device": device.type, "code": package_digest(),
                        "precision": str(score_dtype(loaded.params.scoring.precision, device))}
        look = loaded.params.report
        self.look = replace(look, convention=args.convention) if args.convention else look

    def plan(self, scans: list[Path], masks: list[Path | None]
             ) -> tuple[dict[int, Entry], list[Job]]:
        """This rank's inputs: failed or up to date at once, the others as jobs."""
        names = output_names(scans)
        entries: dict[int, Entry] = {}
        jobs = []
        for i in share(len(scans), self.world):
            scan, mask, name = scans[i], masks[i], names[i]
            try:
                if isinstance(name, ScanError):
                    raise name
                files = scan_outputs(self.args.out, name)
                check_output_paths(files)  # never read or write through a link
                prov = _provenance(scan, mask, self.fingerprint, self.options)
                if prov is not None and not self.args.force and up_to_date(files.json, prov):
                    print(f"up to date: {shown(scan)} (outputs kept; --force re-scores)")
                    entries[i] = self._entry(scan, "up_to_date", files, _kept_verdict(files))
                    continue
                jobs.append(Job(scan, mask, name, prov, index=i))
            except ScanError as exc:
                entries[i] = _failed(scan, exc, self.world)
        return entries, jobs

    def score(self, jobs: list[Job]) -> dict[int, Entry]:
        """Prepare (in workers, ahead of the model) and score the jobs, in order."""
        args, loaded = self.args, self.loaded
        workers = default_workers(len(jobs), self.world) if args.workers is None \
            else args.workers
        tpl = load_template(loaded.params.template.resolution_mm,
                            loaded.params.template.crop_shape)
        entries = {}
        progress = Progress(len(jobs))
        for job, got in prepared_in_order(jobs, loaded.params, loaded.head_atlas,
                                                  loaded.scale, tpl, workers):
            try:
                if isinstance(got, Failed):
                    if args.debug and got.trace:
                        print(got.trace, file=sys.stderr, end="")
                    raise ScanError(got.reason)
                verdict = finish(loaded, job, got, args.out, self.look, self.report)
                if verdict == OUT_OF_DISTRIBUTION:
                    print(f"warning: {shown(job.scan)}: out of distribution: the model cannot "
                          f"judge this scan (see its JSON 'domain')", file=sys.stderr)
                entries[job.index] = self._entry(job.scan, "scored",
                                                 scan_outputs(args.out, job.name), verdict)
                progress.done(job.scan, verdict)
            except Exception as exc:
                if args.debug and not isinstance(exc, ScanError):
                    traceback.print_exc()
                entries[job.index] = _failed(job.scan, exc, self.world)
                progress.done(job.scan, "failed")
        return entries

    def finish(self, mine: list[Entry], scans: list[Path]) -> int:
        """Write the manifest (rank 0, for the whole run) and return the exit status."""
        model = {"uri": self.loaded.uri,
                 "version": self.loaded.meta.get("mlflow", {}).get("version"),
                 "fingerprint": self.fingerprint}
        run_key = sha256_text(json.dumps([self.fingerprint, [str(p) for p in scans]]))
        manifest = write_manifest(self.args.out, mine, self.world, model, run_key)
        if manifest is None:  # not rank 0: rank 0 answers for the whole run
            return 0
        if manifest["error"]:
            print(f"error: {manifest['error']} (see {shown(self.args.out / MANIFEST)})",
                  file=sys.stderr)
        if len(scans) > 1:
            c = manifest["counts"]
            print(f"{len(scans)} inputs: {c['scored']} scored, {c['up_to_date']} up to date, "
                  f"{c['failed']} failed; {c['normal']} normal, {c['abnormal']} abnormal, "
                  f"{c['out_of_distribution']} out of distribution "
                  f"({shown(self.args.out / MANIFEST)})")
        return 1 if manifest["counts"]["failed"] or manifest["error"] else 0

    def _entry(self, scan: Path, status: str, files: ScanOutputs, verdict: str | None
               ) -> Entry:
        """A scored or up-to-date input with the outputs of this run (not an older report)."""
        return Entry(str(scan), status, self.world.rank,
                     outputs={k: str(p) for k, p in files.listed(self.report).items()},
                     verdict=verdict)


NIFTI_SUFFIXES = (".nii", ".nii.gz")


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
    """One line per finished scan on a terminal (nothing when the output is redirected)."""

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.show = total > 1 and sys.stdout.isatty()

    def done(self, scan: Path, outcome: str | None) -> None:
        self.count += 1
        if self.show:
            print(f"[{self.count}/{self.total}] {outcome}: {shown(scan)}", flush=True)


def _kept_verdict(files: ScanOutputs) -> str | None:
    """The verdict recorded by the kept outputs of an up-to-date scan."""
    try:
        return str(json.loads(files.json.read_text()).get("verdict")) or None
    except (OSError, ValueError):
        return None


def output_names(scans: list[Path]) -> list[str | ScanError]:
    """Each input's output name, or why it has none (the first of two equal names wins;
    the manifest's own name is reserved)."""
    seen: set[str] = {Path(MANIFEST).stem}
    names: list[str | ScanError] = []
    for scan in scans:
        name = stem(scan)
        if name in seen:
            names.append(ScanError(f"another input (or the manifest) has the same output name "
                                   f"{name!r}"))
            continue
        seen.add(name)
        names.append(name)
    return names


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _failed(scan: Path, exc: BaseException, world: World) -> Entry:
    reason = one_line(exc)
    print(f"error: {shown(scan)}: {reason}", file=sys.stderr)
    return Entry(str(scan), "failed", world.rank, error=reason)


def _provenance(scan: Path, mask: Path | None, fingerprint: str, options: dict[str, Any]
                ) -> dict[str, Any] | None:
    """The scan's provenance, or None when a file cannot be hashed (loading then says why)."""
    try:
        return scan_provenance(scan, mask, fingerprint, options)
    except OSError:
        return None
