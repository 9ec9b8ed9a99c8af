"""Synthetic lesions with soft borders, inserted into native-space scans.

Each lesion is a lumpy ellipsoid (a smooth random perturbation of an ellipsoid's radius)
whose weight falls from 1 inside to 0 across ``border_mm``; dark lesions scale the local
intensity down, bright ones up. The ground-truth mask is the weight above one half, inside
the brain.

Example:
    >>> import numpy as np
    >>> from pipeline.config.data_schema import LesionParams
    >>> lp = LesionParams(per_scan=[1, 3], diameter_mm=[6.0, 20.0], hypo_fraction=0.5,
    ...     contrast_range=[0.35, 0.7], border_mm=2.0, irregularity=0.35)
    >>> grid = np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij")
    >>> brain = sum(g ** 2 for g in grid) < 0.7
    >>> data = np.where(brain, 100.0, 0.0).astype(np.float32)
    >>> out, truth, lesions = insert_lesions(data, np.diag([2.0, 2.0, 2.0, 1.0]), brain,
    ...                                      lp, np.random.default_rng(0))
    >>> bool(truth.any()) and not (truth & ~brain).any(), len(lesions) >= 1
    (True, True)
"""

from __future__ import annotations

import numpy as np
from nibabel.affines import voxel_sizes
from scipy import ndimage

from pipeline.config.data_schema import LesionParams

_LUMP_GRID = 4  # control points per axis of the smooth radius perturbation


def lesion_weight(shape: tuple[int, ...], spacing: np.ndarray, centre: np.ndarray,
                  radii_mm: np.ndarray, border_mm: float, irregularity: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Soft weight in [0, 1] of one lesion on a grid of ``shape`` with ``spacing``."""
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in
                          zip(shape, centre, spacing, strict=True)], indexing="ij")
    rel = np.sqrt(sum((g / r) ** 2 for g, r in zip(grids, radii_mm, strict=True)))
    lumps = rng.normal(size=(_LUMP_GRID,) * 3)
    zoom = [n / _LUMP_GRID for n in shape]
    lumpy = ndimage.zoom(lumps, zoom, order=3, mode="nearest")[tuple(slice(0, n) for n in shape)]
    rel = rel * (1.0 + irregularity * np.tanh(lumpy) * 0.5)
    mean_radius = float(np.mean(radii_mm))
    distance_mm = (rel - 1.0) * mean_radius
    return np.clip(0.5 - distance_mm / max(border_mm, 1e-3), 0.0, 1.0)


def insert_lesions(data: np.ndarray, affine: np.ndarray, brain: np.ndarray,
                   params: LesionParams, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """Return ``(lesioned image, ground-truth mask, lesion descriptions)``."""
    spacing = voxel_sizes(affine)
    out = data.astype(np.float32).copy()
    truth = np.zeros(data.shape, dtype=bool)
    n = int(rng.integers(params.per_scan[0], params.per_scan[1] + 1))
    described: list[dict[str, float]] = []
    tissue_floor = np.median(data[brain])  # lesions sit in tissue, not CSF
    for _ in range(n):
        diameter = float(rng.uniform(params.diameter_mm[0], params.diameter_mm[1]))
        radii = diameter / 2.0 * rng.uniform(0.75, 1.25, size=3)
        margin = np.ceil((radii.max() + 2 * params.border_mm) / spacing).astype(int)
        interior = ndimage.binary_erosion(brain, iterations=max(1, int(margin.min() // 2)))
        tissue = interior & (data > tissue_floor)
        candidates = np.argwhere(tissue if tissue.any() else brain)
        centre = candidates[rng.integers(len(candidates))]
        lo = np.maximum(centre - margin, 0)
        hi = np.minimum(centre + margin + 1, data.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        weight = lesion_weight(tuple(int(v) for v in hi - lo), spacing, centre - lo, radii,
                               params.border_mm, params.irregularity, rng)
        weight = weight * brain[box]
        dark = rng.random() < params.hypo_fraction
        contrast = float(rng.uniform(params.contrast_range[0], params.contrast_range[1]))
        factor = 1.0 - contrast * weight if dark else 1.0 + contrast * weight
        out[box] = out[box] * factor
        truth[box] |= weight > 0.5
        described.append({"diameter_mm": round(diameter, 2), "dark": float(dark),
                          "contrast": round(contrast, 3),
                          "centre_voxel": [int(c) for c in centre]})  # type: ignore[dict-item]
    return out, truth & brain, described
