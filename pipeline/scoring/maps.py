"""Anomaly maps: raw scores → normative z-scores → post-processing → native grid → mask.

Raw maps (:mod:`pipeline.scoring.raw`) are calibrated voxel-wise against healthy calibration scans,
z = (s − μ_v) / σ_v (one-sided: negative values clipped to 0), averaged over the score types
of ``scoring.score`` into the primary map, median-filtered inside the slightly eroded brain,
and mapped back to the input's own grid, where the calibrated threshold gives the binary mask
(components smaller than ``min_component_voxels`` removed).

Example:
    >>> import numpy as np
    >>> heat = np.zeros((10, 10, 10), np.float32)
    >>> heat[2:5, 2:5, 2:5] = 4.0; heat[8, 8, 8] = 9.0    # a finding, and a lone voxel
    >>> int(threshold_mask(heat, 3.0, min_component_voxels=5).sum())
    27
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.config.kinds import KINDS
from pipeline.config.scoring_schema import ScoringParams
from pipeline.model.objective import Likelihood
from pipeline.modelstore.types import Calibration, LoadedModel, map_name
from pipeline.preprocess.record import PreparedScan, native_brain, to_native
from pipeline.scoring import domain
from pipeline.scoring.raw import RawScores, raw_scores
from pipeline.scoring.result import ScanResult
from pipeline.space.grid import voxel_volume_mm3


def calibrate_map(raw: np.ndarray, region: np.ndarray, name: str, calib: Calibration
                  ) -> np.ndarray:
    """z-score map of one raw score type (zero outside ``region``)."""
    kind = KINDS[name]
    if not kind.normative:
        z = raw.astype(np.float64)
    else:
        st = calib.stats[name]
        z = (raw - st.mean) / st.std
        z = np.abs(z) if kind.two_sided else np.maximum(z, 0.0)
    return np.where(region, z, 0.0).astype(np.float32)


def postprocess(z: np.ndarray, region: np.ndarray, sp: ScoringParams) -> np.ndarray:
    """Median filter (``median_filter_vox`` radius) inside the scored region."""
    if sp.median_filter_vox > 0:
        z = ndimage.median_filter(z, size=2 * sp.median_filter_vox + 1)
    return np.where(region, z, 0.0).astype(np.float32)


def calibrated_maps(raw: RawScores, calib: Calibration, sp: ScoringParams,
                    compare: list[str] | tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The primary map (mean of the ``calib.score`` z-maps) and one map per ``compare`` type."""
    z = {t: calibrate_map(raw.maps[t], raw.region, t, calib)
         for t in dict.fromkeys([*calib.score, *compare])}
    out = {map_name(calib.score): postprocess(np.mean([z[t] for t in calib.score], axis=0),
                                              raw.region, sp)}
    for t in compare:
        out.setdefault(t, postprocess(z[t], raw.region, sp))
    return out


def scan_score(zmap: np.ndarray, raw: RawScores, sp: ScoringParams, primary: bool = True
               ) -> float:
    """Scan-level score: for the primary map with ``scan_statistic: elbo``, the negative
    ELBO (nats); otherwise the
    ``scan_top_voxels``-th highest calibrated value, which is high when a finding at least
    that large stands out (a quantile would never see a small lesion)."""
    if primary and sp.scan_statistic == "elbo" and raw.negative_elbo is not None:
        return raw.negative_elbo
    values = zmap[raw.region]
    if values.size == 0:
        return 0.0
    k = min(max(sp.scan_top_voxels, 1), values.size)
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


def template_scores(loaded: LoadedModel, image: np.ndarray, brain: np.ndarray,
                    kinds: set[str]) -> RawScores:
    """Raw maps of ``kinds`` for a template-space image under the loaded model, with the
    scan's domain statistics (:mod:`pipeline.scoring.domain`)."""
    m = loaded.params.model
    raw = raw_scores(loaded.vae, Likelihood.of(m), image, brain,
                     kinds, loaded.params.scoring, seed=loaded.params.seed)
    raw.domain = domain.statistics(image, raw.region, loaded.reference_image(),
                                   raw.reconstruction)
    return raw


def to_result(loaded: LoadedModel, prepared: PreparedScan, raw: RawScores, name: str,
              zmap: np.ndarray, brain_native: np.ndarray) -> ScanResult:
    """Map one calibrated template-space map back to the native grid (inside the scan's
    native brain mask ``brain_native``) and threshold it."""
    calib = loaded.calibrated()
    sp, record = loaded.params.scoring, prepared.record
    heat = np.where(brain_native, np.maximum(to_native(zmap, record), 0.0), 0.0)
    th = calib.thresholds[name]
    mask = threshold_mask(heat, th.threshold, native_min_component(
        sp, voxel_volume_mm3(np.asarray(record.template_affine)),
        voxel_volume_mm3(np.asarray(record.native_affine))))

    def native(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else to_native(a, record).astype(np.float32)

    primary = name == calib.primary
    return ScanResult(heatmap=heat.astype(np.float32), mask=mask,
                      reconstruction=native(raw.reconstruction) if primary else None,
                      scan_score=scan_score(zmap, raw, sp, primary), threshold=th.threshold,
                      scan_threshold=th.scan_threshold, score=name,
                      restoration=native(raw.restored) if primary else None,
                      uncertainty=native(raw.uncertainty) if primary else None,
                      negative_elbo_nats=raw.negative_elbo, warnings=list(raw.warnings),
                      domain=domain.judge(raw.domain, calib.domain))


def score_maps(loaded: LoadedModel, prepared: PreparedScan, compare: list[str]
               ) -> dict[str, ScanResult]:
    """The calibrated primary map of a prepared scan and one map per ``compare`` type, each
    on the scan's native grid and thresholded (the primary first)."""
    calib = loaded.calibrated()
    raw = template_scores(loaded, prepared.image, prepared.brain, {*calib.score, *compare})
    zmaps = calibrated_maps(raw, calib, loaded.params.scoring, compare)
    brain = native_brain(prepared)
    return {name: to_result(loaded, prepared, raw, name, z, brain)
            for name, z in zmaps.items()}
