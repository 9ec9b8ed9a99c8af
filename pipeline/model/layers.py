"""What every network of the package shares: the VAE interface, its output, norm layers.

Both architectures (:class:`pipeline.model.network.ConvVAE`, the classic whole-volume
network, and :class:`pipeline.model.patchnet.PatchVAE`, the patch-trained one) are a
:class:`VAE`: scoring, restoration, the generative commands and the training loop use
nothing else.

Example:
    >>> norm_layer("group", 16).num_groups, norm_layer("group", 4).num_groups
    (8, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GROUPS = 8  # group normalisation groups (fewer for narrower layers)
NEG_SLOPE = 0.2  # of the LeakyReLU activations
LOGVAR_RANGE = (-12.0, 8.0)  # keeps exp(logvar) finite in half precision


def norm_layer(kind: str, ch: int) -> nn.Module:
    """``instance``, ``batch``, ``group`` normalisation of ``ch`` channels, or none."""
    if kind == "instance":
        return nn.InstanceNorm3d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(ch)
    if kind == "group":
        return nn.GroupNorm(min(GROUPS, ch), ch)
    return nn.Identity()


@dataclass
class VAEOutput:
    reconstruction: torch.Tensor       # decoder mean (location) on the input's grid
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    sigma: torch.Tensor | None = None  # voxel-wise std (gaussian_learned only)


class VAE(nn.Module):
    """The interface of the package's networks: encoder q(z|x), decoder p(x|z)."""

    latent: str                # "spatial" (a latent map) or "dense" (a vector)
    latent_channels: int
    latent_dim: int
    downsampling: int          # input size / latent map size
    learned_sigma: bool
    mean_image: torch.Tensor | None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of ``x`` (N, 1, D, H, W)."""
        raise NotImplementedError

    def decode_params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder mean and (learned likelihoods only) voxel-wise std of latents ``z``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_params(z)[0]

    @torch.no_grad()
    def init_mean_image(self, images: torch.Tensor) -> None:
        """Start the mean image at the voxel-wise mean of ``images`` (N, C, D, H, W); a
        network without one ignores it."""
        if self.mean_image is not None:
            self.mean_image.copy_(images.float().mean(0, keepdim=True).to(self.mean_image))
