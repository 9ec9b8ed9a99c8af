"""The template crop, and its storage with a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.template import _CACHE, load_template, read_template, save_template


def test_template_round_trips_through_its_file(tmp_path: Path) -> None:
    tpl = load_template(6.0, (32, 32, 32))
    assert tpl.shape == (32, 32, 32) and tpl.brain.any()
    # the crop is centred on the brain: it touches no face of the box
    assert not tpl.brain[0].any() and not tpl.brain[-1].any()
    save_template(tpl, tmp_path / "t.safetensors")
    _CACHE.clear()
    back = read_template(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back.image, tpl.image)
    np.testing.assert_array_equal(back.brain, tpl.brain)
    np.testing.assert_array_equal(back.affine, tpl.affine)


def test_non_contiguous_arrays_are_stored_correctly(tmp_path: Path) -> None:
    tpl = load_template(6.0, (32, 32, 32))
    from dataclasses import replace

    flipped = replace(tpl, image=tpl.image.transpose(2, 1, 0).transpose(2, 1, 0)[::-1][::-1])
    view = replace(tpl, image=np.asfortranarray(tpl.image))
    for t in (flipped, view):
        save_template(t, tmp_path / "v.safetensors")
        np.testing.assert_array_equal(read_template(tmp_path / "v.safetensors").image, tpl.image)
