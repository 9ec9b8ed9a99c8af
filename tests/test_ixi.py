"""Integration on real IXI scans (skipped when ../shared/data is absent)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import IXI

from pipeline import preprocess, registration
from pipeline.config import load_raw, params_from_dict
from pipeline.nifti import load_mask, load_scan

pytestmark = pytest.mark.skipif(not IXI.is_dir(), reason="../shared/data/ixi-t1 not available")
SUBJECTS = ["IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236"]


@pytest.fixture(scope="module")
def params():
    raw = load_raw()
    raw["template"] = {"resolution_mm": 2.0, "crop_shape": [80, 96, 80]}
    raw["model"]["channels"] = [16, 32, 64, 64]
    return params_from_dict(raw)


@pytest.mark.parametrize("sid", SUBJECTS)
def test_ixi_registration_and_round_trip(params, sid: str) -> None:
    img = load_scan(IXI / "t1" / f"{sid}_T1.nii.gz")
    mask = load_mask(IXI / "brainmask" / f"{sid}_brainmask.nii.gz", img)
    prepared = preprocess.prepare_scan(img, mask, params)
    assert prepared.record.registration_dice >= 0.85
    back = preprocess.to_native(prepared.brain.astype(np.float32), prepared.record) > 0.5
    assert registration.dice(back, mask) >= 0.95


def test_ixi_without_mask_gets_a_usable_brain_mask(params) -> None:
    sid = SUBJECTS[1]
    img = load_scan(IXI / "t1" / f"{sid}_T1.nii.gz")
    truth = load_mask(IXI / "brainmask" / f"{sid}_brainmask.nii.gz", img)
    prepared = preprocess.prepare_scan(img, None, dataclasses.replace(params))
    assert prepared.record.mask_source == "derived"
    canon_truth = preprocess.to_canonical(truth.astype(np.uint8), img.affine)[0] > 0
    assert registration.dice(prepared.canonical_brain, canon_truth) >= 0.8
