"""``vae-anomaly score``: native-space scans in, contract outputs on each scan's own grid.

Example:
    $ vae-anomaly score sub-01_T1.nii.gz sub-02_T1.nii.gz --out results/
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipeline.config import UsageError
from pipeline.modelio import CALIBRATION_JSON, MODEL_JSON, LoadedModel, ModelError, load_model
from pipeline.nifti import ScanError, load_mask, load_scan, one_line, shown, stem
from pipeline.outputs import check_output_paths, output_paths, summary, write_outputs
from pipeline.preprocess import PreparedScan
from pipeline.provenance import code_digest, model_fingerprint, scan_provenance, up_to_date


def check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{out}: output folder is not writable ({exc.strerror or exc})") from exc


def prepare_input(loaded: LoadedModel, scan: Path, mask_path: Path | None,
                  warnings: list[str] | None = None
                  ) -> tuple[nib.Nifti1Image, PreparedScan, dict[str, float]]:
    """Load, validate and prepare one native scan as the model's input; raise
    :class:`ScanError` for anything wrong with it (registration quality control included).
    What was tolerated (e.g. a few NaN voxels) is appended to ``warnings``."""
    from pipeline.preprocess import prepare_scan, require_registration

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    img = load_scan(scan, warnings)
    mask = load_mask(mask_path, img) if mask_path is not None else None
    timings["load"] = time.perf_counter() - t0
    prepared = prepare_scan(img, mask, loaded.params, loaded.head_atlas)
    timings.update(prepared.record.timings_s)
    require_registration(prepared.record, loaded.params.prepare.registration)
    return img, prepared, timings


def load_for_cli(model: str | None, device_choice: str, require_calibration: bool = True
                 ) -> LoadedModel:
    """The model a command asked for, on the device it asked for; usage errors exit 2."""
    try:
        import torch

        device = "cuda" if device_choice == "cuda" or (
            device_choice == "auto" and torch.cuda.is_available()) else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda requested but no CUDA device is available")
        if device == "cuda":  # same scan, same GPU, same map (README "Determinism")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        return load_model(model, device=device, require_calibration=require_calibration)
    except ModelError as exc:
        raise UsageError(f"model: {exc}") from exc


def score_one(loaded: LoadedModel, scan: Path, mask_path: Path | None, out: Path,
              report: bool, convention: str | None = None,
              provenance: dict[str, Any] | None = None) -> dict[str, Path]:
    """Score one scan; raise :class:`ScanError` for anything wrong with this input."""
    from pipeline.scoring import score_prepared

    warnings: list[str] = []
    img, prepared, timings = prepare_input(loaded, scan, mask_path, warnings)
    t0 = time.perf_counter()
    result = score_prepared(loaded, prepared)
    timings["model_and_mapping"] = time.perf_counter() - t0
    info = summary(scan, result, loaded, prepared.record, timings,
                   warnings=warnings + result.warnings)
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
    scans: list[Path] = list(args.scans)
    masks: list[Path | None] = list(args.brain_mask) if args.brain_mask else [None] * len(scans)
    if len(masks) != len(scans):
        raise UsageError(f"--brain-mask given {len(masks)} time(s) for {len(scans)} scan(s)")
    check_out_dir(args.out)
    loaded = load_for_cli(args.model, args.device)
    fingerprint = model_fingerprint(loaded.folder, (MODEL_JSON, CALIBRATION_JSON))
    from pipeline.runtime import score_dtype

    device = next(loaded.vae.parameters()).device
    options = {"report": not args.no_report, "convention": args.convention,
               "device": device.type, "code": code_digest(),
               "precision": str(score_dtype(loaded.params.scoring.precision, device))}
    failures = 0
    seen: set[str] = set()
    for scan, mask in zip(scans, masks, strict=True):
        try:
            name = stem(scan)
            if name in seen:
                raise ScanError(f"another input has the same output name {name!r}")
            seen.add(name)
            check_output_paths(args.out, name)  # never read or write through a link
            prov = _provenance(scan, mask, fingerprint, options)
            if prov is not None and not args.force and up_to_date(
                    output_paths(args.out, name)["json"], prov):
                print(f"up to date: {shown(scan)} (outputs kept; --force re-scores)")
                continue
            score_one(loaded, scan, mask, args.out, report=not args.no_report,
                      convention=args.convention, provenance=prov)
        except ScanError as exc:
            failures += 1
            print(f"error: {shown(scan)}: {one_line(exc)}", file=sys.stderr)
        except Exception as exc:
            failures += 1
            if args.debug:
                traceback.print_exc()
            print(f"error: {shown(scan)}: {one_line(exc)}", file=sys.stderr)
    return 1 if failures else 0


def _provenance(scan: Path, mask: Path | None, fingerprint: str, options: dict[str, Any]
                ) -> dict[str, Any] | None:
    """The scan's provenance, or None when a file cannot be hashed (loading then says why)."""
    try:
        return scan_provenance(scan, mask, fingerprint, options)
    except OSError:
        return None
