"""Registration quality control: mid-slice thumbnails and ``reports/prepare_qc.html``.

Each prepared scan gets a small PNG: sagittal, coronal and axial mid-slices of its
template-space input with the template brain outline in red, so a misregistration shows as
brain outside the outline (or outline outside the brain). The HTML page lists every scan
with its Dice, worst first, and shows all thumbnails in the same order.

Example:
    >>> import numpy as np
    >>> image = np.zeros((20, 24, 20)); image[5:15, 6:18, 5:15] = 0.8
    >>> png = thumbnail(image, image > 0, scale=2)
    >>> png[:4]
    b'\x89PNG'
    >>> page = render_qc_html({"n_scans": 1}, [{"id": "a", "dice": 0.9, "ok": True}], {"a": png})
    >>> "Registration quality control" in page and "data:image/png;base64," in page
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.io.atomic import write_text
from pipeline.reporting.html import Cell, Table, Tile, cells, render
from pipeline.reporting.render import data_uri, display_slice, encode_image
from pipeline.space.grid import PLANE_AXIS

_OUTLINE_RGB = (255, 40, 40)


def thumbnail(image: np.ndarray, outline_mask: np.ndarray, scale: int = 2) -> bytes:
    """PNG bytes: sagittal, coronal and axial mid-slices of a template-space ``image`` (0..1,
    RAS) with ``outline_mask``'s border in red, neurological convention."""
    tiles = []
    for plane in ("sagittal", "coronal", "axial"):
        mid = image.shape[PLANE_AXIS[plane]] // 2
        gray = display_slice(image, plane, mid, "neurological")
        mask = display_slice(outline_mask.astype(bool), plane, mid, "neurological")
        rgb = np.repeat((np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)[..., None], 3, axis=2)
        rgb[mask & ~ndimage.binary_erosion(mask)] = _OUTLINE_RGB
        tiles.append(rgb)
    height = max(t.shape[0] for t in tiles)
    row = np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0))) for t in tiles],
                         axis=1)
    return encode_image(row.repeat(scale, axis=0).repeat(scale, axis=1))


def _bias(stats: Any) -> str:
    if not isinstance(stats, dict) or "log_bias_p1" not in stats:
        return ""
    return f"{stats['log_bias_p1']:+.2f} / {stats['log_bias_p99']:+.2f}"


def worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """QC rows by Dice, lowest first; scans that never got a Dice (errors) before all."""
    return sorted(rows, key=lambda r: -1.0 if r.get("dice") is None else float(r["dice"]))


def render_qc_html(summary: dict[str, Any], rows: list[dict[str, Any]],
                   thumbs: dict[str, bytes]) -> str:
    """The QC page: summary, per-scan table (worst Dice first), thumbnails in that order."""
    rows = worst_first(rows)
    table = Table(["scan", "split", "Dice", "inside", "brain mask", "log bias field p1/p99",
                   "status", "error"])
    for r in rows:
        ok = bool(r.get("ok"))
        table.rows.append(cells(
            r["id"], r.get("split", ""), "" if r.get("dice") is None else f"{r['dice']:.3f}",
            "" if r.get("containment") is None else f"{r['containment']:.3f}",
            r.get("mask_source", ""), _bias(r.get("bias_field")),
            "ok" if ok else Cell("FAILED", cls="fail"), r.get("error", "")))
    figures = [Tile(data_uri(thumbs[r["id"]]), {}, r["id"], f"{r['id']} Dice {r['dice']:.3f}")
               for r in rows if r["id"] in thumbs and r.get("dice") is not None]
    return render("qc.html.j2", title="prepare: registration QC",
                  facts=[(k, str(v)) for k, v in summary.items()], scans=table,
                  figures=figures)


def write_qc_html(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]],
                  thumbs: dict[str, bytes]) -> Path:
    return write_text(path, render_qc_html(summary, rows, thumbs))
