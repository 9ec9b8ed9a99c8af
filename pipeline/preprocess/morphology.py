"""Binary-mask primitives shared by brain extraction and the head atlas.

Example:
    >>> import numpy as np
    >>> m = np.zeros((9, 9, 9), bool); m[1:3, 1:3, 1:3] = True; m[4:8, 4:8, 4:8] = True
    >>> int(largest_component(m).sum())
    64
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (the mask itself when it has one)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return np.asarray(labels == (int(np.argmax(sizes)) + 1))


def ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Structuring element: a ball of ``radius_mm`` on a grid of ``spacing`` (mm per axis)."""
    r = np.maximum(np.round(radius_mm / spacing).astype(int), 1)
    grid = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g * s / radius_mm) ** 2 for g, s in zip(grid, spacing, strict=True))
    return np.asarray(dist <= 1.0)


def foreground(data: np.ndarray) -> np.ndarray:
    """Largest connected component above the Otsu threshold, holes filled."""
    fg = data > threshold_otsu(data[data > data.min()]) if np.any(data > data.min()) else data > 0
    return np.asarray(ndimage.binary_fill_holes(largest_component(fg)))
