"""Report images: exact anatomical views of a native scan with the anomaly map over it.

Slices come from the scan's canonical (RAS) reorientation, an exact axis permutation and flip
of its own grid (no resampling of the data), so the orientation labels of every view follow
from the scan's affine. Axial and coronal views are drawn in the requested convention
(radiological: the patient's right on the image left; neurological: the patient's left on
the image left); sagittal views have anterior on the left and superior up. Pixels are
stretched to square millimetres for display only.

Example:
    >>> import numpy as np
    >>> vol = np.zeros((4, 5, 6)); vol[0, :, :] = 1           # i = 0 is the patient's left
    >>> bool(display_slice(vol, "axial", 3, "neurological")[:, 0].all())
    True
    >>> labels("axial", "neurological")["left"]
    'L'
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

OUTLINE_RGB = np.array([0, 230, 255], np.uint8)     # the calibrated mask
TRUTH_RGB = np.array([60, 255, 60], np.uint8)       # known lesions, when given
OVERLAY_ALPHA = 0.75
JPEG_QUALITY = 85  # the slice viewer's anatomy only; every static view is lossless PNG
MAX_SPRITE_PX = 65000  # JPEG's height limit: the viewer stacks its slices in one image
HOT_START = 0.3  # the lowest shown map value gets hot(0.3): dark red


@dataclass(frozen=True)
class Style:
    """How a slice is drawn: grey window, heat range, display pixel size, convention."""

    window: tuple[float, float]
    heat_range: tuple[float, float]
    display_mm: float
    convention: str


def hot(values: np.ndarray) -> np.ndarray:
    """The 'hot' colour map (black → red → yellow → white) of values in [0, 1], as uint8 RGB."""
    v = np.clip(values, 0.0, 1.0)[..., None] * 3.0
    rgb = np.clip(np.concatenate([v, v - 1.0, v - 2.0], axis=-1), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def heat_colour(values: np.ndarray) -> np.ndarray:
    """Colour of normalised map values in [0, 1]: 'hot' from dark red (never black, which
    would read as a hole in the anatomy) through yellow to white."""
    return hot(HOT_START + (1.0 - HOT_START) * np.clip(values, 0.0, 1.0))


def labels(plane: str, convention: str) -> dict[str, str]:
    """Anatomical direction at each edge of a displayed view."""
    if plane == "sagittal":
        return {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    left, right = ("R", "L") if convention == "radiological" else ("L", "R")
    top, bottom = ("A", "P") if plane == "axial" else ("S", "I")
    return {"left": left, "right": right, "top": top, "bottom": bottom}


def display_slice(volume: np.ndarray, plane: str, index: int, convention: str) -> np.ndarray:
    """Slice ``index`` of a canonical (RAS) volume as displayed: row 0 at the top."""
    if plane == "sagittal":  # (j, k) → rows superior first, columns anterior first
        return volume[index, :, :].T[::-1, ::-1]
    sl = volume[:, :, index] if plane == "axial" else volume[:, index, :]
    out = sl.T[::-1, :]  # rows anterior (axial) / superior (coronal) first; columns i = L → R
    return out[:, ::-1] if convention == "radiological" else out


def pixel_mm(spacing: np.ndarray, plane: str) -> tuple[float, float]:
    """(column, row) pixel size in mm of a displayed view."""
    cols = {"axial": 0, "coronal": 0, "sagittal": 1}[plane]
    rows = {"axial": 1, "coronal": 2, "sagittal": 2}[plane]
    return float(spacing[cols]), float(spacing[rows])


def _zoom(img: np.ndarray, factors: tuple[float, float], order: int) -> np.ndarray:
    if np.allclose(factors, 1.0):
        return img
    return ndimage.zoom(img, factors, order=order, grid_mode=True, mode="nearest")


def _factors(style: Style, mm: tuple[float, float]) -> tuple[float, float]:
    return mm[1] / style.display_mm, mm[0] / style.display_mm


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def display_rows(rows: int, style: Style, mm: tuple[float, float]) -> int:
    """Height in pixels of a displayed view with ``rows`` rows (what :func:`grey` returns)."""
    return round(rows * _factors(style, mm)[0])


def grey(anat: np.ndarray, style: Style, mm: tuple[float, float]) -> np.ndarray:
    """Windowed anatomy as uint8, stretched to square ``style.display_mm`` pixels."""
    lo, hi = style.window
    g = _zoom(np.asarray(anat, np.float32), _factors(style, mm), 1)
    return (np.clip((g - lo) / max(hi - lo, 1e-6), 0.0, 1.0) * 255).astype(np.uint8)


def overlay(shape: tuple[int, int], style: Style, mm: tuple[float, float],
            heat: np.ndarray | None = None, mask: np.ndarray | None = None,
            truth: np.ndarray | None = None) -> np.ndarray:
    """RGBA layer of the same displayed size as :func:`grey`: heat, then outlines on top."""
    factors = _factors(style, mm)
    rgba = np.zeros((*shape, 4), np.uint8)
    if heat is not None:
        h = _zoom(np.asarray(heat, np.float32), factors, 1)
        h_lo, h_hi = style.heat_range
        show = (h >= h_lo) & (h > 0)  # the map is 0 outside the brain: never coloured
        rgba[show, :3] = heat_colour((h[show] - h_lo) / max(h_hi - h_lo, 1e-6))
        rgba[show, 3] = int(OVERLAY_ALPHA * 255)
    for m, colour in ((truth, TRUTH_RGB), (mask, OUTLINE_RGB)):
        if m is not None and np.any(m):
            edge = _outline(_zoom(np.asarray(m, np.uint8), factors, 0) > 0)
            rgba[edge, :3] = colour
            rgba[edge, 3] = 255
    return rgba


def blend(grey_img: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """RGB of an RGBA ``layer`` over a grey image (what the browser shows when stacked)."""
    alpha = layer[..., 3:4].astype(np.float32) / 255.0
    base = grey_img[..., None].astype(np.float32)
    return ((1 - alpha) * base + alpha * layer[..., :3]).astype(np.uint8)


def compose(anat: np.ndarray, style: Style, mm: tuple[float, float],
            heat: np.ndarray | None = None, mask: np.ndarray | None = None,
            truth: np.ndarray | None = None) -> np.ndarray:
    """RGB view: grey anatomy, heat from ``style.heat_range[0]`` up, then outlines."""
    g = grey(anat, style, mm)
    return blend(g, overlay(g.shape, style, mm, heat, mask, truth))


def encode_image(pixels: np.ndarray, fmt: str = "png") -> bytes:
    """A grey (2D), RGB or RGBA uint8 array as PNG (lossless) or JPEG file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(pixels))
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def data_uri(data: bytes, fmt: str = "png") -> str:
    """A ``data:`` URI of encoded image bytes."""
    return f"data:image/{fmt};base64," + base64.b64encode(data).decode()


def image_uri(pixels: np.ndarray, fmt: str = "png") -> str:
    """A ``data:`` URI of a grey (2D), RGB or RGBA uint8 array, as PNG (lossless) or JPEG."""
    return data_uri(encode_image(pixels, fmt), fmt)


def window(image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.5)
           ) -> tuple[float, float]:
    """Grey window from the percentiles of the image's foreground (non-zero) voxels."""
    fg = image[image > 0]
    if fg.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(fg, percentiles)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def extent(volume: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last index along ``axis`` where ``volume`` is non-zero (whole axis if none)."""
    other = tuple(a for a in range(volume.ndim) if a != axis)
    present = np.flatnonzero(np.any(volume != 0, axis=other))
    if present.size == 0:
        return 0, volume.shape[axis] - 1
    return int(present[0]), int(present[-1])


def spread(lo: int, hi: int, n: int) -> list[int]:
    """``n`` distinct indices evenly spread over [lo, hi] (fewer if the range is short)."""
    if n <= 0:
        return []
    if hi - lo + 1 <= n:
        return list(range(lo, hi + 1))
    return sorted({round(float(v)) for v in np.linspace(lo, hi, n + 2)[1:-1]})
