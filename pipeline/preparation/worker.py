"""One subject through ``prepare`` in a worker process, with a per-scan result cache.

A subject's work (its healthy scan, for a test subject also a lesioned copy with ground
truth, the QC thumbnails and, for a training scan with skull, its head atlas contribution)
is keyed by the SHA-256 of its input files, the parameters that shape the result and the
source of the modules that compute it. A key already in the cache is copied out instead of
recomputed, so an unchanged scan is never processed twice; any change to the scan, its mask,
those parameters or that code gives a new key. Entries are written to a temporary folder and
renamed, so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pipeline.cohort.store import (
    CASES_DIR,
    LESIONED_DIR,
    TEST_SUBJECTS,
    Case,
    CaseFile,
    LesionedFile,
    Part,
    lesioned_id,
)
from pipeline.config.code import closure_digest
from pipeline.config.params import params_from_dict
from pipeline.config.schema import Params
from pipeline.io.atomic import copy_file, sha256, write_json
from pipeline.io.errors import one_line
from pipeline.io.nifti import load_mask, load_scan, write_nifti
from pipeline.preprocess.prepare import Preprocessor, prepare_scan
from pipeline.preprocess.record import PreparedScan, native_brain, without_timings
from pipeline.space.template import Template

_ENTRIES = "entries.json"


@functools.cache
def _code_digest() -> str:
    """The digest of this module's import closure: the code is fixed while a process runs."""
    return closure_digest(__name__)


def cache_key(case: dict[str, Any], params: dict[str, Any]) -> str:
    """Key of a subject's prepared results (see the module docstring)."""
    relevant = {k: params[k] for k in ("seed", "template")}
    relevant["prepare"] = {k: v for k, v in params["prepare"].items()
                           if k not in ("workers", "cache")}
    if case["split"] == TEST_SUBJECTS:
        relevant["lesions"] = params["lesions"]
    try:
        files = [sha256(p) if p else "" for p in (case["image"], case["mask"])]
    except OSError:
        files = ["unreadable", case["image"], case["mask"]]  # the worker reports the error
    text = json.dumps([case["id"], case["split"], files, relevant,
                       _code_digest()],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _prepare_one(case: dict[str, Any], params: Params, tpl: Template, work: Path,
                 thumbs: dict[str, bytes], atlas_part: list[dict[str, np.ndarray]]
                 ) -> tuple[dict[str, Any], PreparedScan, nib.Nifti1Image]:
    """Prepare one scan into ``work``; return its entry, the result and the loaded scan."""
    from nibabel.affines import voxel_sizes

    from pipeline.preprocess import headatlas
    from pipeline.preprocess.brainmask import is_skull_stripped
    from pipeline.reporting import qc
    from pipeline.space import geometry

    img = load_scan(case["image"])
    mask = load_mask(case["mask"], img) if case["mask"] else None
    # no head atlas, no standard scale yet: the stage learns both from these results
    prepared = prepare_scan(img, mask, Preprocessor.of(params, tpl))
    rec, cid = prepared.record, case["id"]
    affine = np.asarray(rec.template_affine)
    write_nifti(work / CaseFile.IMAGE.name_for(cid), prepared.image, affine)
    write_nifti(work / CaseFile.BRAIN.name_for(cid), prepared.brain, affine, dtype=np.uint8)
    write_json(work / CaseFile.RECORD.name_for(cid), rec.to_json())
    entry = {**case, "mask_source": rec.mask_source, "registration_dice": rec.registration_dice,
             "registration_containment": rec.registration_containment,
             "registration_ok": rec.registration_ok, "bias_field": rec.bias_field}
    if rec.mask_source != "given":  # keep the derived mask for evaluation
        write_nifti(work / CaseFile.NATIVE_BRAIN.name_for(cid), native_brain(prepared), img.affine,
                    img.header, dtype=np.uint8)
        entry["mask"] = CaseFile.NATIVE_BRAIN.name_for(cid)
    thumbs[cid] = qc.thumbnail(prepared.image, tpl.brain, params.prepare.qc_thumbnail_scale)
    canon, brain = prepared.canonical_image, prepared.canonical_brain
    bm = params.prepare.brain_mask
    if (case["split"] == Part.TRAIN and rec.registration_ok and rec.mask_source == "given"
            and not is_skull_stripped(canon, voxel_sizes(np.asarray(rec.canonical_affine)),
                                      bm.stripped_max_volume_ml)):
        atlas_part.append(headatlas.contribution(
            canon, brain, np.asarray(rec.canonical_affine),
            geometry.affine_transform_from_json(rec.transform), headatlas.grids(tpl, bm)))
    return entry, prepared, img


def _lesioned(case: dict[str, Any], img: nib.Nifti1Image, brain: np.ndarray, params: Params,
              work: Path) -> dict[str, Any]:
    """Write a copy of a loaded test scan with synthetic lesions (and their mask) to ``work``."""
    from pipeline.cohort.lesions import insert_lesions

    rng = np.random.default_rng([params.seed, zlib.crc32(case["subject"].encode())])
    data, truth, lesions = insert_lesions(np.asarray(img.dataobj), img.affine, brain,
                                          params.lesions, rng)
    cid = lesioned_id(case["subject"])
    scan, truth_file = (work / f.name_for(cid) for f in LesionedFile)
    write_nifti(scan, data, img.affine, img.header)
    write_nifti(truth_file, truth, img.affine, img.header, dtype=np.uint8)
    return {**case, "id": cid, "split": Part.TEST_LESION, "image": str(scan),
            "truth": truth_file.name, "lesions": lesions}


def _compute(case: dict[str, Any], params: Params, tpl: Template, work: Path) -> None:
    """Prepare a subject into ``work``: its files, thumbnails and ``entries.json``."""
    thumbs: dict[str, bytes] = {}
    atlas_part: list[dict[str, np.ndarray]] = []
    entries: list[dict[str, Any]] = []
    try:
        entry, prepared, img = _prepare_one(case, params, tpl, work, thumbs, atlas_part)
    except Exception as exc:  # one bad scan must not stop the cohort
        write_json(work / _ENTRIES, [{**case, "error": one_line(exc)}])
        return
    entries.append({**entry, "split": Part.TEST_HEALTHY if case["split"] == TEST_SUBJECTS
                    else case["split"]})
    if case["split"] == TEST_SUBJECTS:
        lesion_case = _lesioned(case, img, native_brain(prepared), params, work)
        try:
            lesion_entry = _prepare_one(lesion_case, params, tpl, work, thumbs, atlas_part)[0]
            lesion_entry["image"] = LesionedFile.SCAN.name_for(lesion_case["id"])
        except Exception as exc:
            lesion_entry = {**lesion_case, "image": LesionedFile.SCAN.name_for(lesion_case["id"]),
                            "error": one_line(exc)}
        entries.append(lesion_entry)
    for name, png in thumbs.items():
        (work / CaseFile.QC.name_for(name)).write_bytes(png)
    if atlas_part:
        np.savez(work / "atlas.npz", head=atlas_part[0]["head"], brain=atlas_part[0]["brain"])
    write_json(work / _ENTRIES, entries)


def rebased(entry: dict[str, Any], case: dict[str, Any], out: Path) -> dict[str, Any]:
    """An entry's file paths in this project: the subject's own scan and mask as this run's
    ``case`` names them (a cache entry may come from another project sharing the cache), the
    lesioned copy, its ground truth and a derived mask in the output folder ``out``."""
    e = dict(entry)
    lesion = e.get("split") == Part.TEST_LESION
    e["image"] = str(out / LESIONED_DIR / Path(e["image"]).name) if lesion else case["image"]
    if e.get("truth"):
        e["truth"] = str(out / LESIONED_DIR / Path(e["truth"]).name)
    derived = str(e.get("mask", "")).endswith(CaseFile.NATIVE_BRAIN.value)
    e["mask"] = str(out / CASES_DIR / Path(e["mask"]).name) if derived else case["mask"]
    return e


def _restore(entry_dir: Path, out: Path, case: dict[str, Any]) -> dict[str, Any]:
    """Copy a finished entry's files into the output folders; return the worker result.

    A case record goes out without its wall-clock ``timings_s`` (``data/prepared`` must be the
    same on every run); they are returned under ``timings`` instead, and the cache entry keeps
    them.
    """
    entries = json.loads((entry_dir / _ENTRIES).read_text())
    thumbs: dict[str, bytes] = {}
    timings: dict[str, dict[str, float]] = {}
    for f in entry_dir.iterdir():
        if f.name.endswith(CaseFile.QC.value):
            thumbs[f.name[: -len(CaseFile.QC.value)]] = f.read_bytes()
        elif f.name.endswith(tuple(k.value for k in LesionedFile)):
            copy_file(f, out / LESIONED_DIR / f.name)
        elif f.name.endswith(CaseFile.IMAGE.value):
            copy_file(f, out / CASES_DIR / f.name)
        elif f.name.endswith(CaseFile.RECORD.value) and f.name != _ENTRIES:
            record, timings[f.name[: -len(CaseFile.RECORD.value)]] = without_timings(
                json.loads(f.read_text()))
            write_json(out / CASES_DIR / f.name, record)
    atlas = None
    if (entry_dir / "atlas.npz").is_file():
        with np.load(entry_dir / "atlas.npz") as z:
            atlas = {k: z[k] for k in z.files}
    return {"entries": [rebased(e, case, out) for e in entries], "thumbs": thumbs,
            "atlas": atlas, "timings": timings}


def run_task(subject: Case, params_dict: dict[str, Any], tpl: Template, out: str,
             cache: str) -> dict[str, Any]:
    """Prepare (or restore from ``cache``) one subject into ``out`` with the template ``tpl``
    (built once by the stage); never raises. The result's ``entries`` are the cases it
    gave, as the cache stores them (with ``error`` where a scan failed)."""
    params = params_from_dict(params_dict)  # (prepare_scan runs SimpleITK on one thread)
    case = subject.to_json()  # the cache's own format
    out_dir = Path(out)
    key = cache_key(case, params_dict)
    entry_dir = Path(cache) / key[:2] / key if cache else None
    if entry_dir is not None and (entry_dir / _ENTRIES).is_file():
        return {**_restore(entry_dir, out_dir, case), "cached": True}
    scratch = Path(cache) / "tmp" if cache else out_dir
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{case['id']}.", dir=scratch))
    try:
        _compute(case, params, tpl, work)
        if entry_dir is not None:
            entry_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                work.rename(entry_dir)
                work = entry_dir
            except OSError:  # another run stored it first: use theirs
                shutil.rmtree(work, ignore_errors=True)
                work = entry_dir
        result = _restore(work, out_dir, case)
    finally:
        if work != entry_dir:
            shutil.rmtree(work, ignore_errors=True)
    return {**result, "cached": False}

