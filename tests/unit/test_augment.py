"""Augmentation: seeded, identity when off, background kept, geometry preserved."""

from __future__ import annotations

import torch

from pipeline.config.model_schema import AugmentParams
from pipeline.model.augment import augment, random_affine

OFF = AugmentParams(False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
ALL = AugmentParams(True, 5.0, 2.0, 0.05, 0.1, 0.05, 0.2, 0.3)


def _blob() -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 20)] * 3, indexing="ij"))
    inside = (grid**2).sum(0) < 0.5
    return (inside * (0.5 + 0.3 * grid[0])).float().expand(2, 1, 20, 20, 20).clone()


def test_off_is_the_identity_and_all_is_seeded() -> None:
    x = _blob()
    assert torch.equal(augment(x, OFF, torch.Generator().manual_seed(0)), x)
    a = augment(x, ALL, torch.Generator().manual_seed(3))
    b = augment(x, ALL, torch.Generator().manual_seed(3))
    c = augment(x, ALL, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_intensity_changes_keep_the_background_zero() -> None:
    x = _blob()
    ap = AugmentParams(False, 0.0, 0.0, 0.0, 0.2, 0.1, 0.3, 0.5)
    y = augment(x, ap, torch.Generator().manual_seed(0))
    assert torch.all(y[x == 0] == 0)
    assert torch.all(y[x > 0] > 0)


def test_affine_is_a_small_rigid_change() -> None:
    x = _blob()
    ap = AugmentParams(False, 10.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    y = random_affine(x, ap, torch.Generator().manual_seed(0))
    # a rigid motion keeps the mass (within interpolation error) and moves the centre of
    # mass by at most the translation, plus what a 10 degree turn does to an off-centre blob
    assert abs(y.sum() / x.sum() - 1) < 0.02
    grid = torch.stack(torch.meshgrid(*[torch.arange(20.0)] * 3, indexing="ij"))

    def com(v: torch.Tensor) -> torch.Tensor:
        return (grid * v[0, 0]).flatten(1).sum(1) / v[0, 0].sum()

    assert 0 < float((com(y) - com(x)).norm()) < 3 * 3**0.5 + 1
    assert not torch.allclose(x, y)
