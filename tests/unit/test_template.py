"""The template crop, and its storage with a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.space.template import build_template, read_template, save_template


def test_template_round_trips_through_its_file(tmp_path: Path) -> None:
    tpl = build_template(6.0, (32, 32, 32))
    assert tpl.shape == (32, 32, 32) and tpl.brain.any()
    # the crop is centred on the brain: it touches no face of the box
    assert not tpl.brain[0].any() and not tpl.brain[-1].any()
    save_template(tpl, tmp_path / "t.safetensors")
    back = read_template(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back.image, tpl.image)
    np.testing.assert_array_equal(back.brain, tpl.brain)
    np.testing.assert_array_equal(back.affine, tpl.affine)


def test_non_contiguous_arrays_are_stored_correctly(tmp_path: Path) -> None:
    tpl = build_template(6.0, (32, 32, 32))
    from dataclasses import replace

    # a reversed view and a Fortran-ordered copy of the same image: neither is C-contiguous
    reversed_view = tpl.image[::-1, :, ::-1]
    fortran = np.asfortranarray(tpl.image)
    assert not reversed_view.flags.c_contiguous and not fortran.flags.c_contiguous
    for image in (reversed_view, fortran):
        save_template(replace(tpl, image=image), tmp_path / "v.safetensors")
        np.testing.assert_array_equal(read_template(tmp_path / "v.safetensors").image, image)
