"""Previews of generated volumes: one PNG mosaic per command and a self-contained HTML page.

Volumes are drawn through :mod:`pipeline.reporting.render` (canonical RAS order, square pixels, the
report's left/right convention), laid out as a grid of rows, and written as a lossless PNG;
the HTML page embeds that PNG with what produced it.

Example:
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).random((20, 24, 20)).astype(np.float32)
    >>> style = Style((0.0, 1.0), (0.5, 2.5), 1.0, "radiological")
    >>> views = orthogonal_views(vol, np.eye(4), style)
    >>> [v.shape for v in views]
    [(24, 20), (20, 20), (20, 24)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from nibabel.affines import voxel_sizes

from pipeline.config.output_schema import ReportParams
from pipeline.io.atomic import atomic_write, write_text
from pipeline.reporting import render
from pipeline.reporting.html import render as render_page
from pipeline.reporting.render import Style
from pipeline.space.grid import PLANE_AXIS, PLANES, to_canonical

GAP_PX = 4
GAP_VALUE = 255  # white gaps between tiles
SAMPLES_PER_ROW = 4


def style_for(volume: np.ndarray, rp: ReportParams) -> Style:
    """Grey window from ``volume``'s foreground; pixel size and convention of the reports."""
    return Style(render.window(volume), (rp.heat_range[0], rp.heat_range[1]), rp.display_mm,
                 rp.convention)


def orthogonal_views(volume: np.ndarray, affine: np.ndarray, style: Style,
                     point: Sequence[int] | None = None,
                     outline: np.ndarray | None = None) -> list[np.ndarray]:
    """Axial, coronal and sagittal views through ``point`` (native voxel; default: centre),
    as uint8 grey (or RGB when ``outline``, a mask drawn in cyan, is given)."""
    canon, canon_affine, _ = to_canonical(np.asarray(volume, np.float32), affine)
    spacing = voxel_sizes(canon_affine)
    if point is None:
        centre = [s // 2 for s in canon.shape]
    else:
        to_canon = np.linalg.inv(canon_affine) @ np.asarray(affine, np.float64)
        p = to_canon[:3, :3] @ np.asarray(point, float) + to_canon[:3, 3]
        centre = [int(np.clip(round(float(v)), 0, s - 1)) for v, s in zip(p, canon.shape,
                                                                       strict=True)]
    mask = None if outline is None else to_canonical(outline.astype(np.uint8), affine)[0] > 0
    views = []
    for plane in PLANES:
        axis = PLANE_AXIS[plane]
        mm = render.pixel_mm(spacing, plane)
        anat = render.display_slice(canon, plane, centre[axis], style.convention)
        if mask is None:
            views.append(render.grey(anat, style, mm))
        else:
            edge = render.display_slice(mask, plane, centre[axis], style.convention)
            views.append(render.compose(anat, style, mm, mask=edge))
    return views


def samples_mosaic(images: Sequence[np.ndarray] | np.ndarray, affine: np.ndarray, style: Style,
                   per_row: int = SAMPLES_PER_ROW) -> np.ndarray:
    """Three views of each volume, ``per_row`` volumes per row."""
    views = [orthogonal_views(im, affine, style) for im in images]
    return mosaic([[v for group in views[i:i + per_row] for v in group]
                   for i in range(0, len(views), per_row)])


def path_rows(first: np.ndarray, path: Sequence[np.ndarray] | np.ndarray, last: np.ndarray,
              affine: np.ndarray, style: Style) -> list[list[np.ndarray]]:
    """An axial and a coronal row: ``first``, the decoded ``path``, ``last``."""
    views = [orthogonal_views(v, affine, style) for v in (first, *path, last)]
    return [[v[plane] for v in views] for plane in (0, 1)]


def _rgb(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def mosaic(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """Tiles laid out row by row on a white background (RGB uint8)."""
    heights = [max(t.shape[0] for t in row) for row in rows]
    widths = [sum(t.shape[1] for t in row) + GAP_PX * (len(row) - 1) for row in rows]
    out = np.full((sum(heights) + GAP_PX * (len(rows) - 1), max(widths), 3), GAP_VALUE,
                  np.uint8)
    y = 0
    for row, h in zip(rows, heights, strict=True):
        x = 0
        for t in row:
            out[y:y + t.shape[0], x:x + t.shape[1]] = _rgb(t)
            x += t.shape[1] + GAP_PX
        y += h + GAP_PX
    return out


def write_png(path: Path, pixels: np.ndarray) -> Path:
    data = render.encode_image(pixels)
    return atomic_write(path, lambda p: p.write_bytes(data))


def orientation_note(convention: str) -> str:
    side = ("the patient's right on the image left" if convention == "radiological"
            else "the patient's left on the image left")
    return (f"Axial and coronal views: {convention} convention ({side}); sagittal views: "
            f"anterior on the left.")


def write_page(path: Path, title: str, meta: Sequence[tuple[str, object]], pixels: np.ndarray,
               layout: str, convention: str) -> Path:
    """A self-contained preview page: what was made, the mosaic, how to read it."""
    return write_text(path, render_page(
        "preview.html.j2", title=title, meta=list(meta), image=render.image_uri(pixels),
        note=f"{layout} {orientation_note(convention)}"))
