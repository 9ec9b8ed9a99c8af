"""Prepared cases on disk: load template-space volumes and rebuild :class:`PreparedScan`.

Example:
    >>> images = load_images(params, manifest["train"])   # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

import nibabel as nib
import numpy as np

from pipeline import paths
from pipeline.config import Params
from pipeline.nifti import load_mask, load_scan, read_array
from pipeline.preprocess import PreparedScan, ScanRecord, to_canonical


def _case_path(params: Params, case_id: str, suffix: str) -> str:
    return str(paths.prepared_dir(params.root) / "cases" / f"{case_id}{suffix}")


def load_template_case(params: Params, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Template-space (image, brain) of a prepared case."""
    image = read_array(_case_path(params, case_id, ".nii.gz"))
    brain = read_array(_case_path(params, case_id, "_brain.nii.gz"), np.uint8) > 0
    return image, brain


def load_images(params: Params, cases: list[dict[str, Any]]) -> np.ndarray:
    """Stack of template-space images ``(n, 1, *crop_shape)``."""
    return np.stack([load_template_case(params, c["id"])[0] for c in cases])[:, None]


def load_prepared(params: Params, case: dict[str, Any]
                  ) -> tuple[PreparedScan, nib.Nifti1Image]:
    """A prepared case with its native (canonical) image and brain mask re-attached.

    Returns the prepared scan and the validated native image it came from.
    """
    image, brain = load_template_case(params, case["id"])
    with open(_case_path(params, case["id"], ".json")) as fh:
        record = ScanRecord.from_json(json.load(fh))
    native = load_scan(case["image"])
    affine = np.asarray(native.affine)
    mask = load_mask(case["mask"], native)  # given, or the derived mask prepare saved
    canon = to_canonical(np.asarray(native.dataobj, np.float32), affine)[0]
    canon_mask = to_canonical(mask.astype(np.uint8), affine)[0] > 0
    prepared = PreparedScan(image=image, brain=brain, record=record, canonical_image=canon,
                            canonical_brain=canon_mask)
    return prepared, native
