"""On-the-fly augmentation of template-space training batches, on the training device.

Batched torch operations on the tensors the cohort cache already holds (on the GPU when it
fits), so augmentation never stalls the GPU; MONAI's array transforms work one sample at a
time on the host. Every random number comes from one seeded ``torch.Generator``, so a run
(and a resumed run, which restores that generator) is reproducible. Background voxels
(exactly 0 after ``prepare``) stay 0 under the intensity changes.

Example:
    >>> import torch
    >>> from pipeline.config.model_schema import AugmentParams
    >>> off = AugmentParams(False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    >>> x = torch.rand(2, 1, 8, 8, 8)
    >>> torch.equal(augment(x, off, torch.Generator().manual_seed(0)), x)
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.config.model_schema import AugmentParams


def _uniform(n: int, half_width: float, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return (torch.rand(n, *shape, generator=gen) * 2 - 1) * half_width


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """(N, 3) angles in radians → (N, 3, 3) rotation matrices (x, then y, then z)."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
    return rz.view(-1, 3, 3) @ ry.view(-1, 3, 3) @ rx.view(-1, 3, 3)


def random_affine(x: torch.Tensor, ap: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """Small random rotation, isotropic scaling and translation (trilinear, zero padding).

    The transform is drawn in voxel units and converted to ``affine_grid``'s normalised
    coordinates per axis, so a rotation stays a rotation on a non-cubic crop.
    """
    n = x.shape[0]
    rot = _rotation(_uniform(n, math.radians(ap.rotation_deg), gen, 3))
    scale = 1.0 + _uniform(n, ap.scale, gen)
    shift = _uniform(n, ap.translation_vox, gen, 3)
    half = torch.tensor([x.shape[4], x.shape[3], x.shape[2]], dtype=torch.float32) / 2  # W,H,D
    matrix = torch.diag(1 / half) @ (rot * scale.view(-1, 1, 1)) @ torch.diag(half)
    theta = torch.cat([matrix, (shift / half).unsqueeze(2)], 2).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def bias_field(x: torch.Tensor, amplitude: float, gen: torch.Generator) -> torch.Tensor:
    """A smooth multiplicative field exp(Σ c_k b_k), b_k the 2nd-order polynomials of the
    normalised coordinates, |c_k| ≤ amplitude / 3."""
    n = x.shape[0]
    axes = [torch.linspace(-1, 1, s, device=x.device) for s in x.shape[2:]]
    d, h, w = torch.meshgrid(*axes, indexing="ij")
    basis = torch.stack([d, h, w, d * d, h * h, w * w, d * h, d * w, h * w])  # (9, D, H, W)
    coeffs = _uniform(n, amplitude / 3, gen, 9).to(x.device)
    log_field = torch.einsum("nk,kdhw->ndhw", coeffs, basis).unsqueeze(1)
    return x * log_field.exp().to(x.dtype)


def augment(x: torch.Tensor, ap: AugmentParams, gen: torch.Generator) -> torch.Tensor:
    """Apply the configured augmentations to a batch ``x`` (N, C, D, H, W)."""
    n = x.shape[0]
    if ap.flip:
        flip = (torch.rand(n, generator=gen) < 0.5).view(-1, 1, 1, 1, 1).to(x.device)
        x = torch.where(flip, x.flip(2), x)
    if ap.rotation_deg > 0 or ap.scale > 0 or ap.translation_vox > 0:
        x = random_affine(x, ap, gen)
    brain = x != 0
    if ap.bias_field > 0:
        x = bias_field(x, ap.bias_field, gen)
    if ap.gamma > 0:
        gamma = _uniform(n, ap.gamma, gen).exp().view(-1, 1, 1, 1, 1).to(x.device, x.dtype)
        x = torch.where(x > 0, x.clamp(min=0) ** gamma, x)
    if ap.intensity_scale > 0:
        x = x * (1.0 + _uniform(n, ap.intensity_scale, gen)).view(-1, 1, 1, 1, 1).to(x)
    if ap.intensity_shift > 0:
        x = x + _uniform(n, ap.intensity_shift, gen).view(-1, 1, 1, 1, 1).to(x) * brain
    return x
