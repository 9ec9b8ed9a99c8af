"""A fully convolutional VAE that trains on patches and scores whole volumes.

The encoder embeds the input with a strided convolution (``stem`` voxels per side become one
feature vector: a patch embedding, far cheaper than convolutions at full resolution), then
runs one residual block of ``blocks[i]`` 3×3×3 convolutions per level, halving the
resolution between levels (2×2×2 convolutions, stride 2); a 1×1×1 convolution gives the
posterior mean and log-variance of a spatial latent. The decoder mirrors it, upsampling by
``upsample`` (``shuffle``: a 2×2×2 transposed convolution, stride 2, which tiles without
overlap and leaves no checkerboard; ``nearest`` / ``trilinear`` + convolution;
``transposed``: 4×4×4 stride 2), and a transposed convolution as large as the stem returns to
the input grid. The voxel-wise mean of the training scans is a fixed input channel
(``mean_input``) and the decoder predicts each subject's deviation from it: its last layer
starts at zero, so an untrained model reconstructs the mean image and training only has to
learn what differs. Every layer is translation-equivariant, so a model trained on random
patches (``origins`` says where each patch lies in the template crop) scores a whole crop.

Example:
    >>> import torch
    >>> vae = PatchVAE([8, 16], [1, 1], latent_channels=2, image_shape=(32, 32, 32))
    >>> vae.downsampling, tuple(vae(torch.rand(1, 1, 32, 32, 32)).mu.shape)
    (4, (1, 2, 8, 8, 8))
    >>> patch = vae(torch.rand(2, 1, 16, 16, 16), origins=[(0, 0, 0), (16, 8, 0)])
    >>> tuple(patch.reconstruction.shape)
    (2, 1, 16, 16, 16)
    >>> bool((vae(torch.rand(1, 1, 32, 32, 32)).reconstruction == vae.mean_image).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model.layers import LOGVAR_RANGE, NEG_SLOPE, VAE, VAEOutput, norm_layer

WHOLE_CROP: tuple[tuple[int, int, int], ...] = ()  # ``origins``: the inputs are the whole crop
UPSAMPLING = ("shuffle", "nearest", "trilinear", "transposed")


class _Block(nn.Module):
    """``n`` × (conv 3×3×3 → norm → LeakyReLU), added to its input (identity when n = 0)."""

    def __init__(self, ch: int, norm: str, n: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n):
            layers += [nn.Conv3d(ch, ch, 3, padding=1), norm_layer(norm, ch),
                       nn.LeakyReLU(NEG_SLOPE)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if len(self.body) else x


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode == "shuffle":
            self.conv: nn.Module = nn.ConvTranspose3d(cin, cout, 2, stride=2)
        elif mode == "transposed":
            self.conv = nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1)
        else:
            self.conv = nn.Conv3d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode in ("nearest", "trilinear"):
            x = F.interpolate(x, scale_factor=2, mode=self.mode)
        return self.conv(x)


def _encoder(cin: int, channels: Sequence[int], blocks: Sequence[int], stem: int, norm: str
             ) -> nn.Sequential:
    first = nn.Conv3d(cin, channels[0], stem, stride=stem) if stem > 1 else \
        nn.Conv3d(cin, channels[0], 3, padding=1)
    layers: list[nn.Module] = [first, norm_layer(norm, channels[0]), nn.LeakyReLU(NEG_SLOPE)]
    for i, ch in enumerate(channels):
        layers.append(_Block(ch, norm, blocks[i]))
        if i + 1 < len(channels):
            layers += [nn.Conv3d(ch, channels[i + 1], 2, stride=2),
                       norm_layer(norm, channels[i + 1]), nn.LeakyReLU(NEG_SLOPE)]
    return nn.Sequential(*layers)


def _decoder(channels: Sequence[int], blocks: Sequence[int], norm: str, upsample: str
             ) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in reversed(range(len(channels))):
        layers.append(_Block(channels[i], norm, blocks[i]))
        if i > 0:
            layers += [_Up(channels[i], channels[i - 1], upsample),
                       norm_layer(norm, channels[i - 1]), nn.LeakyReLU(NEG_SLOPE)]
    return nn.Sequential(*layers)


class PatchVAE(VAE):
    """See the module docstring. ``learned_sigma``: the head also predicts a voxel-wise
    standard deviation (softplus, floored at ``min_sigma``, starting at ``init_sigma``)."""

    latent = "spatial"
    mean_image: torch.Tensor   # a buffer: the voxel-wise mean of the training scans

    def __init__(self, channels: Sequence[int], blocks: Sequence[int], latent_channels: int,
                 image_shape: tuple[int, int, int], *, stem: int = 2, norm: str = "group",
                 upsample: str = "shuffle", mean_input: bool = True,
                 learned_sigma: bool = False, init_sigma: float = 0.1,
                 min_sigma: float = 0.01) -> None:
        super().__init__()
        if len(blocks) != len(channels) or upsample not in UPSAMPLING:
            raise ValueError("one block count per level; upsample one of " + str(UPSAMPLING))
        self.latent_channels, self.latent_dim = latent_channels, 0
        self.downsampling = stem * 2 ** (len(channels) - 1)
        self.mean_input, self.learned_sigma, self.min_sigma = mean_input, learned_sigma, min_sigma
        self.register_buffer("mean_image", torch.zeros(1, 1, *image_shape))
        self.encoder = _encoder(2 if mean_input else 1, channels, blocks, stem, norm)
        self.to_posterior = nn.Conv3d(channels[-1], 2 * latent_channels, 1)
        self.from_latent = nn.Sequential(nn.Conv3d(latent_channels, channels[-1], 1),
                                         nn.LeakyReLU(NEG_SLOPE))
        self.decoder = _decoder(channels, blocks, norm, upsample)
        out = 2 if learned_sigma else 1
        head: nn.ConvTranspose3d | nn.Conv3d = (
            nn.ConvTranspose3d(channels[0], out, stem, stride=stem) if stem > 1
            else nn.Conv3d(channels[0], out, 3, padding=1))
        nn.init.zeros_(head.weight)
        assert head.bias is not None
        nn.init.zeros_(head.bias)  # an untrained model reconstructs the mean image
        self.head = head
        self.sigma_offset = math.log(math.expm1(max(init_sigma - min_sigma, 1e-6)))

    def prior_mean(self, n: int, shape: Sequence[int],
                   origins: Sequence[tuple[int, int, int]]) -> torch.Tensor:
        """The mean image on inputs of spatial ``shape``: the whole crop, or one patch per
        origin."""
        if not origins:
            return self.mean_image.expand(n, -1, *self.mean_image.shape[2:])
        d, h, w = (int(s) for s in shape)
        return torch.cat([self.mean_image[..., a:a + d, b:b + h, c:c + w]
                          for a, b, c in origins])

    def encode(self, x: torch.Tensor, origins: Sequence[tuple[int, int, int]] = WHOLE_CROP
               ) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        if self.mean_input:
            h = torch.cat([x, self.prior_mean(len(x), x.shape[2:], origins).to(x.dtype)], 1)
        mu, logvar = self.to_posterior(self.encoder(h)).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def decode_params(self, z: torch.Tensor,
                      origins: Sequence[tuple[int, int, int]] = WHOLE_CROP
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder mean and (``learned_sigma``) voxel-wise std for latents ``z``."""
        out = self.head(self.decoder(self.from_latent(z)))
        sigma = None
        if self.learned_sigma:
            out, raw = out.chunk(2, dim=1)
            sigma = F.softplus(raw.float() + self.sigma_offset) + self.min_sigma
        return out + self.prior_mean(len(z), out.shape[2:], origins), sigma

    def forward(self, x: torch.Tensor, sample: bool = False,
                origins: Sequence[tuple[int, int, int]] = WHOLE_CROP) -> VAEOutput:
        """Encode, draw z ~ q(z|x) when ``sample`` (else take the posterior mean), decode."""
        mu, logvar = self.encode(x, origins)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        rec, sigma = self.decode_params(z, origins)
        return VAEOutput(rec, mu, logvar, z, sigma)
