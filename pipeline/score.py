"""``vae-anomaly score``: native-space scans in, contract outputs on each scan's own grid.

Example:
    $ vae-anomaly score sub-01_T1.nii.gz sub-02_T1.nii.gz --out results/
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.batch import (
    MANIFEST,
    Entry,
    Failed,
    Job,
    Prepared,
    default_workers,
    prepared_in_order,
    share,
    write_manifest,
)
from pipeline.config import UsageError
from pipeline.distributed import World
from pipeline.modelio import CALIBRATION_JSON, MODEL_JSON, LoadedModel, ModelError, load_model
from pipeline.nifti import ScanError, one_line, shown, stem
from pipeline.outputs import check_output_paths, output_paths, summary, write_outputs
from pipeline.provenance import code_digest, model_fingerprint, scan_provenance, up_to_date


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{out}: output folder is not writable ({exc.strerror or exc})") from exc


def load_for_cli(model: str | None, device_choice: str, require_calibration: bool = True,
                 world: World | None = None) -> LoadedModel:
    """The model a command asked for, on the device it asked for (under torchrun: this rank's
    GPU, ``cuda:LOCAL_RANK``); usage errors exit 2."""
    try:
        import torch

        device = "cuda" if device_choice == "cuda" or (
            device_choice == "auto" and torch.cuda.is_available()) else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda requested but no CUDA device is available")
        if device == "cuda":  # same scan, same GPU, same map (README "Determinism")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
            if world is not None and world.distributed:
                if world.local_rank >= torch.cuda.device_count():
                    raise UsageError(f"local rank {world.local_rank} has no GPU of its own "
                                     f"({torch.cuda.device_count()} visible)")
                torch.cuda.set_device(world.local_rank)
                device = f"cuda:{world.local_rank}"
        return load_model(model, device=device, require_calibration=require_calibration)
    except ModelError as exc:
        raise UsageError(f"model: {exc}") from exc


def finish(loaded: LoadedModel, scan: Path, got: Prepared, out: Path, report: bool,
           convention: str | None = None, provenance: dict[str, Any] | None = None
           ) -> dict[str, Path]:
    """Model pass, native maps, report and outputs of one prepared scan."""
    from pipeline.scoring import score_prepared

    img, prepared, timings = got.img, got.prepared, dict(got.timings)
    t0 = time.perf_counter()
    result = score_prepared(loaded, prepared)
    timings["model_and_mapping"] = time.perf_counter() - t0
    info = summary(scan, result, loaded, prepared.record, timings,
                   warnings=got.warnings + result.warnings)
    if provenance is not None:
        info["provenance"] = provenance
    page = None
    if report:
        from pipeline.report import ReportVolumes, render_scan_report

        t0 = time.perf_counter()
        look = loaded.params.report
        if convention:
            look = dataclasses.replace(look, convention=convention)
        vols = ReportVolumes(np.asarray(img.dataobj), img.affine, result.heatmap, result.mask,
                             result.reconstruction, result.restoration)
        page = render_scan_report(vols, info, loaded.healthy_scan_scores(), look)
        info["timings_s"]["report"] = round(time.perf_counter() - t0, 3)
    name = stem(scan)
    try:
        return write_outputs(out, name, result, img, info, html=page)
    except BaseException:
        for p in output_paths(out, name).values():
            with contextlib.suppress(OSError):
                p.unlink()
        raise


def score_command(args: argparse.Namespace) -> int:
    """Score every input (this rank's share under torchrun); write the manifest; exit 0 when
    all inputs of the whole run were scored or up to date, else 1."""
    from pipeline import distributed
    from pipeline.runtime import score_dtype
    from pipeline.template import load_template

    scans: list[Path] = list(args.scans)
    masks: list[Path | None] = list(args.brain_mask) if args.brain_mask else [None] * len(scans)
    if len(masks) != len(scans):
        raise UsageError(f"--brain-mask given {len(masks)} time(s) for {len(scans)} scan(s)")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 or more")
    world = distributed.from_env()
    check_out_dir(args.out)
    loaded = load_for_cli(args.model, args.device, world=world)
    fingerprint = model_fingerprint(loaded.folder, (MODEL_JSON, CALIBRATION_JSON))
    device = next(loaded.vae.parameters()).device
    options = {"report": not args.no_report, "convention": args.convention,
               "device": device.type, "code": code_digest(),
               "precision": str(score_dtype(loaded.params.scoring.precision, device))}
    names = output_names(scans)
    entries: dict[int, Entry] = {}
    jobs: dict[int, Job] = {}
    for i in share(len(scans), world):
        scan, mask, name = scans[i], masks[i], names[i]
        try:
            if isinstance(name, ScanError):
                raise name
            check_output_paths(args.out, name)  # never read or write through a link
            prov = _provenance(scan, mask, fingerprint, options)
            if prov is not None and not args.force and up_to_date(
                    output_paths(args.out, name)["json"], prov):
                print(f"up to date: {shown(scan)} (outputs kept; --force re-scores)")
                entries[i] = _entry(scan, "up_to_date", world, args.out, name,
                                    not args.no_report)
                continue
            jobs[i] = Job(scan, mask, name, prov, index=i)
        except ScanError as exc:
            entries[i] = _failed(scan, exc, world)
    workers = default_workers(len(jobs), world) if args.workers is None else args.workers
    tpl = load_template(loaded.params.template.resolution_mm,
                        loaded.params.template.crop_shape)
    for job, got in prepared_in_order(jobs.values(), loaded.params, loaded.head_atlas, tpl,
                                      workers):
        i = job.index
        try:
            if isinstance(got, Failed):
                if args.debug and got.trace:
                    print(got.trace, file=sys.stderr, end="")
                raise ScanError(got.reason)
            finish(loaded, job.scan, got, args.out, report=not args.no_report,
                   convention=args.convention, provenance=job.provenance)
            entries[i] = _entry(job.scan, "scored", world, args.out, job.name,
                                not args.no_report)
        except Exception as exc:
            if args.debug and not isinstance(exc, ScanError):
                traceback.print_exc()
            entries[i] = _failed(job.scan, exc, world)
    mine = [entries[i] for i in sorted(entries)]
    model = {"uri": loaded.uri, "version": loaded.meta.get("mlflow", {}).get("version"),
             "fingerprint": fingerprint}
    run_key = sha256_text(json.dumps([fingerprint, [str(p) for p in scans]]))
    manifest = write_manifest(args.out, mine, world, model, run_key)
    if manifest is None:  # not rank 0: rank 0 answers for the whole run
        return 0
    if manifest["error"]:
        print(f"error: {manifest['error']} (see {shown(args.out / MANIFEST)})", file=sys.stderr)
    return 1 if manifest["counts"]["failed"] or manifest["error"] else 0


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


def _entry(scan: Path, status: str, world: World, out: Path, name: str, report: bool
           ) -> Entry:
    """A scored or up-to-date input with the outputs of this run (not an older report)."""
    kinds = ("heatmap", "mask", "json", "html") if report else ("heatmap", "mask", "json")
    paths = output_paths(out, name)
    return Entry(str(scan), status, world.rank, outputs={k: str(paths[k]) for k in kinds})


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
