"""Other scanners and sites, simulated on training patches with MONAI's random transforms.

A model trained on one site sees a scan from another one as abnormal everywhere its look
differs: resolution, blur, noise, contrast (gamma), a residual bias field, and the brain's
outer rim, which another skull-stripping tool cuts elsewhere. Each transform is applied with
``train.site.probability`` to each patch (input and target alike: these looks are healthy),
inside the brain only, so the background stays exactly 0:

- ``RandSimulateLowResolution`` (zoom ``low_resolution``, nearest down, trilinear up),
- ``RandGaussianSmooth`` (sigma ``blur_sigma_vox``), ``RandGaussianNoise`` (``noise_std``),
- ``RandAdjustContrast`` (gamma ``gamma``), ``RandBiasField`` (coefficients up to
  ``bias_field``),
- ``RandGaussianSharpen`` (unsharp masking of strength ``sharpen_alpha``): the crisper
  grey-white boundaries of a finer or differently reconstructed acquisition,
- the brain's rim zeroed by 0..``rim_erosion_vox`` voxels (a tighter brain mask).

Every draw is seeded from the run's ``torch.Generator`` (one seed per patch), so a run and a
resumed run see the same patches. MONAI is imported by training only; scoring never loads it.

Example:
    >>> import torch
    >>> from pipeline.config.model_schema import SiteParams
    >>> sp = SiteParams(probability=1.0, low_resolution=[0.5, 1.0], blur_sigma_vox=[0.3, 1.0],
    ...     noise_std=0.03, gamma=[0.7, 1.4], bias_field=0.15, rim_erosion_vox=2,
    ...     sharpen_alpha=[0.5, 2.0])
    >>> x = torch.zeros(2, 1, 16, 16, 16); x[:, :, 3:13, 3:13, 3:13] = 0.5
    >>> y = SiteSimulator(sp)(x, torch.Generator().manual_seed(0))
    >>> tuple(y.shape), bool((y[x == 0] == 0).all()), bool((y != x).any())
    ((2, 1, 16, 16, 16), True, True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from pipeline.config.model_schema import SiteParams

SEED_RANGE = 2**31 - 1
SHARPEN_SIGMA_VOX = (0.3, 0.5)  # RandGaussianSharpen: the first, nearly no blur
UNSHARP_SIGMA_VOX = 1.0         # and the blur whose difference is added back (x alpha)


def _transforms(sp: SiteParams) -> Any:
    from monai import transforms as mt
    from monai.data import set_track_meta

    set_track_meta(False)  # plain tensors out
    p, steps = sp.probability, list[Any]()
    if sp.low_resolution[0] < 1.0:
        steps.append(mt.RandSimulateLowResolution(prob=p, zoom_range=(sp.low_resolution[0],
                                                                     sp.low_resolution[1])))
    if sp.blur_sigma_vox[1] > 0:
        s = (sp.blur_sigma_vox[0], sp.blur_sigma_vox[1])
        steps.append(mt.RandGaussianSmooth(prob=p, sigma_x=s, sigma_y=s, sigma_z=s))
    if sp.gamma != [1.0, 1.0]:
        steps.append(mt.RandAdjustContrast(prob=p, gamma=(sp.gamma[0], sp.gamma[1])))
    if sp.bias_field > 0:
        steps.append(mt.RandBiasField(prob=p, coeff_range=(0.0, sp.bias_field)))
    if sp.sharpen_alpha[1] > 0:
        s1, s2 = SHARPEN_SIGMA_VOX, UNSHARP_SIGMA_VOX
        steps.append(mt.RandGaussianSharpen(
            prob=p, sigma1_x=s1, sigma1_y=s1, sigma1_z=s1, sigma2_x=s2, sigma2_y=s2,
            sigma2_z=s2, alpha=(sp.sharpen_alpha[0], sp.sharpen_alpha[1])))
    if sp.noise_std > 0:
        steps.append(mt.RandGaussianNoise(prob=p, std=sp.noise_std))
    return mt.Compose(steps)


def erode(brain: torch.Tensor, vox: int) -> torch.Tensor:
    """The (N, 1, D, H, W) boolean ``brain`` eroded by ``vox`` voxels (a cube element)."""
    if vox <= 0:
        return brain
    outside = (~brain).float()
    return F.max_pool3d(outside, 2 * vox + 1, stride=1, padding=vox) == 0


class SiteSimulator:
    """``train.site`` applied to a batch of patches (N, 1, D, H, W)."""

    def __init__(self, sp: SiteParams) -> None:
        self.sp = sp
        self.compose = _transforms(sp) if sp.probability > 0 else None

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.compose is None:
            return x
        out = []
        for patch in x:
            brain = patch != 0
            self.compose.set_random_state(int(torch.randint(SEED_RANGE, (1,), generator=gen)))
            y = torch.as_tensor(self.compose(patch.float().cpu()))
            k = int(torch.randint(self.sp.rim_erosion_vox + 1, (1,), generator=gen))
            if float(torch.rand(1, generator=gen)) < self.sp.probability:
                brain = erode(brain[None], k)[0]
            out.append(torch.where(brain, y.to(x.device, x.dtype), torch.zeros((), dtype=x.dtype,
                                                                                device=x.device)))
        return torch.stack(out)
