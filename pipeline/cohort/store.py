"""The prepared cohort on disk: the split manifest and each case's template-space volumes.

``prepare`` writes ``data/prepared/split.json`` (the cases of every split) and, per case,
``cases/<id>.nii.gz`` (the template-space network input) and ``cases/<id>_brain.nii.gz``.
This module reads them back with nothing but NIfTI I/O, so training and calibration do not
depend on the preprocessing code.

Example:
    >>> from pipeline.config.params import load_params
    >>> case_path(load_params(), "sub-01", "_brain.nii.gz").parts[-3:]
    ('prepared', 'cases', 'sub-01_brain.nii.gz')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.io.nifti import read_array

SPLIT_FILE = "split.json"
PARTS = ("train", "calibration", "test_healthy", "test_lesion", "failed")  # lists of cases
PATH_KEYS = ("image", "mask", "truth")  # a case's files: stored relative to the project root


def split_file(params: Params) -> Path:
    return paths.prepared_dir(params.root) / SPLIT_FILE


def case_paths(case: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """``case`` with ``convert`` applied to each of its non-empty file paths."""
    return {k: convert(v) if k in PATH_KEYS and v else v for k, v in case.items()}


def _every_case(manifest: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """``manifest`` with ``convert`` applied to the file paths of the cases of every part."""
    return {part: [case_paths(c, convert) for c in cases] if part in PARTS else cases
            for part, cases in manifest.items()}


def stored_manifest(manifest: dict[str, Any], root: Path) -> dict[str, Any]:
    """The manifest as ``split.json`` holds it: every file path relative to the project root
    (see :func:`pipeline.config.paths.stored`), so the file is the same wherever the project
    lives."""
    return _every_case(manifest, lambda p: paths.stored(p, root))


def load_manifest(params: Params) -> dict[str, Any]:
    """The split ``prepare`` wrote: ``train``, ``calibration``, ``test_healthy``,
    ``test_lesion`` (lists of cases), ``failed`` and ``head_atlas_scans``; each case's
    ``image``, ``mask`` and ``truth`` resolved against the project root (a manifest of an
    older version with absolute paths reads as it is)."""
    manifest = dict(json.loads(split_file(params).read_text()))
    return _every_case(manifest, lambda p: str(paths.resolve(p, params.root)))


def case_path(params: Params, case_id: str, suffix: str) -> Path:
    """A file of a prepared case: ``.nii.gz``, ``_brain.nii.gz`` or ``.json`` (its record)."""
    return paths.prepared_dir(params.root) / "cases" / f"{case_id}{suffix}"


def _image(params: Params, case_id: str) -> np.ndarray:
    return read_array(case_path(params, case_id, ".nii.gz"))


def _brain(params: Params, case_id: str) -> np.ndarray:
    return read_array(case_path(params, case_id, "_brain.nii.gz"), np.uint8) > 0


def load_template_case(params: Params, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Template-space (image, brain) of a prepared case."""
    return _image(params, case_id), _brain(params, case_id)


def load_images(params: Params, cases: list[dict[str, Any]]) -> np.ndarray:
    """Stack of template-space images ``(n, 1, *crop_shape)`` (the brains are not read)."""
    return np.stack([_image(params, c["id"]) for c in cases])[:, None]


def load_brains(params: Params, cases: list[dict[str, Any]]) -> np.ndarray:
    """Stack of template-space brain masks ``(n, 1, *crop_shape)`` (the images are not read)."""
    return np.stack([_brain(params, c["id"]) for c in cases])[:, None]


def healthy_images(params: Params, manifest: dict[str, Any]
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Template-space (image, brain) of each healthy calibration scan, read one at a time."""
    for case in manifest["calibration"]:
        yield load_template_case(params, case["id"])
