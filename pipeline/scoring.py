"""Anomaly maps: reconstruction residual → normative z-score → native grid → mask.

The raw score is the smoothed absolute residual |x − x̂| of the posterior-mean reconstruction.
It is calibrated voxel-wise against healthy calibration scans, z = (s − μ_v) / σ_v (negative
values clipped to 0), inside the slightly eroded brain. Maps go back to the input's own grid,
where the calibrated threshold gives the binary mask (tiny components removed).

Example:
    >>> result = score_prepared(loaded, prepared)   # doctest: +SKIP
    >>> result.scan_score > loaded.calibration.scan_threshold   # doctest: +SKIP
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.config import ScoringParams
from pipeline.modelio import Calibration, LoadedModel
from pipeline.nifti import voxel_volume_mm3
from pipeline.preprocess import PreparedScan, native_brain, to_native


@dataclass
class TemplateMaps:
    """Template-space arrays for one scan."""

    reconstruction: np.ndarray
    raw: np.ndarray
    region: np.ndarray   # voxels that are scored (eroded brain)


@dataclass
class ScanResult:
    """One scored scan: native-grid maps and its scan-level score."""

    heatmap: np.ndarray
    mask: np.ndarray
    reconstruction: np.ndarray
    scan_score: float
    voxel_threshold: float
    scan_threshold: float

    @property
    def is_abnormal(self) -> bool:
        return self.scan_score > self.scan_threshold


def reconstruct(loaded: LoadedModel, images: list[np.ndarray]) -> list[np.ndarray]:
    """Posterior-mean reconstructions of template-space images."""
    import torch

    vae = loaded.vae
    device = next(vae.parameters()).device
    out = []
    with torch.inference_mode():
        for img in images:
            x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                enabled=device.type == "cuda"):
                rec = vae(x.to(device), sample=False).reconstruction
            out.append(rec.float()[0, 0].cpu().numpy())
    return out


def scored_region(brain: np.ndarray, sp: ScoringParams) -> np.ndarray:
    if sp.erode_brain_vox <= 0:
        return brain.astype(bool)
    return np.asarray(ndimage.binary_erosion(brain, iterations=sp.erode_brain_vox))


def raw_maps(loaded: LoadedModel, image: np.ndarray, brain: np.ndarray) -> TemplateMaps:
    sp = loaded.params.scoring
    (rec,) = reconstruct(loaded, [image])
    region = scored_region(brain, sp)
    residual = np.abs(image - rec) * region
    if sp.smoothing_sigma_vox > 0:
        residual = ndimage.gaussian_filter(residual, sp.smoothing_sigma_vox)
    return TemplateMaps(reconstruction=rec, raw=(residual * region).astype(np.float32),
                        region=region)


def calibrate_map(raw: np.ndarray, region: np.ndarray, calib: Calibration) -> np.ndarray:
    """Healthy-normalised z-score map, clipped at 0, zero outside ``region``."""
    z = (raw - calib.mean) / calib.std
    return np.where(region, np.maximum(z, 0.0), 0.0).astype(np.float32)


def scan_score(zmap: np.ndarray, region: np.ndarray, top_voxels: int) -> float:
    """The ``top_voxels``-th highest calibrated value: high when a finding at least that
    large stands out, unlike a quantile, which small lesions never reach."""
    values = zmap[region]
    if values.size == 0:
        return 0.0
    k = min(max(top_voxels, 1), values.size)
    return float(np.partition(values, values.size - k)[values.size - k])


def threshold_mask(heatmap: np.ndarray, threshold: float, min_component_voxels: int
                   ) -> np.ndarray:
    """Binary mask of ``heatmap > threshold`` without components smaller than given."""
    mask = heatmap > threshold
    if min_component_voxels > 1 and mask.any():
        labels, n = ndimage.label(mask)
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        keep = np.concatenate([[False], sizes >= min_component_voxels])
        mask = keep[labels]
    return mask.astype(np.uint8)


def native_min_component(sp: ScoringParams, template_voxel_mm3: float,
                         native_voxel_mm3: float) -> int:
    """The component-size limit, given in template voxels, in native voxels."""
    return max(1, round(sp.min_component_voxels * template_voxel_mm3 / native_voxel_mm3))


def score_prepared(loaded: LoadedModel, prepared: PreparedScan) -> ScanResult:
    """Score one prepared scan and map everything back to its native grid."""
    calib = loaded.calibration
    if calib is None:
        raise ValueError("model is not calibrated")
    sp = loaded.params.scoring
    maps = raw_maps(loaded, prepared.image, prepared.brain)
    zmap = calibrate_map(maps.raw, maps.region, calib)
    record = prepared.record
    brain_native = native_brain(prepared)
    heat = np.where(brain_native, np.maximum(to_native(zmap, record), 0.0), 0.0)
    rec_native = to_native(maps.reconstruction, record)
    mask = threshold_mask(heat, calib.voxel_threshold, native_min_component(
        sp, voxel_volume_mm3(np.asarray(record.template_affine)),
        voxel_volume_mm3(np.asarray(record.native_affine))))
    return ScanResult(heatmap=heat.astype(np.float32), mask=mask,
                      reconstruction=rec_native.astype(np.float32),
                      scan_score=scan_score(zmap, maps.region, sp.scan_top_voxels),
                      voxel_threshold=calib.voxel_threshold, scan_threshold=calib.scan_threshold)
