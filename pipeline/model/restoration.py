"""MAP restoration under the healthy VAE: the pseudo-healthy version of a scan.

Following You, Chen & Konukoglu (MIDL 2019), the restored image minimises

    σ² · (−ELBO(x_r)) + λ · Σ_v w_v |x_r − x|_v

by proximal gradient descent (ISTA): a gradient step on the ELBO term (in units of σ², so
``step_size`` 1 moves a voxel by about its residual) followed by soft-thresholding of the
change towards the input (the L1 data-consistency term, λ = ``consistency`` in intensity
units). Voxels the model explains stay put; a lesion is pulled towards healthy tissue. Only
voxels with weight ``w > 0`` change; setting ``w = 0`` inside a region frees it completely
(imputation of missing tissue reuses this function).

Example:
    >>> import torch
    >>> from pipeline.model.network import ConvVAE
    >>> from pipeline.model.objective import Likelihood
    >>> from pipeline.config.scoring_schema import RestorationParams
    >>> vae, x = ConvVAE([4, 8], latent_channels=2).eval(), torch.rand(1, 1, 16, 16, 16)
    >>> p = RestorationParams(steps=3, step_size=0.5, consistency=0.05)
    >>> ones = torch.ones_like(x)
    >>> restore(vae, Likelihood("gaussian", 0.1), x, ones, p, consistency_weight=ones).shape
    torch.Size([1, 1, 16, 16, 16])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from pipeline.config.scoring_schema import RestorationParams
from pipeline.model.layers import VAE
from pipeline.model.objective import Likelihood, elbo_terms


@contextlib.contextmanager
def frozen(vae: VAE) -> Iterator[VAE]:
    """``vae`` in eval mode without weight gradients (input gradients only), restored after."""
    was_training = vae.training
    flags = [p.requires_grad for p in vae.parameters()]
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    try:
        yield vae
    finally:
        for p, f in zip(vae.parameters(), flags, strict=True):
            p.requires_grad_(f)
        vae.train(was_training)


def restore(vae: VAE, likelihood: Likelihood, x: torch.Tensor, region: torch.Tensor,
            params: RestorationParams, consistency_weight: torch.Tensor) -> torch.Tensor:
    """Restored image of ``x`` (1, 1, D, H, W); only voxels where ``region > 0`` change.

    ``consistency_weight`` scales the data-consistency term per voxel (the pseudo-healthy
    restoration of scoring uses ``region`` itself); 0 lets a voxel take whatever value the
    model prefers.
    """
    with frozen(vae):
        scale = likelihood.scale ** 2
        threshold = params.step_size * params.consistency * consistency_weight
        xr = x.detach().clone()
        for _ in range(params.steps):
            xr.requires_grad_(True)
            terms = elbo_terms(vae(xr, sample=False), xr, likelihood, 1.0, 0.0)
            (grad,) = torch.autograd.grad(terms.negative_elbo, xr)
            with torch.no_grad():
                step = xr - params.step_size * scale * grad * region
                delta = step - x
                delta = torch.sign(delta) * torch.clamp(delta.abs() - threshold, min=0.0)
                xr = (x + delta * (region > 0)).detach()
        return xr
