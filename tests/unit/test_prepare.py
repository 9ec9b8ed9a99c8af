"""The ``prepare`` stage: bias correction, registration, bad inputs, per-scan cache, QC page."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import TINY_OVERRIDES, make_project, oblique_affine, phantom
from corpus import CORPUS, REASONS

from pipeline.config.params import load_raw, params_from_dict
from pipeline.preprocess import registration
from pipeline.preprocess.bias import correct_bias
from pipeline.space import geometry
from pipeline.space.template import build_template


def test_bias_field_correction_flattens_a_smooth_field() -> None:
    _, mask = phantom((48, 48, 48))
    grid = np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij")
    inner = np.sqrt(sum(g**2 for g in grid)) < 0.3
    tissue = mask & ~inner
    rng = np.random.default_rng(0)
    clean = np.where(inner, 40.0, 100.0) * mask + rng.normal(0, 1.0, mask.shape) * mask
    field = np.exp(0.5 * grid[0] + 0.3 * grid[1] * grid[2])
    affine = oblique_affine((2.0, 2.0, 2.0))
    params = params_from_dict(load_raw()).prepare.bias_field
    biased = (clean * field).astype(np.float32)
    corrected, stats = correct_bias(biased, mask, affine, params)

    def cv(a: np.ndarray) -> float:
        return float(a[tissue].std() / a[tissue].mean())

    assert cv(biased) > 0.15
    assert cv(corrected) < 0.5 * cv(biased)
    assert stats["log_bias_p99"] - stats["log_bias_p1"] > 0.3
    same, none = correct_bias(biased, mask, affine, dataclasses.replace(params, enabled=False))
    assert same is biased and none == {}


@pytest.fixture
def one_thread():
    """SimpleITK's multi-threaded metric sums are not bitwise reproducible; one thread is."""
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    yield
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_registration_recovers_a_known_pose_and_size(one_thread) -> None:
    """The template brain, rotated, shrunk and shifted onto an oblique grid, comes back."""
    params = params_from_dict(load_raw())
    tpl = build_template(3.0, (56, 64, 56))
    fixed = geometry.to_sitk(tpl.image, tpl.affine)
    truth = sitk.AffineTransform(3)  # template point -> "native" point
    truth.SetCenter([0.0, -18.0, 8.0])
    rot = sitk.VersorTransform((0.2, 0.1, 0.9), np.deg2rad(15)).GetMatrix()
    truth.SetMatrix([0.88 * v for v in rot])
    truth.SetTranslation([6.0, -9.0, 12.0])
    grid_affine = oblique_affine((2.5, 2.0, 3.0), 25.0)
    shape = (80, 100, 70)
    centre = np.array([0.0, -18.0, 8.0])
    grid_affine[:3, 3] = centre - grid_affine[:3, :3] @ (np.array(shape) - 1) / 2
    native_grid = geometry.to_sitk(np.zeros(shape, np.float32), grid_affine)
    native = geometry.resample(fixed, native_grid, truth.GetInverse())
    native_mask = geometry.resample(geometry.to_sitk(tpl.brain.astype(np.float32), tpl.affine),
                                    native_grid, truth.GetInverse()) > 0.5
    # default seed 0: reproducible too (SimpleITK must not read it as "from the wall clock")
    tx = registration.register_affine(native, native_mask, fixed,
                                      geometry.to_sitk(tpl.brain.astype(np.uint8), tpl.affine),
                                      params.prepare.registration)
    points = np.argwhere(tpl.brain)[::200] * 3.0 + tpl.affine[:3, 3]
    lps = points * np.array([-1, -1, 1])
    errors = [np.linalg.norm(np.subtract(tx.TransformPoint(p), truth.TransformPoint(p)))
              for p in lps.tolist()]
    assert float(np.median(errors)) < 1.5  # mm: half a template voxel


def _bad_files(folder: Path) -> dict[str, str]:
    """Write broken scans into a cohort folder; return id → expected error fragment."""
    t1, masks = folder / "t1", folder / "brainmask"
    good_file = next(iter(sorted(t1.glob("*_T1.nii.gz"))))
    good = nib.load(good_file)
    good_mask = masks / f"{good_file.name[:-10]}_brainmask.nii.gz"
    affine = np.asarray(good.affine)
    data = np.asarray(good.dataobj, np.float32)
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), affine), t1 / "fourd_T1.nii.gz")
    (t1 / "empty_T1.nii.gz").write_bytes(b"")
    nib.save(nib.Nifti1Image(np.full(data.shape, np.nan, np.float32), affine),
             t1 / "nans_T1.nii.gz")
    nib.save(nib.Nifti1Image(data, np.diag([90.0, 90.0, 90.0, 1.0])), t1 / "spacing_T1.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), t1 / "nomask_T1.nii.gz")
    expected = {"fourd": "3D", "empty": "empty", "nans": "finite", "spacing": "voxel size",
                "nomask": "not found"}
    for i, (kind, make) in enumerate(CORPUS.items()):  # the score tests' corpus, too
        if kind == "unreadable_permissions" and os.geteuid() == 0:
            continue  # root reads it anyway (the score test covers the message)
        make(t1 / f"corpus{i:02d}_T1.nii.gz", good)
        expected[f"corpus{i:02d}"] = REASONS[kind]
    (t1 / "adirectory_T1.nii.gz").mkdir()
    expected["adirectory"] = "directory"
    for sid in expected:
        if sid != "nomask":
            shutil.copy(good_mask, masks / f"{sid}_brainmask.nii.gz")
    return expected


@pytest.fixture(scope="module")
def prepare_project(tmp_path_factory: pytest.TempPathFactory):
    from pipeline.cli import main

    root = tmp_path_factory.mktemp("prepare")
    overrides = {**TINY_OVERRIDES, "demo": {"n_subjects": 6},
                 "prepare": {**TINY_OVERRIDES["prepare"], "workers": 2}}
    params_file = make_project(root, overrides)
    old = dict(os.environ)
    os.environ["VAE_ANOMALY_ROOT"] = str(root)
    os.environ.pop("VAE_ANOMALY_CACHE", None)
    try:
        assert main(["cohort", "--params", str(params_file)]) == 0
        expected = _bad_files(root / "data" / "cohort")
        yield root, params_file, expected, main
    finally:
        os.environ.clear()
        os.environ.update(old)


def _qc(root: Path) -> dict:
    return json.loads((root / "reports" / "prepare_qc.json").read_text())


def test_bad_scans_are_listed_and_the_others_prepared(prepare_project) -> None:
    root, params_file, expected, main = prepare_project
    assert main(["prepare", "--params", str(params_file)]) == 0
    split = json.loads((root / "data" / "prepared" / "split.json").read_text())
    failed = {f["id"]: f["reason"] for f in split["failed"]}
    for sid, needle in expected.items():
        assert needle in failed[sid] and len(failed[sid]) > 5, (sid, failed.get(sid))
    assert len(split["train"]) + len(split["calibration"]) + len(split["test_healthy"]) == 6
    assert len(split["test_lesion"]) == len(split["test_healthy"])
    page = (root / "reports" / "prepare_qc.html").read_text()
    qc = _qc(root)
    order = [s["id"] for s in qc["scans"]]
    dices = [s["dice"] for s in qc["scans"] if s["dice"] is not None]
    assert dices == sorted(dices) and qc["n_failed"] >= len(expected)
    positions = [page.index(f"<td>{sid}</td>") for sid in order]
    assert positions == sorted(positions)  # the table is worst first
    assert page.count("data:image/png;base64,") == len(dices)


def test_unchanged_scans_come_from_the_cache(prepare_project) -> None:
    root, params_file, expected, main = prepare_project
    cases = root / "data" / "prepared" / "cases"
    before = {p.name: p.read_bytes() for p in cases.iterdir()}
    assert main(["prepare", "--params", str(params_file)]) == 0
    qc = _qc(root)
    assert qc["n_cached"] == 6 + len(expected)  # every subject, bad ones included
    assert {p.name: p.read_bytes() for p in cases.iterdir()} == before
    raw = json.loads(json.dumps(__import__("yaml").safe_load(params_file.read_text())))
    raw["prepare"]["normalise"]["upper_percentile"] = 98.0
    changed = params_file.parent / "changed.yaml"
    changed.write_text(__import__("yaml").safe_dump(raw))
    assert main(["prepare", "--params", str(changed)]) == 0
    assert _qc(root)["n_cached"] == 0
