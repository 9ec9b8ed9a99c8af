"""A 3D convolutional VAE with a spatial (fully convolutional) latent, and its ELBO.

The encoder halves the resolution at each of ``channels`` stages; a 1×1×1 convolution gives
the posterior mean and log-variance per latent channel and position; the decoder mirrors the
encoder with transposed convolutions and adds a learnable voxel-wise mean image. The decoder
is a Gaussian with fixed standard deviation ``recon_sigma``, so the loss is the negative ELBO
in nats (per volume) when ``beta = 1``.

Example:
    >>> import torch
    >>> vae = ConvVAE(channels=[8, 16], latent_channels=4)
    >>> out = vae(torch.zeros(2, 1, 16, 16, 16))
    >>> tuple(out.reconstruction.shape), tuple(out.mu.shape)
    ((2, 1, 16, 16, 16), (2, 4, 4, 4, 4))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_GROUPS = 8  # group normalisation groups (when norm == "group")
_NEG_SLOPE = 0.2
_LOGVAR_RANGE = (-12.0, 8.0)  # keeps exp(logvar) finite in half precision


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm3d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(ch)
    if kind == "group":
        return nn.GroupNorm(min(_GROUPS, ch), ch)
    return nn.Identity()


def _down(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 4, stride=2, padding=1), _norm(norm, cout), nn.LeakyReLU(_NEG_SLOPE),
        nn.Conv3d(cout, cout, 3, padding=1), _norm(norm, cout), nn.LeakyReLU(_NEG_SLOPE),
    )


def _up(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1), _norm(norm, cout),
        nn.LeakyReLU(_NEG_SLOPE),
        nn.Conv3d(cout, cout, 3, padding=1), _norm(norm, cout), nn.LeakyReLU(_NEG_SLOPE),
    )


@dataclass
class VAEOutput:
    reconstruction: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


class ConvVAE(nn.Module):
    """3D convolutional VAE with a spatial latent of ``latent_channels`` channels."""

    def __init__(self, channels: list[int], latent_channels: int, norm: str = "instance",
                 in_channels: int = 1, image_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        # Optional learnable voxel-wise mean image: the decoder models each subject's deviation
        # from it, which a small network learns far faster than the whole anatomy.
        self.mean_image = (nn.Parameter(torch.zeros(1, in_channels, *image_shape))
                           if image_shape is not None else None)
        enc: list[nn.Module] = []
        cin = in_channels
        for ch in channels:
            enc.append(_down(cin, ch, norm))
            cin = ch
        self.encoder = nn.Sequential(*enc)
        self.to_posterior = nn.Conv3d(cin, 2 * latent_channels, 1)
        self.from_latent = nn.Sequential(nn.Conv3d(latent_channels, cin, 1),
                                         nn.LeakyReLU(_NEG_SLOPE))
        dec: list[nn.Module] = []
        for ch in [*reversed(channels[:-1]), channels[0]]:
            dec.append(_up(cin, ch, norm))
            cin = ch
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Conv3d(cin, in_channels, 3, padding=1)
        self.latent_channels = latent_channels

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.to_posterior(self.encoder(x))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(*_LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.head(self.decoder(self.from_latent(z)))
        return out if self.mean_image is None else out + self.mean_image

    @torch.no_grad()
    def init_mean_image(self, images: torch.Tensor) -> None:
        """Start the mean image at the voxel-wise mean of ``images`` (N, C, D, H, W)."""
        if self.mean_image is not None:
            self.mean_image.copy_(images.float().mean(0, keepdim=True).to(self.mean_image))

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> VAEOutput:
        """Encode, sample (in training mode, or when ``sample``), decode."""
        mu, logvar = self.encode(x)
        draw = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if draw else mu
        return VAEOutput(self.decode(z), mu, logvar, z)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per-voxel negative log-likelihood (nats) under N(mean, sigma²)."""
    return 0.5 * ((x - mean) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-latent-unit KL(q(z|x) || N(0, I)) in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


@dataclass
class ELBOTerms:
    loss: torch.Tensor           # what is minimised: recon + beta * kl (per volume, mean)
    reconstruction: torch.Tensor  # nats per volume
    kl: torch.Tensor              # nats per volume

    @property
    def negative_elbo(self) -> torch.Tensor:
        return self.reconstruction + self.kl


def elbo(out: VAEOutput, x: torch.Tensor, sigma: float, beta: float) -> ELBOTerms:
    """Batch-mean ELBO terms of ``out`` for inputs ``x``."""
    batch = x.shape[0]
    rec = gaussian_nll(x.float(), out.reconstruction.float(), sigma).reshape(batch, -1).sum(1)
    kl = kl_divergence(out.mu.float(), out.logvar.float()).reshape(batch, -1).sum(1)
    return ELBOTerms(loss=(rec + beta * kl).mean(), reconstruction=rec.mean(), kl=kl.mean())
