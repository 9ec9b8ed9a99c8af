"""Realistic lesions and atrophy: on a phantom with known tissue, each kind draws what it
claims (darker plaques near the ventricles, a CSF-like cavity, a mass that moves tissue,
atrophy without truth), seeded, float32, finite and 0 outside the brain."""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import numpy as np
import pytest
from scipy import ndimage

from pipeline.config.constraints import violations
from pipeline.config.validation_schema import RealisticParams
from pipeline.evaluation.realistic import KINDS, RealisticCase, realistic_case

SPACING = 2.0
SHAPE = (48, 56, 48)
CSF, GM, WM, OUTER = 0.15, 0.5, 0.85, 0.2  # the phantom's tissue levels
# the defaults recommended for the validation set
PARAMS = RealisticParams(
    kinds=list(KINDS), ms_lesions=[4, 12], ms_diameter_mm=[3.0, 12.0],
    ms_periventricular_mm=10.0, ms_periventricular_share=0.6, ms_contrast=[0.2, 0.7],
    stroke_diameter_mm=[15.0, 45.0], stroke_rim_mm=2.0, tumour_diameter_mm=[15.0, 45.0],
    tumour_mass_effect_mm=[1.0, 5.0], tumour_edema_mm=[2.0, 8.0], tumour_enhancing_share=0.5,
    tumour_texture=0.15, atrophy_ventricle_mm=[1.0, 4.0], atrophy_sulcal_mm=[0.5, 2.0],
    border_mm=1.5)


@cache
def phantom(ventricles: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, brain, ventricles): an ellipsoidal brain, a thin outer CSF layer, a grey matter
    shell, a white matter core and two slab-like ventricles, with a little noise."""
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    r = np.sqrt(sum(x ** 2 for x in g))
    brain = r < 0.92
    image = np.select([r < 0.62, r < 0.84, brain], [WM, GM, OUTER], 0.0)
    vents = (np.abs(g[0]) > 0.06) & (np.abs(g[0]) < 0.24) & (np.abs(g[1]) < 0.35) \
        & (np.abs(g[2]) < 0.15)
    if ventricles:
        image[vents] = CSF
    image = (image + np.random.default_rng(0).normal(0, 0.02, SHAPE) * brain).astype(np.float32)
    vents = vents & ventricles
    for array in (image, brain, vents):
        array.setflags(write=False)  # shared by the tests (cached)
    return image, brain, vents


def draw(kind: str, seed: int = 0, params: RealisticParams = PARAMS,
         ventricles: bool = True) -> RealisticCase:
    image, brain, _ = phantom(ventricles)
    return realistic_case(image, brain, kind, params, np.random.default_rng(seed), SPACING)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_float32_finite_and_black_outside_the_brain(kind: str) -> None:
    image, brain, _ = phantom()
    case = draw(kind)
    assert case.kind == kind and case.image.dtype == np.float32
    assert case.image.shape == image.shape and case.truth.dtype == bool
    assert np.isfinite(case.image).all() and (case.image[~brain] == 0).all()
    assert not (case.truth & ~brain).any()
    assert not np.array_equal(case.image, image)
    json.dumps(case.described)  # what was drawn is JSON-able
    assert case.described["kind"] == kind and case.described["ventricles_found"]
    if kind == "atrophy":
        assert not case.truth.any()
    else:
        assert case.truth.sum() >= 10


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_draws_the_same_case_another_seed_another(kind: str) -> None:
    a, b, c = draw(kind, seed=3), draw(kind, seed=3), draw(kind, seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert a.described == b.described
    assert not np.array_equal(a.image, c.image)


def test_the_tissue_levels_come_from_the_scan() -> None:
    low, grey, white = draw("ms").described["levels_csf_gm_wm"]
    assert abs(low - CSF) < 0.05 and abs(grey - GM) < 0.08 and abs(white - WM) < 0.05


def test_ms_plaques_are_darker_white_matter_a_share_beside_the_ventricles() -> None:
    image, _, vents = phantom()
    to_vent = ndimage.distance_transform_edt(~vents) * SPACING
    beside = 0
    for seed in range(3):
        case = draw("ms", seed)
        d = case.described
        lo, hi = PARAMS.ms_lesions
        assert lo <= d["lesions"] <= hi and len(d["plaques"]) == d["lesions"]
        assert image[case.truth].mean() > (GM + WM) / 2  # white matter was replaced
        assert (image - case.image)[case.truth].mean() > 0.05  # ... by something darker
        assert (case.image <= image + 1e-6).all()  # plaques never brighten
        for plaque in d["plaques"]:
            lo_d, hi_d = PARAMS.ms_diameter_mm
            assert lo_d <= plaque["diameter_mm"] <= hi_d
            if plaque["periventricular"]:
                beside += 1
                assert to_vent[tuple(plaque["centre_voxel"])] \
                    <= PARAMS.ms_periventricular_mm + SPACING
        assert d["periventricular"] == sum(q["periventricular"] for q in d["plaques"])
    assert beside >= 3  # 60 % of 12 to 36 plaques


def test_ms_without_ventricles_places_plaques_in_white_matter() -> None:
    image, _, _ = phantom(ventricles=False)
    case = draw("ms", ventricles=False)
    assert not case.described["ventricles_found"] and case.described["periventricular"] == 0
    assert case.truth.any() and image[case.truth].mean() > (GM + WM) / 2


def test_stroke_is_a_csf_like_cavity_reaching_the_cortex() -> None:
    image, brain, _ = phantom()
    depth = ndimage.distance_transform_edt(brain) * SPACING
    params = dataclasses.replace(PARAMS, stroke_diameter_mm=[25.0, 35.0])
    for seed in range(2):
        case = draw("stroke", seed, params)
        inner = ndimage.distance_transform_edt(case.truth) * SPACING
        cavity = inner > params.stroke_rim_mm + params.border_mm
        assert cavity.sum() >= 5
        assert abs(case.image[cavity].mean() - CSF) < 0.08  # CSF-like, not tissue
        rim = case.truth & ~cavity & (image > GM)
        assert CSF < case.image[rim].mean() < image[rim].mean() - 0.1  # gliotic, in between
        assert depth[case.truth].min() <= 3 * SPACING  # reaches the brain's surface


def test_tumour_mass_effect_moves_tissue_beyond_the_truth() -> None:
    image, brain, _ = phantom()
    changed = {}
    for push in (0.0, 4.0):
        params = dataclasses.replace(PARAMS, tumour_mass_effect_mm=[push, push],
                                     tumour_diameter_mm=[20.0, 25.0])
        case = draw("tumour", 1, params)
        assert case.described["mass_effect_mm"] == push
        assert (case.image[~brain] == 0).all() and (case.image[brain] > 0).all()
        far = ~ndimage.binary_dilation(case.truth, iterations=3)
        changed[push] = int((np.abs(case.image - image)[far] > 0.1).sum())
        assert case.truth.sum() > 4 / 3 * np.pi * (10 / SPACING) ** 3 * 0.5  # a mass
    assert changed[0.0] == 0 and changed[4.0] >= 20


def test_tumour_rim_is_bright_or_dark_as_drawn() -> None:
    seen = set()
    for seed in range(6):
        case = draw("tumour", seed)
        enhancing = case.described["enhancing"]
        seen.add(enhancing)
        top = float(np.percentile(case.image[case.truth], 99))
        assert (top > WM + 0.05) == enhancing
    assert seen == {True, False}


def test_atrophy_adds_csf_without_truth() -> None:
    image, brain, vents = phantom()
    dark = (CSF + GM) / 2
    params = dataclasses.replace(PARAMS, atrophy_ventricle_mm=[3.0, 4.0])
    for seed in range(2):
        case = draw("atrophy", seed, params)
        assert not case.truth.any()
        added = ((case.image < dark) & (image >= dark) & brain).sum()
        assert added > 200 and case.described["csf_voxels_added"] > 200
        grown = ndimage.binary_dilation(vents) & ~vents  # the ventricles enlarged
        assert (image[grown] < dark).mean() < 0.1
        assert (case.image[grown] < dark).mean() > 0.6
        assert (case.image <= image + 5 * 0.02).all()  # nothing brightened beyond noise


def test_unknown_kinds_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="glioma"):
        draw("glioma")
    bad = dataclasses.replace(PARAMS, kinds=["ms", "glioma"], ms_contrast=[0.2, 1.5])
    assert violations(PARAMS, "validation.") == []
    found = violations(bad, "validation.")
    assert any(p.startswith("validation.kinds ") and "glioma" in p for p in found)
    assert any(p.startswith("validation.ms_contrast ") for p in found)
