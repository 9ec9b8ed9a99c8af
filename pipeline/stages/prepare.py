"""``vae-anomaly prepare``: split the cohort, add synthetic lesions to test scans, prepare all.

Writes ``data/prepared/`` (one folder DVC tracks): ``cases/<case>.nii.gz`` (template-space
input), ``cases/<case>_brain.nii.gz``, ``cases/<case>.json`` (the :class:`ScanRecord`),
``lesioned/`` (native lesioned test scans and ground truth) and ``split.json``; plus the
registration QC table ``reports/prepare_qc.json``.
"""

from __future__ import annotations

import json
import logging
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.cohort import list_subjects, split_subjects
from pipeline.config import Params, params_from_dict, to_dict
from pipeline.nifti import ScanError, load_mask, load_scan, write_json, write_nifti

log = logging.getLogger(__name__)


def _make_lesioned(case: dict[str, Any], out: Path, params: Params) -> dict[str, Any]:
    from pipeline.lesions import insert_lesions

    img = load_scan(case["image"])
    brain = load_mask(case["mask"], img) if case["mask"] else np.asarray(img.dataobj) > 0
    rng = np.random.default_rng([params.seed, zlib.crc32(case["subject"].encode())])
    data, truth, lesions = insert_lesions(np.asarray(img.dataobj), img.affine, brain,
                                          params.lesions, rng)
    cid = f"{case['subject']}-lesion"
    image_path = out / "lesioned" / f"{cid}_T1.nii.gz"
    truth_path = out / "lesioned" / f"{cid}_lesion.nii.gz"
    write_nifti(image_path, data, img.affine, img.header)
    write_nifti(truth_path, truth, img.affine, img.header, dtype=np.uint8)
    return {**case, "id": cid, "image": str(image_path), "truth": str(truth_path),
            "lesions": lesions}


def prepare_case(case: dict[str, Any], params_dict: dict[str, Any], out: str
                 ) -> dict[str, Any]:
    """Prepare one case in a worker; return its entry with ``record`` or ``error``."""
    import SimpleITK as sitk

    from pipeline.preprocess import prepare_scan

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    params = params_from_dict(params_dict)
    folder = Path(out) / "cases"
    try:
        img = load_scan(case["image"])
        mask = load_mask(case["mask"], img) if case["mask"] else None
        prepared = prepare_scan(img, mask, params)
    except ScanError as exc:
        return {**case, "error": str(exc)}
    cid = case["id"]
    affine = np.asarray(prepared.record.template_affine)
    write_nifti(folder / f"{cid}.nii.gz", prepared.image, affine)
    write_nifti(folder / f"{cid}_brain.nii.gz", prepared.brain, affine, dtype=np.uint8)
    write_json(folder / f"{cid}.json", prepared.record.to_json())
    return {**case, "registration_dice": prepared.record.registration_dice,
            "registration_ok": prepared.record.registration_ok}


def run(params: Params) -> dict[str, Any]:
    out = paths.prepared_dir(params.root)
    subjects = list_subjects(params)
    split = split_subjects([s.id for s in subjects], params)
    by_id = {s.id: s for s in subjects}
    cases: list[dict[str, Any]] = []
    for part in ("train", "calibration", "test"):
        for sid in split[part]:
            s = by_id[sid]
            cases.append({"id": sid, "subject": sid, "split": part, "image": str(s.image),
                          "mask": str(s.mask) if s.mask else "", "truth": ""})
    lesioned = [_make_lesioned({**c, "split": "test_lesion"}, out, params)
                for c in cases if c["split"] == "test"]
    for c in cases:
        if c["split"] == "test":
            c["split"] = "test_healthy"
    cases += lesioned

    params_dict = to_dict(params)
    with ProcessPoolExecutor(max_workers=max(1, params.prepare.workers)) as pool:
        results = list(pool.map(prepare_case, cases, [params_dict] * len(cases),
                                [str(out)] * len(cases)))
    ok = [r for r in results if "error" not in r and r["registration_ok"]]
    failed = [r for r in results if "error" in r or not r["registration_ok"]]
    for r in failed:
        reason = r.get("error") or f"registration Dice {r['registration_dice']:.3f} below minimum"
        log.warning("excluded %s: %s", r["image"], reason)
    manifest = {part: [r for r in ok if r["split"] == part]
                for part in ("train", "calibration", "test_healthy", "test_lesion")}
    manifest["failed"] = [{"id": r["id"], "image": r["image"],
                           "reason": r.get("error") or "registration failed QC"} for r in failed]
    write_json(out / "split.json", manifest)
    dices = [r["registration_dice"] for r in results if "registration_dice" in r]
    qc = {"n_scans": len(results), "n_failed": len(failed),
          "registration_dice_median": float(np.median(dices)) if dices else None,
          "registration_dice_min": float(np.min(dices)) if dices else None,
          "scans": sorted(({"id": r["id"], "dice": r.get("registration_dice"),
                            "ok": "error" not in r and r["registration_ok"],
                            "error": r.get("error", "")} for r in results),
                          key=lambda d: d["dice"] if d["dice"] is not None else -1.0)}
    write_json(paths.reports_dir(params.root) / "prepare_qc.json", qc)
    log.info("prepared %d scans (%d failed), median registration Dice %.3f",
             len(ok), len(failed), qc["registration_dice_median"] or float("nan"))
    return manifest


def load_manifest(params: Params) -> dict[str, Any]:
    return dict(json.loads((paths.prepared_dir(params.root) / "split.json").read_text()))
