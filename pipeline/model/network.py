"""A configurable 3D convolutional VAE: spatial or dense latent, three decoder likelihoods.

The encoder has one stage per entry of ``channels`` (stride 2 halves the resolution, stride 1
keeps it), each optionally followed by MONAI ``ResidualUnit`` blocks. The latent is either
*spatial* (a 1×1×1 convolution gives the posterior mean and log-variance per channel and
position: fully convolutional, keeps anatomical detail) or *dense* (a vector of
``latent_dim`` units, as in MONAI's ``VarAutoEncoder``). The decoder mirrors the encoder and
adds an optional learnable voxel-wise mean image. Its output parameterises p(x|z), see
:mod:`pipeline.model.objective`: the mean (location) and, for ``gaussian_learned``, a voxel-wise
standard deviation.

Example:
    >>> import torch
    >>> vae = ConvVAE(channels=[8, 16], latent_channels=4)
    >>> out = vae(torch.zeros(2, 1, 16, 16, 16))
    >>> tuple(out.reconstruction.shape), tuple(out.mu.shape)
    ((2, 1, 16, 16, 16), (2, 4, 4, 4, 4))
    >>> dense = ConvVAE([8, 16], latent="dense", latent_dim=32, image_shape=(16, 16, 16))
    >>> tuple(dense(torch.zeros(2, 1, 16, 16, 16)).mu.shape)
    (2, 32)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.model_schema import ModelParams
from pipeline.model.layers import GROUPS, LOGVAR_RANGE, NEG_SLOPE, VAE, VAEOutput, norm_layer

_ACT = ("leakyrelu", {"negative_slope": NEG_SLOPE})


def _monai_norm(kind: str, ch: int) -> tuple[str, dict[str, object]] | None:
    options: dict[str, tuple[str, dict[str, object]]] = {
        "instance": ("instance", {"affine": True}), "batch": ("batch", {}),
        "group": ("group", {"num_groups": min(GROUPS, ch)})}
    return options.get(kind)


def _stage(cin: int, cout: int, stride: int, norm: str, residual_units: int, up: bool
           ) -> nn.Sequential:
    """One encoder (``up=False``) or decoder stage: resample, convolve, residual units."""
    if stride == 2:
        conv_t = nn.ConvTranspose3d if up else nn.Conv3d
        first: nn.Module = conv_t(cin, cout, 4, stride=2, padding=1)
    else:
        first = nn.Conv3d(cin, cout, 3, padding=1)
    layers: list[nn.Module] = [
        first, norm_layer(norm, cout), nn.LeakyReLU(NEG_SLOPE),
        nn.Conv3d(cout, cout, 3, padding=1), norm_layer(norm, cout), nn.LeakyReLU(NEG_SLOPE)]
    if residual_units:  # importing MONAI costs ~2.4 s of a scoring process: only when used
        from monai.networks.blocks import ResidualUnit

        layers += [ResidualUnit(3, cout, cout, subunits=2, act=_ACT,
                                norm=_monai_norm(norm, cout)) for _ in range(residual_units)]
    return nn.Sequential(*layers)


class ConvVAE(VAE):
    """3D convolutional VAE; see the module docstring for the options."""

    def __init__(self, channels: list[int], latent_channels: int = 8, norm: str = "instance",
                 in_channels: int = 1, image_shape: tuple[int, int, int] | None = None, *,
                 strides: list[int] | None = None, residual_units: int = 0,
                 latent: str = "spatial", latent_dim: int = 128, mean_image: bool = False,
                 learned_sigma: bool = False, init_sigma: float = 0.1, min_sigma: float = 0.01
                 ) -> None:
        super().__init__()
        strides = list(strides) if strides is not None else [2] * len(channels)
        if len(strides) != len(channels):
            raise ValueError("one stride per encoder stage")
        self.downsampling = 2 ** sum(s == 2 for s in strides)  # input size / latent map size
        if (latent == "dense" or mean_image) and image_shape is None:
            raise ValueError("a dense latent or a mean image needs image_shape")
        # Optional learnable voxel-wise mean image: the decoder models each subject's deviation
        # from it, which a small network learns far faster than the whole anatomy.
        self.mean_image = (nn.Parameter(torch.zeros(1, in_channels, *image_shape))
                           if mean_image and image_shape is not None else None)
        self.encoder = nn.Sequential(*[
            _stage(cin, cout, s, norm, residual_units, up=False)
            for cin, cout, s in zip([in_channels, *channels[:-1]], channels, strides,
                                    strict=True)])
        top = channels[-1]
        self.latent, self.latent_channels, self.latent_dim = latent, latent_channels, latent_dim
        if latent == "dense":
            assert image_shape is not None
            self.feature_shape = tuple(n // self.downsampling for n in image_shape)
            n_features = top * math.prod(self.feature_shape)
            self.to_posterior: nn.Module = nn.Linear(n_features, 2 * latent_dim)
            self.from_latent: nn.Module = nn.Sequential(nn.Linear(latent_dim, n_features),
                                                        nn.LeakyReLU(NEG_SLOPE))
        else:
            self.to_posterior = nn.Conv3d(top, 2 * latent_channels, 1)
            self.from_latent = nn.Sequential(nn.Conv3d(latent_channels, top, 1),
                                             nn.LeakyReLU(NEG_SLOPE))
        outs = [*reversed(channels[:-1]), channels[0]]
        self.decoder = nn.Sequential(*[
            _stage(cin, cout, s, norm, residual_units, up=True)
            for cin, cout, s in zip([top, *outs[:-1]], outs, reversed(strides), strict=True)])
        self.learned_sigma = learned_sigma
        self.min_sigma = min_sigma
        self.head = nn.Conv3d(channels[0], in_channels * (2 if learned_sigma else 1), 3,
                              padding=1)
        # softplus(raw + offset) + min_sigma starts at init_sigma for raw = 0
        self.sigma_offset = math.log(math.expm1(max(init_sigma - min_sigma, 1e-6)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        if self.latent == "dense":
            h = h.flatten(1)
        mu, logvar = self.to_posterior(h).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def decode_params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder mean and (``gaussian_learned``) voxel-wise std for latents ``z``."""
        h = self.from_latent(z)
        if self.latent == "dense":
            h = h.view(z.shape[0], -1, *self.feature_shape)
        out = self.head(self.decoder(h))
        sigma = None
        if self.learned_sigma:
            out, raw = out.chunk(2, dim=1)
            sigma = F.softplus(raw.float() + self.sigma_offset) + self.min_sigma
        if self.mean_image is not None:
            out = out + self.mean_image
        return out, sigma

    def forward(self, x: torch.Tensor, sample: bool = False,
                origins: Sequence[tuple[int, int, int]] = ()) -> VAEOutput:
        """Encode, draw z ~ q(z|x) when ``sample`` (else take the posterior mean), decode.
        Whole crops only: ``origins`` (of patches) must stay empty."""
        if origins:
            raise ValueError("the classic network trains on whole crops (train.patch_size: 0)")
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        rec, sigma = self.decode_params(z)
        return VAEOutput(rec, mu, logvar, z, sigma)


def build_vae(m: ModelParams, crop_shape: Sequence[int]) -> VAE:
    """The network ``model:`` describes, for template crops of ``crop_shape``."""
    shape = (int(crop_shape[0]), int(crop_shape[1]), int(crop_shape[2]))
    learned = m.likelihood == "gaussian_learned"
    if m.architecture == "patch":
        from pipeline.model.patchnet import PatchVAE

        return PatchVAE(m.channels, m.blocks, m.latent_channels, shape, stem=m.stem,
                        norm=m.norm, upsample=m.upsample, mean_input=m.mean_input,
                        learned_sigma=learned, init_sigma=m.recon_sigma, min_sigma=m.min_sigma)
    return ConvVAE(list(m.channels), m.latent_channels, m.norm, image_shape=shape,
                   strides=list(m.strides), residual_units=m.residual_units, latent=m.latent,
                   latent_dim=m.latent_dim, mean_image=m.learn_mean_image,
                   learned_sigma=learned, init_sigma=m.recon_sigma, min_sigma=m.min_sigma)
