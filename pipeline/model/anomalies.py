"""Synthetic anomalies on training patches: the model learns to restore healthy tissue.

Coarse-noise denoising (:func:`pipeline.model.batches.coarse_noise`, Kascenas et al. 2022)
teaches the network not to copy its input. This generalises it towards lesion-like
corruptions, the idea of restoration models trained on synthetic anomalies (Disyre, Naval
Marimont et al. 2024): with ``train.anomalies.probability`` a patch gets between
``per_patch`` blobs inside its brain, each a lumpy ellipsoid of a drawn diameter with a soft
border, whose voxels move a drawn ``strength`` of the way towards a drawn intensity
``level`` (both signs: from CSF-dark to brighter than white matter) plus a smooth random
texture. The encoder sees the corrupted patch; the target is the clean one. What the model
learns to undo then stays in the residual |x − x̂| and the restoration at test time.

The blobs are drawn here, in torch, and share nothing with the test lesions
(:mod:`pipeline.cohort.lesions`) or the realistic validation lesions
(:mod:`pipeline.evaluation.realistic`): no method is trained on the lesions it is measured on.
Every number comes from the run's generator, so a resumed run draws the same corruptions.

Example:
    >>> import torch
    >>> from pipeline.config.model_schema import AnomalyParams
    >>> ap = AnomalyParams(probability=1.0, per_patch=[1, 2], diameter_vox=[3.0, 6.0],
    ...                    level=[0.0, 1.2], strength=[0.5, 1.0], texture=0.1, border_vox=1.0)
    >>> x = torch.zeros(2, 1, 16, 16, 16); x[:, :, 2:14, 2:14, 2:14] = 0.6
    >>> y = corrupt(x, ap, torch.Generator().manual_seed(0))
    >>> bool((y[x == 0] == 0).all()), bool((y != x).any()), tuple(y.shape)
    (True, True, (2, 1, 16, 16, 16))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.config.model_schema import AnomalyParams

LUMP_CELLS = 4         # control points per axis of the smooth radius perturbation
LUMPINESS = 0.3        # relative radius change at the perturbation's extremes
TEXTURE_CELL_VOX = 3   # voxels per control point of a blob's texture
RADIUS_JITTER = 0.3    # each semi-axis is diameter / 2 x U(1 - this, 1 + this)


def _uniform(bounds: list[float], gen: torch.Generator) -> float:
    return float(bounds[0] + (bounds[1] - bounds[0]) * torch.rand(1, generator=gen))


def _smooth_field(shape: tuple[int, ...], cells: int, gen: torch.Generator) -> torch.Tensor:
    """Standard-normal noise on ``cells`` control points per axis, upsampled to ``shape``."""
    coarse = torch.randn(1, 1, cells, cells, cells, generator=gen)
    return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]


def blob_weight(shape: tuple[int, ...], centre: torch.Tensor, radii: torch.Tensor,
                border_vox: float, gen: torch.Generator) -> torch.Tensor:
    """Soft weight in [0, 1] of one lumpy ellipsoid on a grid of ``shape`` (voxels)."""
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    rel = torch.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii,
                                                               strict=True)))
    lumps = torch.tanh(_smooth_field(shape, LUMP_CELLS, gen))
    rel = rel * (1.0 + LUMPINESS * lumps)
    distance = (rel - 1.0) * float(radii.mean())
    return torch.clamp(0.5 - distance / max(border_vox, 1e-3), 0.0, 1.0)


def _box(centre: torch.Tensor, radii: torch.Tensor, border_vox: float,
         shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The part of the patch a blob can reach (its weight is 0 beyond)."""
    reach = float(radii.max()) / (1.0 - LUMPINESS) + border_vox
    return tuple(slice(max(0, int(c - reach)), min(n, int(c + reach) + 2))
                 for c, n in zip(centre.tolist(), shape, strict=True))


def _one_patch(patch: torch.Tensor, ap: AnomalyParams, gen: torch.Generator) -> torch.Tensor:
    """``patch`` (1, D, H, W) with its blobs (on the CPU; the caller moves it back)."""
    brain = patch[0] != 0
    inside = torch.nonzero(brain)
    if len(inside) == 0:
        return patch
    shape = tuple(int(n) for n in patch.shape[1:])
    out = patch[0].clone()
    count = int(torch.randint(ap.per_patch[0], ap.per_patch[1] + 1, (1,), generator=gen))
    for _ in range(count):
        centre = inside[int(torch.randint(len(inside), (1,), generator=gen))].float()
        jitter = 1.0 + RADIUS_JITTER * (2 * torch.rand(3, generator=gen) - 1)
        radii = _uniform(ap.diameter_vox, gen) / 2.0 * jitter
        box = _box(centre, radii, ap.border_vox, shape)
        local = tuple(int(b.stop - b.start) for b in box)
        offset = torch.tensor([float(b.start) for b in box])
        weight = blob_weight(local, centre - offset, radii, ap.border_vox, gen) * brain[box]
        level = _uniform(ap.level, gen) + ap.texture * _smooth_field(
            local, max(2, max(local) // TEXTURE_CELL_VOX), gen)
        strength = _uniform(ap.strength, gen)
        out[box] = out[box] + strength * weight * (level - out[box])
    return torch.where(brain, out, torch.zeros(())).unsqueeze(0)


def corrupt(x: torch.Tensor, ap: AnomalyParams, gen: torch.Generator) -> torch.Tensor:
    """The batch ``x`` (N, 1, D, H, W) with lesion-like blobs in ``ap.probability`` of its
    patches (the background stays exactly 0); the others unchanged."""
    if ap.probability <= 0:
        return x
    out = []
    for patch in x:
        if float(torch.rand(1, generator=gen)) < ap.probability:
            patch = _one_patch(patch.float().cpu(), ap, gen).to(x.device, x.dtype)
        out.append(patch)
    return torch.stack(out)
