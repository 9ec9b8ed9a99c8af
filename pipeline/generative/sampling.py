"""The VAE as a generative model: prior samples, latent paths, imputation, log-likelihood.

Model math only (tensors in, tensors out); :mod:`pipeline.commands.generative` turns it
into commands and :mod:`pipeline.generative.imputation` maps imputations back to a scan's
own grid.

- :func:`sample_latents`, :func:`decode_mean` / :func:`decode_draw`: z ~ N(0, T² I), and the
  decoder's mean E[x|z] or a draw x ~ p(x|z) from the decoder likelihood.
- :func:`latent_path`: linear or spherical interpolation between two latents.
- :func:`impute`: the missing region refilled by iterating the model's posterior-mean
  reconstruction there (Rezende et al. 2014, §5), every other voxel held fixed.
- :func:`log_likelihood`: the importance-weighted bound on log p(x), in nats per volume and
  bits per voxel.

Example:
    >>> import torch
    >>> from pipeline.model.network import ConvVAE
    >>> vae = ConvVAE([4, 8], latent_channels=2).eval()
    >>> z = sample_latents(latent_shape(vae, (16, 16, 16)), n=3, temperature=1.0, seed=0)
    >>> tuple(decode_mean(vae, z).shape)
    (3, 16, 16, 16)
    >>> path = latent_path(z[0], z[1], steps=5, mode="spherical")
    >>> tuple(path.shape), bool(torch.allclose(path[-1], z[1], atol=1e-5))
    ((5, 2, 4, 4, 4), True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pipeline.config.kinds import PATH_MODES
from pipeline.config.output_schema import ImputeParams
from pipeline.model.layers import VAE
from pipeline.model.objective import Likelihood, iwae_log_likelihood
from pipeline.model.restoration import frozen

_PARALLEL = 1e-6  # below this sin(angle) spherical interpolation is linear
LAPLACE_CLAMP = 1e-6  # uniform draws kept inside (0, 1) for the Laplace inverse CDF


def latent_shape(vae: VAE, image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one latent (without the batch axis) for images of ``image_shape``."""
    if vae.latent == "dense":
        return (vae.latent_dim,)
    return (vae.latent_channels, *(n // vae.downsampling for n in image_shape))


def sample_latents(shape: tuple[int, ...], n: int, temperature: float, seed: int
                   ) -> torch.Tensor:
    """``n`` latents from the prior N(0, I), scaled by ``temperature`` (CPU generator)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=gen) * temperature


def _decoded(vae: VAE, z: torch.Tensor, batch: int
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Decoder mean and (learned) std, float32 on the CPU, ``batch`` latents at a time."""
    device = next(vae.parameters()).device
    for chunk in z.split(max(batch, 1)):
        mean, sigma = vae.decode_params(chunk.to(device))
        yield mean.float().cpu()[:, 0], None if sigma is None else sigma.float().cpu()[:, 0]


@torch.no_grad()
def decode_mean(vae: VAE, z: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """The decoder means E[x|z] ``(n, *image_shape)`` (float32, CPU) of latents ``z``."""
    return torch.cat([mean for mean, _ in _decoded(vae, z, batch)])


@torch.no_grad()
def decode_draw(vae: VAE, z: torch.Tensor, likelihood: Likelihood, seed: int,
                batch: int = 4) -> torch.Tensor:
    """Draws x ~ p(x|z) from the decoder likelihood (Gaussian or Laplace noise around the
    mean, seeded) for latents ``z``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for mean, sigma in _decoded(vae, z, batch):
        scale = sigma if sigma is not None else torch.full_like(mean, likelihood.scale)
        u = torch.randn(mean.shape, generator=gen) if likelihood.kind != "laplace" else \
            torch.distributions.Laplace(0.0, 1.0).icdf(
                torch.rand(mean.shape, generator=gen).clamp(LAPLACE_CLAMP, 1 - LAPLACE_CLAMP))
        out.append(mean + scale * u)
    return torch.cat(out)


@torch.no_grad()
def encode_mean(vae: VAE, image: torch.Tensor) -> torch.Tensor:
    """Posterior mean of one image ``(*image_shape)``: a latent ``(...)`` on the CPU."""
    device = next(vae.parameters()).device
    return vae.encode(image[None, None].float().to(device))[0][0].float().cpu()


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    fa, fb = a.flatten().double(), b.flatten().double()
    cos = torch.clamp(fa @ fb / (fa.norm() * fb.norm()).clamp_min(1e-12), -1.0, 1.0)
    omega = float(torch.arccos(cos))
    if math.sin(omega) < _PARALLEL:  # (anti)parallel: the great circle is not defined
        return (1 - t) * a + t * b
    wa, wb = math.sin((1 - t) * omega) / math.sin(omega), math.sin(t * omega) / math.sin(omega)
    return (wa * a.double() + wb * b.double()).to(a.dtype)


def latent_path(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str) -> torch.Tensor:
    """``steps`` latents from ``a`` to ``b`` (both included), ``linear`` or ``spherical``.

    Spherical interpolation (slerp) follows the great circle between the two latents, which
    keeps intermediate points at a norm typical of the prior instead of cutting through its
    low-density centre; for (anti)parallel latents it is linear.
    """
    if mode not in PATH_MODES:
        raise ValueError(f"interpolation mode must be one of {PATH_MODES}, got {mode!r}")
    if steps < 2:
        raise ValueError("an interpolation path needs at least 2 steps")
    ts = [i / (steps - 1) for i in range(steps)]
    if mode == "linear":
        return torch.stack([(1 - t) * a + t * b for t in ts])
    return torch.stack([_slerp(a, b, t) for t in ts])


def impute(vae: VAE, image: torch.Tensor, missing: torch.Tensor,
           params: ImputeParams) -> torch.Tensor:
    """``image`` (1, 1, D, H, W) with the voxels where ``missing > 0`` refilled.

    Iterated reconstruction (missing-data imputation of Rezende, Mohamed & Wierstra 2014,
    §5, with the posterior mean): each of ``params.steps`` steps moves the missing voxels
    ``params.step_size`` of the way to the reconstruction of the current image; the rest of
    the scan stays fixed and conditions the encoder. Why full steps and not gradient steps on
    −ELBO: docs/explanation/generative.md (the figures: docs/results).
    """
    region = missing > 0
    x = image.clone()
    with frozen(vae), torch.no_grad():
        for _ in range(params.steps):
            reconstruction = vae(x, sample=False).reconstruction.to(x.dtype)
            x = torch.where(region, x + params.step_size * (reconstruction - x), image)
    return x


@dataclass(frozen=True)
class LogLikelihood:
    """Importance-weighted lower bound on log p(x) of one template-space image."""

    nats: float          # per volume (higher: more likely under the healthy model)
    bits_per_voxel: float  # −nats / (voxels · ln 2) (lower: more likely)
    k: int               # importance samples
    voxels: int


def log_likelihood(vae: VAE, likelihood: Likelihood, image: torch.Tensor, k: int,
                   seed: int, batch: int = 1) -> LogLikelihood:
    """IWAE bound with ``k`` samples for one image ``(*image_shape)`` (seeded, reproducible)."""
    device = next(vae.parameters()).device
    x = image[None, None].float().to(device)
    value = iwae_log_likelihood(vae, x, likelihood, k, torch.Generator().manual_seed(seed),
                                batch=batch)
    nats, voxels = float(value[0]), int(image.numel())
    return LogLikelihood(nats=nats, bits_per_voxel=-nats / (voxels * math.log(2)), k=k,
                         voxels=voxels)
