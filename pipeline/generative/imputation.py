"""Impute a missing region of a native scan and write it back on the scan's own grid.

1. The missing voxels get a provisional value from their surroundings (normalised
   convolution with a growing Gaussian), so that brain extraction, bias correction,
   registration and intensity normalisation see a plausible image.
2. The scan is prepared exactly as for scoring (:func:`pipeline.preprocess.prepare.prepare_scan`).
3. In template space, :func:`pipeline.generative.sampling.impute` refills the region under the
   healthy VAE (iterated posterior-mean reconstruction, the rest of the scan held fixed).
4. The result goes back to the native grid, in the scan's own intensity units: a linear map
   ``native ≈ a · normalised + b`` fitted on the brain voxels around the hole absorbs the
   normalisation and the local bias field. Only missing voxels inside the brain take the
   model's values (the model knows brain tissue only); missing voxels outside the brain keep
   the surroundings fill. Every other voxel is the input, unchanged.

Example:
    >>> data = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    >>> hole = np.zeros(data.shape, bool); hole[1, 1, 1] = True
    >>> filled = surroundings_fill(data, hole)
    >>> bool((filled[~hole] == data[~hole]).all()), round(float(filled[1, 1, 1]), 1)
    (True, 13.0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

from pipeline.config.output_schema import ImputeParams
from pipeline.generative.sampling import impute
from pipeline.io.errors import ScanError
from pipeline.modelstore.types import LoadedModel
from pipeline.preprocess.prepare import require_registration
from pipeline.preprocess.record import PreparedScan, native_brain, to_native, to_template

FILL_WEIGHT_MIN = 1e-4  # surroundings fill: smallest Gaussian weight of known voxels used


def surroundings_fill(data: np.ndarray, missing: np.ndarray, sigma_vox: float = 1.0
                      ) -> np.ndarray:
    """``data`` with the ``missing`` voxels set to a Gaussian-weighted mean of the known
    voxels around them (the width doubles until every voxel is reached)."""
    known = (~missing).astype(np.float32)
    values = np.where(missing, 0.0, data).astype(np.float32)
    out, todo, sigma = values.copy(), missing.copy(), sigma_vox
    while todo.any():
        num = ndimage.gaussian_filter(values, sigma, mode="nearest")
        den = ndimage.gaussian_filter(known, sigma, mode="nearest")
        ok = todo & (den > FILL_WEIGHT_MIN)
        out[ok] = num[ok] / den[ok]
        todo &= ~ok
        sigma *= 2.0
        if sigma > 4 * max(data.shape):
            out[todo] = float(values[known > 0].mean())
            break
    return out


def fit_intensity_map(native: np.ndarray, normalised: np.ndarray, where: np.ndarray
                      ) -> tuple[float, float]:
    """Least-squares ``native ≈ a · normalised + b`` over ``where`` (``a`` kept positive)."""
    x, y = normalised[where].astype(np.float64), native[where].astype(np.float64)
    if x.size < 2 or np.ptp(x) <= 0:
        raise ScanError("too little brain around the missing region to match its intensities")
    a, b = np.polyfit(x, y, 1)
    if a <= 0:
        raise ScanError("cannot match the model's intensities to the scan around the hole")
    return float(a), float(b)


@dataclass
class Imputation:
    """One imputed scan: native result, template-space result and how they were mapped."""

    filled: np.ndarray            # native grid, float32; the input outside ``missing``
    template_filled: np.ndarray   # template space, normalised intensities
    missing: np.ndarray           # native voxels given as missing
    modelled: np.ndarray          # missing native voxels inside the brain (the model's values)
    prepared: PreparedScan
    scale: tuple[float, float]    # native ≈ a · normalised + b around the hole
    timings_s: dict[str, float] = field(default_factory=dict)

    def native_values(self, template_array: np.ndarray) -> np.ndarray:
        """A template-space image (normalised units) on the native grid, in native units."""
        a, b = self.scale
        return a * to_native(template_array, self.prepared.record) + b


def impute_scan(loaded: LoadedModel, img: nib.Nifti1Image, missing: np.ndarray,
                brain_mask: np.ndarray | None, ip: ImputeParams) -> Imputation:
    """Fill the ``missing`` voxels of a validated native scan with healthy tissue
    (``brain_mask``: the scan's, or None to derive one as ``score`` does).
    """
    if missing.all():
        raise ScanError("the missing-region mask covers the whole scan: nothing to condition on")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = np.asarray(img.dataobj, dtype=np.float32)
    provisional = surroundings_fill(data, missing)
    timings["surroundings_fill"] = time.perf_counter() - t0
    prepared = loaded.preprocessor.prepare_scan(
        nib.Nifti1Image(provisional, img.affine, header=img.header), brain_mask)
    timings.update(prepared.record.timings_s)
    require_registration(prepared.record, loaded.params.prepare.registration)
    t0 = time.perf_counter()
    record = prepared.record
    template_missing = to_template(missing.astype(np.float32), record) > ip.template_cover
    device = next(loaded.vae.parameters()).device
    x = torch.from_numpy(prepared.image)[None, None].to(device)
    region = torch.from_numpy(template_missing.astype(np.float32))[None, None].to(device)
    filled_t = impute(loaded.vae, x, region, ip)[0, 0].cpu().numpy()
    timings["model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    brain = native_brain(prepared)
    modelled = missing & brain
    core = np.asarray(ndimage.binary_erosion(brain))
    ring = (np.asarray(ndimage.binary_dilation(missing, iterations=ip.ring_vox))
            & ~missing & core)
    if ring.sum() < ip.min_ring_voxels:
        ring = core & ~missing
    a, b = fit_intensity_map(data, to_native(prepared.image, record), ring)
    # the surroundings fill holds the input outside ``missing`` unchanged
    filled = np.where(modelled, a * to_native(filled_t, record) + b, provisional)
    timings["to_native"] = time.perf_counter() - t0
    return Imputation(filled=filled.astype(np.float32), template_filled=filled_t,
                      missing=missing, modelled=modelled, prepared=prepared, scale=(a, b),
                      timings_s={k: round(v, 3) for k, v in timings.items()})
