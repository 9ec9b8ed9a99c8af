"""Other-site versions of a native scan: how a held-out IXI scan would look elsewhere.

Each variant turns a native scan (with its brain mask and, for a lesioned copy, its lesion
mask) into what another scanner, protocol or pipeline would hand to ``score``; the masks go
through the same resampling (nearest neighbour), so a lesioned copy's truth stays exact:

- ``resampled``: resampled to ``resampled_mm`` isotropic voxels (trilinear, nibabel),
- ``thick_slices``: axial slices of ``thick_slice_mm`` (the slice profile, a Gaussian of that
  FWHM along the head's inferior-superior axis, then resampled onto thick slices),
- ``derived_mask``: no brain mask given (``score`` strips the skull itself),
- ``loose_mask``: the brain mask dilated by ``loose_mask_mm``, at least one voxel (a more
  generous stripping tool),
- ``gamma``: intensities raised to ``gamma`` (a contrast change),
- ``n4``: N4 bias field correction of the whole head beforehand (``n4_levels`` levels), as
  a pipeline that corrects before it strips the skull.

Example:
    >>> import nibabel as nib, numpy as np
    >>> from pipeline.config.scoring_schema import SitesParams
    >>> sp = SitesParams(scans=2, variants=["resampled", "thick_slices", "derived_mask",
    ...     "loose_mask", "gamma", "n4"], resampled_mm=1.0, thick_slice_mm=3.0, loose_mask_mm=2.0,
    ...     gamma=1.4, n4_levels=2)
    >>> img = nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20), np.float32) + 1,
    ...                       np.diag([2.0, 2.0, 2.0, 1.0]))
    >>> mask = np.zeros((20, 20, 20), bool); mask[5:15, 5:15, 5:15] = True
    >>> v = make_variant("resampled", SiteScan(img, mask, None), sp)
    >>> v.img.shape, [float(z) for z in v.img.header.get_zooms()], v.truth is None
    ((39, 39, 39), [1.0, 1.0, 1.0], True)
    >>> make_variant("derived_mask", SiteScan(img, mask, None), sp).mask is None
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output
from scipy import ndimage

from pipeline.config.data_schema import BiasFieldParams
from pipeline.config.scoring_schema import SitesParams
from pipeline.preprocess.bias import correct_bias
from pipeline.preprocess.resolution import FWHM_TO_SIGMA

N4_FIT_SPACING_MM = 4.0  # the other pipeline's N4: a finer fit than prepare's own


@dataclass
class SiteScan:
    """A native scan with its brain mask (None: none given) and lesion mask (None: healthy)."""

    img: nib.Nifti1Image
    mask: np.ndarray | None
    truth: np.ndarray | None


def _data(img: nib.Nifti1Image) -> np.ndarray:
    return np.asarray(img.dataobj, dtype=np.float32)


def _like(img: nib.Nifti1Image, data: np.ndarray) -> nib.Nifti1Image:
    out = nib.Nifti1Image(data.astype(np.float32), img.affine, img.header)
    out.header.set_data_dtype(np.float32)
    out.header.set_slope_inter(1.0, 0.0)
    return out


def _resample(scan: SiteScan, zooms: tuple[float, float, float]) -> SiteScan:
    """Onto a RAS grid of ``zooms`` (mm); masks by nearest neighbour."""
    img = resample_to_output(scan.img, zooms, order=1)

    def mask(m: np.ndarray | None) -> np.ndarray | None:
        if m is None:
            return None
        as_img = nib.Nifti1Image(m.astype(np.uint8), scan.img.affine)
        return np.asarray(resample_to_output(as_img, zooms, order=0).dataobj) > 0

    return SiteScan(_like(img, _data(img)), mask(scan.mask), mask(scan.truth))


def _thick_slices(scan: SiteScan, slice_mm: float) -> SiteScan:
    """Axial slices of ``slice_mm``: RAS grid at the native in-plane spacing, the slice
    profile along the superior axis, then thick slices."""
    zooms = [float(z) for z in scan.img.header.get_zooms()[:3]]
    ras = _resample(scan, (zooms[0], zooms[1], zooms[2]))
    step = float(ras.img.header.get_zooms()[2])
    sigma = np.sqrt(max(slice_mm**2 - step**2, 0.0)) * FWHM_TO_SIGMA / step
    blurred = ndimage.gaussian_filter1d(_data(ras.img), sigma, axis=2)
    return _resample(replace(ras, img=_like(ras.img, blurred)),
                     (float(ras.img.header.get_zooms()[0]),
                      float(ras.img.header.get_zooms()[1]), slice_mm))


def _loose(scan: SiteScan, mm: float) -> SiteScan:
    if scan.mask is None:
        return scan
    zooms = np.asarray(scan.img.header.get_zooms()[:3], float)
    reach = max(mm, float(zooms.max()))  # at least one voxel along every axis
    radius = np.floor(reach / zooms + 1e-6).astype(int)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g * z / reach) ** 2 for g, z in zip(grid, zooms, strict=True)) <= 1.0 + 1e-6
    return replace(scan, mask=ndimage.binary_dilation(scan.mask, ball))


def _gamma(scan: SiteScan, gamma: float) -> SiteScan:
    data = _data(scan.img)
    top = float(np.percentile(data[data > 0], 99.9)) if (data > 0).any() else 1.0
    changed = np.where(data > 0, top * (np.maximum(data, 0) / top) ** gamma, data)
    return replace(scan, img=_like(scan.img, changed))


def _n4(scan: SiteScan, levels: int) -> SiteScan:
    """N4 over the whole head (its Otsu foreground), before any skull stripping, as a
    pipeline that corrects first and strips later does."""
    from skimage.filters import threshold_otsu

    data = _data(scan.img)
    where = ndimage.binary_fill_holes(data > threshold_otsu(data))
    bp = BiasFieldParams(enabled=True, fit_spacing_mm=N4_FIT_SPACING_MM, levels=levels,
                         iterations=50, control_points=4, convergence=0.001)
    corrected, _ = correct_bias(data, where, np.asarray(scan.img.affine), bp)
    return replace(scan, img=_like(scan.img, corrected))


VARIANTS: dict[str, Callable[[SiteScan, SitesParams], SiteScan]] = {
    "resampled": lambda s, sp: _resample(s, (sp.resampled_mm,) * 3),
    "thick_slices": lambda s, sp: _thick_slices(s, sp.thick_slice_mm),
    "derived_mask": lambda s, sp: replace(s, mask=None),
    "loose_mask": lambda s, sp: _loose(s, sp.loose_mask_mm),
    "gamma": lambda s, sp: _gamma(s, sp.gamma),
    "n4": lambda s, sp: _n4(s, sp.n4_levels),
}  # the names are the schema's SITE_VARIANTS (a test holds them equal)


def make_variant(name: str, scan: SiteScan, sp: SitesParams) -> SiteScan:
    """The ``name`` variant (one of ``evaluate.sites.variants``) of ``scan``."""
    return VARIANTS[name](scan, sp)
