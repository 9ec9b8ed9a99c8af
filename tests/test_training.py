"""The training loop returns the weights of its best validation epoch, reproducibly."""

from __future__ import annotations

import math

import torch

from pipeline.config import load_raw, params_from_dict
from pipeline.modelio import build_vae
from pipeline.training import best_epoch, evaluate_elbo, fit, seed_everything


def _params():
    raw = load_raw()
    raw["template"] = {"resolution_mm": 6.0, "crop_shape": [16, 16, 16]}
    raw["model"].update({"channels": [4, 8], "latent_channels": 2})
    raw["train"].update({"epochs": 4, "batch_size": 2, "kl_warmup_epochs": 1})
    return params_from_dict(raw)


def _data(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, 1, 16, 16, 16, generator=g)


def test_fit_keeps_the_best_validation_weights() -> None:
    params = _params()
    seed_everything(params.seed)
    vae = build_vae(params)
    train, val = _data(0), _data(1)
    history = fit(vae, train, val, params)
    assert len(history) == params.train.epochs
    rec, kl = evaluate_elbo(vae, val, params, torch.device("cpu"))
    assert math.isclose(rec + kl, best_epoch(history).val_negative_elbo, rel_tol=1e-5)


def test_same_seed_same_weights() -> None:
    params = _params()
    weights = []
    for _ in range(2):
        seed_everything(params.seed)
        vae = build_vae(params)
        fit(vae, _data(0), _data(1), params)
        weights.append(vae.state_dict())
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
