"""A prepared test case as :func:`pipeline.preprocess.prepare.prepare_scan` returned it,
rebuilt, and the record evaluation keeps of each scored case.

Evaluation scores the held-out test cases exactly as ``score`` scores a new scan; instead of
preparing them again, their template-space volumes and :class:`ScanRecord` are read back from
``data/prepared/`` and the native scan and mask re-attached.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cohort.store import Case, CaseFile, case_path, load_template_case
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.io.nifti import load_mask, load_scan
from pipeline.preprocess.prepare import Prepared
from pipeline.preprocess.record import PreparedScan, ScanRecord
from pipeline.scoring.result import ScanSummary
from pipeline.space.grid import to_canonical


def load_prepared(params: Params, case: Case) -> Prepared:
    """A prepared case with its native (canonical) image and brain mask re-attached, and
    the validated native image it came from (no timings: they are not recorded)."""
    image, brain = load_template_case(params, case.id)
    record = ScanRecord.from_json(json.loads(case_path(params, case.id, CaseFile.RECORD)
                                             .read_text()))
    native = load_scan(case.image)
    affine = np.asarray(native.affine)
    mask = load_mask(case.mask, native)  # given, or the derived mask prepare saved
    canon = to_canonical(np.asarray(native.dataobj, np.float32), affine)[0]
    canon_mask = to_canonical(mask.astype(np.uint8), affine)[0] > 0
    prepared = PreparedScan(image=image, brain=brain, record=record, canonical_image=canon,
                            canonical_brain=canon_mask)
    return Prepared(native, prepared, {})


def evaluation_record(summary: ScanSummary, source: str, root: Path, **extra: Any
                      ) -> ScanSummary:
    """``summary`` as ``data/evaluation/`` keeps it: ``source`` (the scan as the manifest or
    the parameters name it, relative to the project root) as its input, the model folder
    relative to the root, no wall-clock timings or date, ``extra`` added. It is a DVC output:
    the same on every run and wherever the project lives."""
    model = {**summary.model, "uri": paths.stored(summary.model.get("uri") or "", root)}
    return dataclasses.replace(summary, input=source, model=model, timings_s={}, created="",
                               extra={**summary.extra, **extra})
