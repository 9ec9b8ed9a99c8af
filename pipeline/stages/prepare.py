"""``vae-anomaly prepare``: split the cohort, add synthetic lesions to test scans, prepare all.

Writes ``data/prepared/`` (the one folder DVC tracks): ``cases/<case>.nii.gz`` (template-space
input), ``cases/<case>_brain.nii.gz``, ``cases/<case>.json`` (the
:class:`~pipeline.preprocess.record.ScanRecord`), ``lesioned/`` (native lesioned test scans and
ground truth), ``head_atlas.safetensors`` (when the training scans have skull and masks),
``harmonisation.json`` (the standard intensity scale learned on the training scans, applied to
every case) and ``split.json`` (its file paths relative to the project root, so the folder
is the same wherever the project lives); plus the QC table ``reports/prepare_qc.json`` and page
``reports/prepare_qc.html``. Subjects run in parallel workers; each one's results are cached
by content (:mod:`pipeline.preparation.worker`), so an unchanged scan is never processed twice.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cohort.store import (
    CASES_DIR,
    LESIONED_DIR,
    SUBJECT_SPLITS,
    Case,
    CaseFile,
    Manifest,
    Part,
    case_path,
    load_template_case,
    split_file,
    stored_manifest,
)
from pipeline.cohort.subjects import list_subjects, split_subjects
from pipeline.config import paths
from pipeline.config.params import to_dict
from pipeline.config.schema import Params
from pipeline.io.atomic import write_json
from pipeline.io.nifti import write_nifti
from pipeline.preparation.worker import run_task
from pipeline.preprocess import harmonise, headatlas
from pipeline.preprocess.record import ScanRecord, without_timings
from pipeline.reporting.qc import worst_first, write_qc_html
from pipeline.space.template import Template, build_template

log = logging.getLogger(__name__)


def _tasks(params: Params) -> list[Case]:
    """One task per subject, its split the subject's (``test``: healthy and lesioned)."""
    subjects = list_subjects(params)
    split = split_subjects([s.id for s in subjects], params.split, params.seed)
    by_id = {s.id: s for s in subjects}
    return [Case(sid, sid, part, str(by_id[sid].image),
                 str(by_id[sid].mask) if by_id[sid].mask else "")
            for part in SUBJECT_SPLITS for sid in split[part]]


def _run_all(tasks: list[Case], params: Params, tpl: Template, out: Path
             ) -> list[dict[str, Any]]:
    from tqdm import tqdm

    cache = str(paths.prepare_cache_dir(params.root)) if params.prepare.cache else ""
    args = (to_dict(params), tpl, str(out), cache)
    workers = max(1, params.prepare.workers)
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(tasks), desc="prepare", unit="scan", disable=None) as bar:
        futures = [pool.submit(run_task, t, *args) for t in tasks]
        for f in futures:
            results.append(f.result())
            bar.update(1)
    return results


def _qc(results: list[dict[str, Any]], entries: list[dict[str, Any]], n_failed: int,
        params: Params) -> dict[str, Any]:
    """The QC table and page (no wall-clock time in them: they are DVC outputs and must be
    the same on every run; the stage's time goes to the log)."""
    dices = [e["registration_dice"] for e in entries if "registration_dice" in e]
    reg = params.prepare.registration
    summary = {
        "n_scans": len(entries), "n_failed": n_failed,
        "n_cached": sum(1 for r in results if r["cached"]),
        "registration_dice_median": round(float(np.median(dices)), 4) if dices else None,
        "registration_dice_min": round(float(np.min(dices)), 4) if dices else None,
        "min_dice": reg.min_dice, "min_containment": reg.min_containment,
        "workers": params.prepare.workers,
    }
    rows = worst_first([
        {"id": e["id"], "split": e.get("split", ""), "dice": e.get("registration_dice"),
         "containment": e.get("registration_containment"),
         "mask_source": e.get("mask_source", ""), "bias_field": e.get("bias_field", ""),
         "ok": "error" not in e and bool(e.get("registration_ok")),
         "error": e.get("error", "")} for e in entries])
    reports = paths.reports_dir(params.root)
    write_json(reports / "prepare_qc.json", {**summary, "scans": rows})
    thumbs = {k: v for r in results for k, v in r["thumbs"].items()}
    write_qc_html(reports / "prepare_qc.html", summary, rows, thumbs)
    return summary


def _build_atlas(results: list[dict[str, Any]], params: Params, tpl: Template, out: Path
                 ) -> int:
    target = out / paths.HEAD_ATLAS_FILE
    parts = [r["atlas"] for r in results if r["atlas"] is not None]
    if len(parts) < params.prepare.brain_mask.atlas_min_scans:
        target.unlink(missing_ok=True)
        return 0
    atlas = headatlas.build(parts, headatlas.grids(tpl, params.prepare.brain_mask))
    assert atlas is not None
    headatlas.save(atlas, target)
    return atlas.n_scans


def _harmonise(manifest: Manifest, params: Params, out: Path) -> None:
    """Learn the standard intensity scale on the training cases and put every case on it
    (image rewritten, the case's landmarks added to its typed record, as
    :func:`pipeline.preprocess.prepare.harmonised` does for a scan being scored)."""
    hp = params.prepare.harmonise
    scale = harmonise.learn((load_template_case(params, c.id) for c in manifest[Part.TRAIN]),
                            hp)
    write_json(out / paths.HARMONISATION_FILE, scale.to_json())
    if scale.method == "none":
        return
    for case in (c for part in Part for c in manifest[part]):
        image, brain = load_template_case(params, case.id)
        record_path = case_path(params, case.id, CaseFile.RECORD)
        record = ScanRecord.from_json(json.loads(record_path.read_text()))
        image, own = harmonise.harmonise(image, brain, scale, params.prepare.normalise.clip)
        write_nifti(case_path(params, case.id, CaseFile.IMAGE), image,
                    np.asarray(record.template_affine))
        write_json(record_path, without_timings(
            replace(record, harmonisation_landmarks=own).to_json())[0])


def _log_timings(results: list[dict[str, Any]]) -> None:
    """The preprocessing steps' seconds summed over the scans prepared in this run (the case
    records in ``data/prepared`` hold none; each scan's stay in its cache entry)."""
    steps: dict[str, float] = {}
    fresh = [t for r in results if not r["cached"] for t in r["timings"].values()]
    for timings in fresh:
        for step, seconds in timings.items():
            steps[step] = steps.get(step, 0.0) + float(seconds)
    if fresh:
        log.info("preprocessing seconds over %d scans: %s", len(fresh),
                 ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))


def run(params: Params) -> Manifest:
    t0 = time.perf_counter()
    out = paths.prepared_dir(params.root)
    split_file(params).unlink(missing_ok=True)  # written last: its presence marks a whole run
    for sub in (CASES_DIR, LESIONED_DIR):  # stale files of an earlier run must not linger
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    tpl = build_template(params.template.resolution_mm, params.template.crop_shape)
    results = _run_all(_tasks(params), params, tpl, out)
    entries = [e for r in results for e in r["entries"]]
    ok = [e for e in entries if "error" not in e and e["registration_ok"]]
    failed = [e for e in entries if "error" in e or not e["registration_ok"]]
    for e in failed:
        log.warning("excluded %s: %s", e["image"], e.get("error") or
                    f"registration QC (Dice {e['registration_dice']:.3f}, inside "
                    f"{e['registration_containment']:.3f})")
    manifest = Manifest(
        {part: [Case.from_json(e) for e in ok if e["split"] == part] for part in Part},
        [{"id": e["id"], "image": e["image"], "reason": e.get("error") or
          "registration failed QC"} for e in failed],
        _build_atlas(results, params, tpl, out))
    _harmonise(manifest, params, out)
    write_json(split_file(params), stored_manifest(manifest, params.root))
    qc = _qc(results, entries, len(failed), params)
    _log_timings(results)
    log.info("prepared %d scans (%d failed, %d from cache) in %.1f s, median registration "
             "Dice %.3f", len(ok), len(failed), qc["n_cached"], time.perf_counter() - t0,
             qc["registration_dice_median"] or float("nan"))
    return manifest
