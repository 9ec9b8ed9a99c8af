"""The demo cohort generator and the synthetic lesions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from conftest import phantom

from pipeline.cohort.demo import make_subject, template_source
from pipeline.cohort.lesions import insert_lesions
from pipeline.config.params import load_params


def test_demo_subjects_are_seeded_and_varied() -> None:
    params = load_params()
    image, brain, affine = template_source()
    a = make_subject(np.random.default_rng([1, 0]), image, brain, affine, params.demo)
    b = make_subject(np.random.default_rng([1, 0]), image, brain, affine, params.demo)
    c = make_subject(np.random.default_rng([1, 1]), image, brain, affine, params.demo)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape != c[0].shape or not np.allclose(a[2], c[2])
    for data, mask, aff in (a, c):
        spacing = np.sqrt((aff[:3, :3] ** 2).sum(0))
        lo, hi = params.demo.spacing_mm_range
        assert np.all((spacing >= lo) & (spacing <= hi))
        volume_ml = mask.sum() * np.prod(spacing) / 1000
        assert 1000 < volume_ml < 2200  # an adult brain, after the pose's scaling
        assert data[mask].mean() > 10 * max(data[~mask].mean(), 1e-3)
    assert nib.aff2axcodes(a[2]) != ("R", "A", "S") or nib.aff2axcodes(c[2]) != ("R", "A", "S")


def test_lesions_are_inside_the_brain_with_both_polarities() -> None:
    params = load_params()
    image, brain = phantom((60, 60, 60))
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    darker = brighter = 0
    for seed in range(6):
        out, truth, lesions = insert_lesions(image, affine, brain, params.lesions,
                                             np.random.default_rng(seed))
        assert truth.any() and not truth[~brain].any()
        lo, hi = params.lesions.per_scan
        assert lo <= len(lesions) <= hi
        diff = out[truth] - image[truth]
        darker += int((diff < 0).any())
        brighter += int((diff > 0).any())
        # soft border: some changed voxels lie outside the hard ground-truth mask
        assert np.any((out != image) & ~truth)
    assert darker and brighter
