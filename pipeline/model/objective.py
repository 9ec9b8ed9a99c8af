"""The ELBO in nats: decoder likelihoods, KL with free bits, and the IWAE bound.

``-ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I))`` per volume, summed over voxels and
latent units. The training loss replaces the KL by ``β · Σ_c max(KL_c, λ·n_c)``: free bits
(Kingma et al. 2016) per latent channel ``c`` of ``n_c`` units, so a channel that carries
less than ``λ`` nats per unit costs nothing more and the optimiser has no reason to
collapse it. Reported ELBOs always use the true KL, so they stay a bound on log p(x).

Example:
    >>> import torch
    >>> from pipeline.model.network import ConvVAE
    >>> vae, x = ConvVAE([4, 8], latent_channels=2), torch.rand(2, 1, 16, 16, 16)
    >>> terms = elbo_terms(vae(x), x, Likelihood("gaussian", 0.1), beta=1.0, free_bits=0.0)
    >>> bool(torch.isclose(terms.loss, terms.negative_elbo))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipeline.config.model_schema import ModelParams
from pipeline.model.layers import VAE, VAEOutput

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class Likelihood:
    """The decoder distribution p(x|z): ``gaussian`` (std ``scale``), ``gaussian_learned``
    (the decoder's voxel-wise std) or ``laplace`` (scale ``scale``)."""

    kind: str
    scale: float

    @classmethod
    def of(cls, model: ModelParams) -> Likelihood:
        """The likelihood a model with these parameters was trained with."""
        return cls(model.likelihood, model.recon_sigma)

    def nll(self, x: torch.Tensor, out: VAEOutput) -> torch.Tensor:
        """Per-voxel negative log-likelihood in nats (float32)."""
        mean = out.reconstruction.float()
        x = x.float()
        if self.kind == "laplace":
            return (x - mean).abs() / self.scale + math.log(2 * self.scale)
        if self.kind == "gaussian_learned":
            if out.sigma is None:
                raise ValueError("gaussian_learned needs a decoder with a learned sigma")
            return gaussian_nll(x, mean, out.sigma.float())
        return gaussian_nll(x, mean, self.scale)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, sigma: float | torch.Tensor
                 ) -> torch.Tensor:
    """Per-voxel negative log-likelihood (nats) under N(mean, sigma²)."""
    log_sigma = torch.log(sigma) if isinstance(sigma, torch.Tensor) else math.log(sigma)
    return 0.5 * ((x - mean) / sigma) ** 2 + log_sigma + _HALF_LOG_2PI


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-latent-unit KL(q(z|x) || N(0, I)) in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_per_channel(kl: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL per latent channel (spatial: summed over positions; dense: per unit)."""
    per_sample = kl.reshape(kl.shape[0], kl.shape[1], -1).sum(2)
    return per_sample.mean(0)


@dataclass
class ELBOTerms:
    loss: torch.Tensor            # what is minimised: recon + beta * free-bits KL (batch mean)
    reconstruction: torch.Tensor  # nats per volume (batch mean)
    kl: torch.Tensor              # true KL, nats per volume (batch mean)
    kl_channels: torch.Tensor     # true KL per latent channel/unit, nats per volume

    @property
    def negative_elbo(self) -> torch.Tensor:
        return self.reconstruction + self.kl


def elbo_terms(out: VAEOutput, x: torch.Tensor, likelihood: Likelihood, beta: float,
               free_bits: float) -> ELBOTerms:
    """Batch-mean ELBO terms of ``out`` for inputs ``x``."""
    batch = x.shape[0]
    rec = likelihood.nll(x, out).reshape(batch, -1).sum(1).mean()
    kl_units = kl_divergence(out.mu.float(), out.logvar.float())
    channels = kl_per_channel(kl_units)
    kl = channels.sum()
    if free_bits > 0:
        units = kl_units[0, 0].numel()
        penalised = torch.clamp(channels, min=free_bits * units).sum()
    else:
        penalised = kl
    return ELBOTerms(loss=rec + beta * penalised, reconstruction=rec, kl=kl,
                     kl_channels=channels.detach())


def _normal_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
                        ) -> torch.Tensor:
    return -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar) - _HALF_LOG_2PI


@torch.no_grad()
def iwae_log_likelihood(vae: VAE, x: torch.Tensor, likelihood: Likelihood, samples: int,
                        generator: torch.Generator, batch: int = 1
                        ) -> torch.Tensor:
    """Importance-weighted bound on log p(x) (Burda et al. 2016), nats per volume.

    ``log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x)`` with ``z_k ~ q(z|x)``; K = 1 is the ELBO and
    the bound tightens as K grows. ``batch`` importance samples are decoded per forward pass
    (each sample draws its own noise, so the result does not depend on it). Returns one value
    per volume of the batch ``x``.
    """
    mu, logvar = (t.float() for t in vae.encode(x))
    n = x.shape[0]
    weights = []
    remaining = max(samples, 1)
    while remaining > 0:
        c = min(max(batch, 1), remaining)
        remaining -= c
        eps = torch.stack([torch.randn(mu.shape, generator=generator, device="cpu")
                           for _ in range(c)]).to(mu.device)
        z = (mu + eps * torch.exp(0.5 * logvar)).flatten(0, 1)  # (c * n, ...), sample-major
        mu_c, logvar_c = mu.repeat(c, *[1] * (mu.ndim - 1)), logvar.repeat(
            c, *[1] * (mu.ndim - 1))
        rec, sigma = vae.decode_params(z)
        out = VAEOutput(rec, mu_c, logvar_c, z, sigma)
        x_c = x.repeat(c, *[1] * (x.ndim - 1))
        log_px = -likelihood.nll(x_c, out).reshape(c * n, -1).sum(1)
        log_pz = _normal_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = _normal_log_density(z, mu_c, logvar_c)
        weights.append((log_px + (log_pz - log_qz).reshape(c * n, -1).sum(1)).reshape(c, n))
    stacked = torch.cat(weights)
    return torch.logsumexp(stacked, 0) - math.log(stacked.shape[0])
