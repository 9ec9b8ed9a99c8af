"""Brain masks for scans without one, and the registration quality measures."""

from __future__ import annotations

import numpy as np
from conftest import phantom

from pipeline.preprocess.brainmask import background_value, is_skull_stripped, stripped_foreground
from pipeline.preprocess.registration import containment, dice

SPACING = np.array([2.0, 2.0, 2.0])


def test_stripped_scan_with_negative_voxels_is_recognised() -> None:
    image, mask = phantom((60, 60, 60))
    image[30, 30, 30] = -50.0  # bias correction can leave a few negative voxels in the brain
    assert background_value(image) == 0.0
    assert dice(stripped_foreground(image), mask) > 0.99
    assert is_skull_stripped(image, SPACING, max_volume_ml=2200.0)


def test_head_with_skull_is_not_taken_for_a_stripped_brain() -> None:
    image, _ = phantom((100, 100, 100))
    rng = np.random.default_rng(0)
    head = np.where(image > 0, image, 40.0 + rng.normal(0, 5, image.shape))  # tissue + noise
    assert not is_skull_stripped(head, SPACING, max_volume_ml=2200.0)


def test_containment_ignores_a_tighter_mask_but_not_a_shift() -> None:
    outer = np.zeros((60, 40, 40), bool)
    outer[5:35, 5:35, 5:35] = True
    tight = np.zeros_like(outer)
    tight[10:30, 10:30, 10:30] = True
    assert containment(tight, outer) == 1.0 and dice(tight, outer) < 0.5
    shifted = np.zeros_like(outer)
    shifted[28:48, 10:30, 10:30] = True  # the same brain, 18 voxels off
    assert containment(shifted, outer) < 0.5
