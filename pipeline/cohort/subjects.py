"""Cohort folders: which scans (and brain masks) make up the healthy cohort, and its split.

Example:
    >>> from pipeline.config.data_schema import SplitParams
    >>> fractions = SplitParams(calibration_fraction=0.2, test_fraction=0.2)
    >>> split = split_subjects([f"sub-{i:02d}" for i in range(20)], fractions, seed=0)
    >>> sorted(split), [len(split[k]) for k in ("train", "calibration", "test")]
    (['calibration', 'test', 'train'], [12, 4, 4])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config.data_schema import SplitParams
from pipeline.config.schema import Params


@dataclass(frozen=True)
class Subject:
    id: str
    image: Path
    mask: Path | None


def list_subjects(params: Params) -> list[Subject]:
    """Scans matching ``cohort.image_pattern`` (sorted by id), with their masks if configured.

    A configured mask that is missing is not an error here: ``prepare`` reports that subject
    as failed and goes on with the others.
    """
    folder = params.cohort_folder()
    if not folder.is_dir():
        raise FileNotFoundError(f"cohort folder {folder} does not exist")
    prefix, suffix = params.cohort.image_pattern.split("*")
    subjects = []
    for path in sorted(folder.glob(params.cohort.image_pattern)):
        rel = str(path.relative_to(folder))
        sid = rel[len(prefix): len(rel) - len(suffix)]
        mask = None
        if params.cohort.mask_pattern:
            mask = folder / params.cohort.mask_pattern.format(id=sid)
        subjects.append(Subject(sid, path, mask))
    if params.cohort.max_subjects > 0:
        subjects = subjects[: params.cohort.max_subjects]
    if not subjects:
        raise FileNotFoundError(f"no scans match {params.cohort.image_pattern} in {folder}")
    return subjects


def split_subjects(ids: list[str], split: SplitParams, seed: int) -> dict[str, list[str]]:
    """Seeded subject-level split into ``train`` / ``calibration`` / ``test``."""
    rng = np.random.default_rng(seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_test = max(1, round(split.test_fraction * len(ids)))
    n_cal = max(1, round(split.calibration_fraction * len(ids)))
    return {
        "test": sorted(order[:n_test]),
        "calibration": sorted(order[n_test: n_test + n_cal]),
        "train": sorted(order[n_test + n_cal:]),
    }
