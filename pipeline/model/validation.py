"""Validation of a VAE on healthy scans: -ELBO, its terms, KL per channel, IWAE bound.

Posterior noise comes from generators seeded per volume (seed + index), never from the
global RNG, so the validation -ELBO of an epoch does not depend on the number of processes,
does not disturb training's random stream, and two epochs are compared on the same noise.

Example:
    >>> import torch
    >>> from pipeline.model.network import ConvVAE
    >>> from pipeline.model.objective import Likelihood
    >>> vae, data = ConvVAE([4, 8], latent_channels=2), torch.rand(3, 1, 16, 16, 16)
    >>> lik, brain = Likelihood("gaussian", 0.1), torch.ones_like(data, dtype=torch.bool)
    >>> v = validate(vae, data, brain, lik, seed=1, batch_size=2, iwae_samples=8)
    >>> v.negative_elbo == v.reconstruction + v.kl, len(v.kl_channels), v.iwae_nll is not None
    (True, 2, True)
    >>> again = validate(vae, data, brain, lik, seed=1, batch_size=3)  # same noise, any batching
    >>> abs(again.negative_elbo - v.negative_elbo) < 1e-5 * abs(v.negative_elbo)
    True
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from pipeline.model.distributed import SINGLE_PROCESS, World, all_sum
from pipeline.model.layers import VAE, VAEOutput
from pipeline.model.objective import Likelihood, elbo_terms, iwae_log_likelihood

NO_AUTOCAST = contextlib.nullcontext()  # validation in the model's own precision


@dataclass
class Validation:
    negative_elbo: float        # nats per volume
    reconstruction: float
    kl: float
    kl_channels: list[float]    # nats per volume, per latent channel (dense: per unit)
    units_per_channel: int      # latent units in one channel (spatial positions; dense: 1)
    iwae_nll: float | None      # -log p(x) importance-weighted bound, nats per volume
    reconstruction_mae: float   # mean |x - decoder mean of the posterior mean| in the brain


def brain_error_sums(pred: torch.Tensor, x: torch.Tensor, brain: torch.Tensor
                     ) -> tuple[float, float]:
    """Sum of |pred - x| over the brain voxels of a batch, and their count (float64)."""
    b = brain.to(pred.device, torch.float64)
    return float(((pred.double() - x.double()).abs() * b).sum()), float(b.sum())


def brain_mae(pred: torch.Tensor, x: torch.Tensor, brain: torch.Tensor) -> float:
    """Mean absolute error over the brain voxels of a batch (pooled over scans)."""
    error, voxels = brain_error_sums(pred, x, brain)
    return error / max(voxels, 1.0)


def _noise(shape: torch.Size, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def validate(vae: VAE, data: torch.Tensor, brain: torch.Tensor, likelihood: Likelihood,
             seed: int, batch_size: int, iwae_samples: int = 0, world: World = SINGLE_PROCESS,
             autocast: contextlib.AbstractContextManager[None] = NO_AUTOCAST,
             sample: bool = True) -> Validation:
    """Mean validation terms over ``data`` (with its brain masks ``brain``); under torchrun
    each rank takes every ``world.size``-th volume and the sums are reduced, so all ranks
    get the same values. ``sample=False`` decodes the posterior mean (a plain autoencoder,
    β = 0) for the ELBO too; the reconstruction error is always the posterior mean's."""
    was_training = vae.training
    vae.eval()
    index = torch.arange(len(data))[world.rank::world.size]
    n_channels = vae.latent_dim if vae.latent == "dense" else vae.latent_channels
    device = next(vae.parameters()).device
    # count, rec, kl, iwae, |error| and brain voxels, channels
    sums = torch.zeros(6 + n_channels, dtype=torch.float64)
    units = 1
    for start in range(0, len(index), batch_size):
        idx = index[start: start + batch_size]
        x = data[idx.to(data.device)].to(device, non_blocking=True)
        with autocast:
            mu, logvar = (t.float() for t in vae.encode(x))
            eps = torch.stack([_noise(mu.shape[1:], seed + int(i)) for i in idx]).to(mu.device)
            z = mu + eps * torch.exp(0.5 * logvar) if sample else mu
            rec, sigma = vae.decode_params(z)
            terms = elbo_terms(VAEOutput(rec, mu, logvar, z, sigma), x, likelihood, 1.0, 0.0)
            mean_rec = rec if not sample else vae.decode_params(mu)[0]
            iwae = torch.zeros(len(idx), device=mu.device)
            if iwae_samples > 0:
                gen = torch.Generator().manual_seed(seed + int(idx[0]) + len(data))
                iwae = iwae_log_likelihood(vae, x, likelihood, iwae_samples, gen)
        units = mu[0, 0].numel()
        n = len(idx)
        sums[0] += n
        sums[1] += float(terms.reconstruction) * n  # elbo_terms gives batch means
        sums[2] += float(terms.kl) * n
        sums[3] += float(-iwae.float().sum())
        error, voxels = brain_error_sums(mean_rec, x, brain[idx.to(brain.device)])
        sums[4] += error
        sums[5] += voxels
        sums[6:] += (terms.kl_channels * n).double().cpu()
    sums = all_sum(sums.to(device if device.type == "cuda" else "cpu"), world).cpu()
    count = max(float(sums[0]), 1.0)
    vae.train(was_training)
    rec_m, kl_m = float(sums[1]) / count, float(sums[2]) / count

    return Validation(negative_elbo=rec_m + kl_m, reconstruction=rec_m, kl=kl_m,
                      kl_channels=[float(v) / count for v in sums[6:]], units_per_channel=units,
                      iwae_nll=float(sums[3]) / count if iwae_samples > 0 else None,
                      reconstruction_mae=float(sums[4]) / max(float(sums[5]), 1.0))

