"""Orientation, affine and template round trips of maps between native and template grids."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
from conftest import oblique_affine
from scipy import ndimage

from pipeline.config.params import load_raw, params_from_dict
from pipeline.io.nifti import load_mask, load_scan
from pipeline.preprocess.prepare import Preprocessor, prepare_scan
from pipeline.preprocess.record import to_native, to_template
from pipeline.space import geometry
from pipeline.space.grid import from_canonical, to_canonical
from pipeline.space.template import build_template


def test_canonical_is_exactly_invertible() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    affine = oblique_affine((1.0, 2.0, 3.0), angle_deg=100.0)
    canon, canon_affine, ornt = to_canonical(data, affine)
    assert nib.aff2axcodes(canon_affine) == ("R", "A", "S")
    np.testing.assert_array_equal(from_canonical(canon, ornt), data)
    # the same voxel keeps the same world position
    idx = np.array([1, 2, 3])
    world = affine @ np.r_[idx, 1]
    cidx = np.linalg.solve(canon_affine, world)[:3].round().astype(int)
    assert canon[tuple(cidx)] == data[tuple(idx)]


def test_sitk_affine_round_trip() -> None:
    affine = oblique_affine((2.2, 1.8, 2.5))
    img = geometry.to_sitk(np.zeros((4, 5, 6), np.float32), affine)
    np.testing.assert_allclose(geometry.affine_of(img), affine, atol=1e-6)
    assert img.GetSize() == (4, 5, 6)


def test_map_returns_to_the_native_anatomy(scan_file, tmp_path) -> None:
    """A blob labelled in native space → template → native lands within one voxel."""
    raw = load_raw()
    raw["template"] = {"resolution_mm": 3.0, "crop_shape": [56, 64, 56]}
    params = params_from_dict(raw)
    params = dataclasses.replace(params, prepare=dataclasses.replace(
        params.prepare, registration=dataclasses.replace(params.prepare.registration,
                                                         min_dice=0.0)))
    img_path, mask_path = scan_file
    img = load_scan(img_path)
    mask = load_mask(mask_path, img)
    prepared = prepare_scan(img, mask, Preprocessor.of(params, build_template(
        params.template.resolution_mm, params.template.crop_shape)))
    blob = np.zeros(img.shape, np.float32)
    blob[14:20, 18:24, 12:17] = 1.0
    there = to_template(blob, prepared.record)
    back = to_native(there, prepared.record)
    assert back.shape == img.shape
    c0 = np.array(ndimage.center_of_mass(blob))
    c1 = np.array(ndimage.center_of_mass(back))
    assert np.linalg.norm(c0 - c1) < 1.0
    # the brain mask itself survives the round trip
    brain_back = to_native(prepared.brain.astype(np.float32), prepared.record) > 0.5
    inter = np.logical_and(brain_back, mask).sum()
    assert 2 * inter / (brain_back.sum() + mask.sum()) > 0.9
