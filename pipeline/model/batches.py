"""Training batches: scans in a seeded order, augmented whole, cut into random patches,
optionally with lesion-like blobs (:mod:`pipeline.model.anomalies`) and coarse noise on
the input (denoising): the target stays the clean patch.

Every random number comes from the one generator of the run (restored on resume), so a run
draws the same batches however often it is interrupted. A scan is augmented as a whole crop
(:func:`pipeline.model.augment.augment`) and then, with ``train.patch_size``, one random cubic
patch of it is kept, with the patch's place in the crop (``origins``) so the network can line
it up with its mean image. Patches are drawn again (up to :data:`PATCH_TRIES` times) while
less than ``train.patch_min_brain`` of them lies inside the brain. Each patch (or crop) then
gets another site's look (``train.site``, :mod:`pipeline.model.sites`).

Example:
    >>> import torch
    >>> from pipeline.config.examples import train_params
    >>> tp = train_params(batch_size=2, patch_size=16)
    >>> data, gen = torch.rand(3, 1, 32, 32, 32), torch.Generator().manual_seed(0)
    >>> b = next(batches(data, torch.ones(32, 32, 32, dtype=torch.bool), tp, 5, gen))
    >>> tuple(b.target.shape), len(b.origins), torch.equal(b.inputs, b.target)
    ((2, 1, 16, 16, 16), 2, True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.config.model_schema import DenoiseParams, TrainParams
from pipeline.model.anomalies import corrupt
from pipeline.model.augment import augment
from pipeline.model.distributed import SINGLE_PROCESS, World
from pipeline.model.sites import SiteSimulator

PATCH_TRIES = 10
Origin = tuple[int, int, int]


@dataclass
class Batch:
    target: torch.Tensor          # what the decoder should reconstruct
    inputs: torch.Tensor          # what the encoder sees (the target, or the target + noise)
    origins: tuple[Origin, ...]   # each patch's corner in the crop; () for whole crops


def scan_order(n: int, gen: torch.Generator, world: World) -> Iterator[int]:
    """Endless indices of this rank's scans: a fresh seeded permutation per pass, every rank
    drawing the same permutation and taking its share (an equal count per rank)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        perm = perm[: len(perm) - len(perm) % world.size][world.rank::world.size]
        yield from (int(i) for i in perm)


def _origin(shape: torch.Size, size: int, brain: torch.Tensor, min_brain: float,
            gen: torch.Generator) -> Origin:
    for _ in range(PATCH_TRIES):
        o = tuple(int(torch.randint(0, int(d) - size + 1, (1,), generator=gen)) for d in shape)
        if min_brain <= 0:
            break  # any patch will do
        window = brain[o[0]:o[0] + size, o[1]:o[1] + size, o[2]:o[2] + size]
        if float(window.float().mean()) >= min_brain:
            break
    return o[0], o[1], o[2]


def coarse_noise(x: torch.Tensor, dp: DenoiseParams, gen: torch.Generator) -> torch.Tensor:
    """Gaussian noise of std ``dp.std`` drawn on cells of ``dp.cell_vox`` voxels and upsampled
    (trilinear) to ``x``'s grid."""
    cells = [max(2, -(-int(d) // dp.cell_vox)) for d in x.shape[2:]]
    noise = torch.randn(x.shape[0], x.shape[1], *cells, generator=gen) * dp.std
    noise = F.interpolate(noise.to(x.device), size=x.shape[2:], mode="trilinear",
                          align_corners=False)
    return noise.to(x.dtype)


def batches(data: torch.Tensor, brain: torch.Tensor, tp: TrainParams, steps: int,
            gen: torch.Generator, world: World = SINGLE_PROCESS,
            device: torch.device | str = "cpu") -> Iterator[Batch]:
    """``steps`` batches of ``tp.batch_size`` scans from ``data`` (N, 1, D, H, W); ``brain``
    (D, H, W) marks the brain of the template crop (for ``patch_min_brain``)."""
    order = scan_order(len(data), gen, world)
    size = tp.patch_size
    site = SiteSimulator(tp.site)
    for _ in range(steps):
        idx = torch.tensor([next(order) for _ in range(tp.batch_size)])
        x = augment(data[idx.to(data.device)].to(device, non_blocking=True), tp.augment, gen)
        origins: tuple[Origin, ...] = ()
        if size:
            origins = tuple(_origin(x.shape[2:], size, brain, tp.patch_min_brain, gen)
                            for _ in range(len(x)))
            x = torch.stack([x[i, :, a:a + size, b:b + size, c:c + size]
                             for i, (a, b, c) in enumerate(origins)])
        x = site(x, gen)
        inputs = corrupt(x, tp.anomalies, gen)
        inputs = inputs + coarse_noise(x, tp.denoise, gen) if tp.denoise.std > 0 else inputs
        yield Batch(target=x, inputs=inputs, origins=origins)
