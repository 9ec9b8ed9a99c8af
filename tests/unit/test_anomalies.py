"""Synthetic anomalies on training patches: what the encoder sees changes, the target not."""

from __future__ import annotations

import dataclasses

import torch

from pipeline.config.examples import train_params
from pipeline.model.anomalies import blob_weight, corrupt
from pipeline.model.batches import batches


def _patches(n: int = 6) -> torch.Tensor:
    x = torch.zeros(n, 1, 20, 20, 20)
    x[:, :, 3:17, 3:17, 3:17] = 0.6 + 0.1 * torch.rand(n, 1, 14, 14, 14,
                                                       generator=torch.Generator().manual_seed(1))
    return x


def test_blobs_stay_in_the_brain_and_move_intensities_both_ways() -> None:
    ap = dataclasses.replace(train_params().anomalies, probability=1.0, per_patch=[2, 3],
                             diameter_vox=[4.0, 8.0])
    x = _patches(16)
    y = corrupt(x, ap, torch.Generator().manual_seed(0))
    brain = x != 0
    assert torch.equal(y[~brain], x[~brain])                 # background exactly 0
    changed = (y - x).abs() > 1e-4
    assert changed.reshape(16, -1).any(1).all()              # every patch got blobs
    diff = (y - x)[changed]
    assert (diff < -0.1).any() and (diff > 0.1).any()         # darker and brighter blobs


def test_probability_and_seed_decide_which_patches_change() -> None:
    x = _patches(40)
    ap = dataclasses.replace(train_params().anomalies, probability=0.5)
    a = corrupt(x, ap, torch.Generator().manual_seed(3))
    b = corrupt(x, ap, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    share = float(((a - x).abs().reshape(40, -1).amax(1) > 1e-4).float().mean())
    assert 0.25 < share < 0.75
    off = dataclasses.replace(ap, probability=0.0)
    assert corrupt(x, off, torch.Generator().manual_seed(3)) is x


def test_a_blob_is_soft_and_roughly_its_diameter() -> None:
    w = blob_weight((32, 32, 32), torch.tensor([16.0, 16.0, 16.0]),
                    torch.tensor([5.0, 5.0, 5.0]), 1.0, torch.Generator().manual_seed(0))
    assert float(w[16, 16, 16]) == 1.0 and float(w[0, 0, 0]) == 0.0
    inside = float((w > 0.5).sum())
    sphere = 4 / 3 * torch.pi * 5.0 ** 3
    assert 0.4 * sphere < inside < 2.0 * sphere
    assert ((w > 0) & (w < 1)).any()                         # a soft border


def test_batches_corrupt_the_input_and_keep_the_clean_target() -> None:
    tp = train_params(batch_size=4, patch_size=0)
    tp = dataclasses.replace(tp, anomalies=dataclasses.replace(tp.anomalies, probability=1.0))
    data = _patches(3)
    b = next(batches(data, torch.ones(20, 20, 20, dtype=torch.bool), tp, 1,
                     torch.Generator().manual_seed(0)))
    assert not torch.equal(b.inputs, b.target)
    assert torch.equal(b.inputs[b.target == 0], b.target[b.target == 0])
