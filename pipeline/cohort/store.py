"""The prepared cohort on disk: the split manifest and each case's template-space volumes.

``prepare`` writes ``data/prepared/split.json`` (a :class:`Manifest`: the :class:`Case` of
every part) and, per case, the files :class:`CaseFile` names under ``cases/`` (the
template-space network input, its brain mask, its :class:`~pipeline.preprocess.record.ScanRecord`
and, where the mask was derived, the native brain mask). This module is the one home of
those names and of the part names, and reads the cohort back with nothing but NIfTI I/O, so
training and calibration do not depend on the preprocessing code.

Example:
    >>> case = Case.from_json({"id": "sub-01", "subject": "sub-01", "split": "train",
    ...                        "image": "t1/sub-01.nii.gz", "mask": "", "truth": "",
    ...                        "registration_dice": 0.93})
    >>> case.id, case.split, case.info, CaseFile.BRAIN.name_for(case.id)
    ('sub-01', 'train', {'registration_dice': 0.93}, 'sub-01_brain.nii.gz')
    >>> case.to_json()["registration_dice"], list(Part)[-1].value
    (0.93, 'test_lesion')
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.io.nifti import read_array

SPLIT_FILE = "split.json"
CASES_DIR, LESIONED_DIR = "cases", "lesioned"  # folders of data/prepared


class Part(StrEnum):
    """The parts of the split (a healthy test subject gives one case to each test part)."""

    TRAIN = "train"
    CALIBRATION = "calibration"
    TEST_HEALTHY = "test_healthy"
    TEST_LESION = "test_lesion"


EXTRA = "extra"  # the split of a real lesion case of ``evaluate.extra_cases``
# the subject-level split: a test subject's healthy scan and its lesioned copy stay together
TEST_SUBJECTS = "test"
SUBJECT_SPLITS = (Part.TRAIN.value, Part.CALIBRATION.value, TEST_SUBJECTS)


class CaseFile(Enum):
    """A prepared case's files in ``data/prepared/cases`` (value: the file name's suffix)."""

    IMAGE = ".nii.gz"                    # template-space network input
    BRAIN = "_brain.nii.gz"              # template-space brain mask
    RECORD = ".json"                     # the ScanRecord, the way back to the native grid
    NATIVE_BRAIN = "_native_brain.nii.gz"  # a derived mask on the native grid
    QC = "_qc.png"                       # the QC thumbnail (the prepare cache keeps it)

    def name_for(self, case_id: str) -> str:
        return f"{case_id}{self.value}"


class LesionedFile(Enum):
    """A lesioned test copy's native files in ``data/prepared/lesioned``."""

    SCAN = "_T1.nii.gz"
    TRUTH = "_lesion.nii.gz"

    def name_for(self, case_id: str) -> str:
        return f"{case_id}{self.value}"


def lesioned_id(subject: str) -> str:
    """The case id of a test subject's lesioned copy."""
    return f"{subject}-lesion"


@dataclass(frozen=True)
class Case:
    """One scan of the cohort from ``prepare`` to ``report``.

    ``image``, ``mask`` (brain mask; ``""``: none) and ``truth`` (lesion mask of a lesioned
    copy; ``""``: none) are file paths; ``info`` holds what preparing it recorded (mask
    source, registration quality, bias field, the inserted lesions).
    """

    id: str
    subject: str
    split: str
    image: str
    mask: str = ""
    truth: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    PATHS = ("image", "mask", "truth")  # stored relative to the project root

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        own = {f.name for f in dataclasses.fields(cls)} - {"info"}
        return cls(**{k: v for k, v in data.items() if k in own},
                   info={k: v for k, v in data.items() if k not in own})

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "subject": self.subject, "split": self.split,
                "image": self.image, "mask": self.mask, "truth": self.truth, **self.info}

    def with_paths(self, convert: Callable[[str], str]) -> Case:
        """This case with ``convert`` applied to each of its non-empty file paths."""
        changes: dict[str, Any] = {k: convert(getattr(self, k)) for k in self.PATHS
                                   if getattr(self, k)}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Manifest:
    """The split ``prepare`` wrote: the cases of each :class:`Part`, the scans that failed
    (id, image, reason) and how many training scans the head atlas holds."""

    parts: dict[Part, list[Case]]
    failed: list[dict[str, str]] = field(default_factory=list)
    head_atlas_scans: int = 0

    def __getitem__(self, part: Part) -> list[Case]:
        return self.parts[part]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls({p: [Case.from_json(c) for c in data.get(p, [])] for p in Part},
                   list(data.get("failed", [])), int(data.get("head_atlas_scans", 0)))

    def to_json(self) -> dict[str, Any]:
        return {**{str(p): [c.to_json() for c in self.parts[p]] for p in Part},
                "failed": self.failed, "head_atlas_scans": self.head_atlas_scans}

    def with_paths(self, convert: Callable[[str], str]) -> Manifest:
        """This manifest with ``convert`` applied to every case's file paths (and to the
        image of every failed scan)."""
        return dataclasses.replace(
            self, parts={p: [c.with_paths(convert) for c in cases]
                         for p, cases in self.parts.items()},
            failed=[{**f, "image": convert(f["image"])} if f.get("image") else f
                    for f in self.failed])


def split_file(params: Params) -> Path:
    return paths.prepared_dir(params.root) / SPLIT_FILE


def stored_manifest(manifest: Manifest, root: Path) -> dict[str, Any]:
    """The manifest as ``split.json`` holds it: every file path relative to the project root
    (see :func:`pipeline.config.paths.stored`), so the file is the same wherever the project
    lives."""
    return manifest.with_paths(lambda p: paths.stored(p, root)).to_json()


def load_manifest(params: Params) -> Manifest:
    """The split ``prepare`` wrote, each case's files resolved against the project root (a
    manifest of an older version with absolute paths reads as it is)."""
    data = json.loads(split_file(params).read_text())
    return Manifest.from_json(data).with_paths(lambda p: str(paths.resolve(p, params.root)))


def case_path(params: Params, case_id: str, kind: CaseFile) -> Path:
    """A file of a prepared case."""
    return paths.prepared_dir(params.root) / CASES_DIR / kind.name_for(case_id)


def _image(params: Params, case_id: str) -> np.ndarray:
    return read_array(case_path(params, case_id, CaseFile.IMAGE))


def _brain(params: Params, case_id: str) -> np.ndarray:
    return read_array(case_path(params, case_id, CaseFile.BRAIN), np.uint8) > 0


def load_template_case(params: Params, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Template-space (image, brain) of a prepared case."""
    return _image(params, case_id), _brain(params, case_id)


def load_images(params: Params, cases: list[Case]) -> np.ndarray:
    """Stack of template-space images ``(n, 1, *crop_shape)`` (the brains are not read)."""
    return np.stack([_image(params, c.id) for c in cases])[:, None]


def load_brains(params: Params, cases: list[Case]) -> np.ndarray:
    """Stack of template-space brain masks ``(n, 1, *crop_shape)`` (the images are not read)."""
    return np.stack([_brain(params, c.id) for c in cases])[:, None]


def healthy_images(params: Params, manifest: Manifest
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Template-space (image, brain) of each healthy calibration scan, read one at a time."""
    for case in manifest[Part.CALIBRATION]:
        yield load_template_case(params, case.id)
