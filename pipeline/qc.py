"""Registration quality control: mid-slice thumbnails and ``reports/prepare_qc.html``.

Each prepared scan gets a small PNG: sagittal, coronal and axial mid-slices of its
template-space input with the template brain outline in red, so a misregistration shows as
brain outside the outline (or outline outside the brain). The HTML page lists every scan
with its Dice, worst first, and shows all thumbnails in the same order.

Example:
    >>> png = thumbnail(prepared.image, template.brain, scale=2)         # doctest: +SKIP
    >>> write_qc_html(Path("reports/prepare_qc.html"), rows, thumbs)    # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.nifti import write_text

_OUTLINE_RGB = (255, 40, 40)


def _planes(volume: np.ndarray) -> list[np.ndarray]:
    """Sagittal, coronal, axial mid-slices of a RAS volume, displayed superior/anterior up."""
    i, j, k = (s // 2 for s in volume.shape)
    return [np.flipud(volume[i, :, :].T), np.flipud(volume[:, j, :].T),
            np.flipud(volume[:, :, k].T)]


def thumbnail(image: np.ndarray, outline_mask: np.ndarray, scale: int = 2) -> bytes:
    """PNG bytes: three mid-slices of ``image`` (0..1) with ``outline_mask``'s border in red."""
    from PIL import Image

    tiles = []
    for gray, mask in zip(_planes(image), _planes(outline_mask.astype(bool)), strict=True):
        rgb = np.repeat((np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)[..., None], 3, axis=2)
        border = mask & ~ndimage.binary_erosion(mask)
        rgb[border] = _OUTLINE_RGB
        tiles.append(rgb)
    height = max(t.shape[0] for t in tiles)
    row = np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 2), (0, 0))) for t in tiles],
                         axis=1)
    row = row.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(row).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:.85em}
th{background:#f3f3f3}.fail{color:#b00;font-weight:bold}.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;font-size:.8em}figcaption{text-align:center}"""


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
    esc = html.escape
    rows = worst_first(rows)
    cells = []
    for r in rows:
        status = "ok" if r.get("ok") else "FAILED"
        cls = "" if r.get("ok") else " class='fail'"
        dice = "" if r.get("dice") is None else f"{r['dice']:.3f}"
        inside = "" if r.get("containment") is None else f"{r['containment']:.3f}"
        cells.append(f"<tr{cls}><td>{esc(r['id'])}</td><td>{esc(r.get('split', ''))}</td>"
                     f"<td>{dice}</td><td>{inside}</td><td>{esc(r.get('mask_source', ''))}</td>"
                     f"<td>{_bias(r.get('bias_field'))}</td><td>{status}</td>"
                     f"<td>{esc(r.get('error', ''))}</td></tr>")
    figures = "".join(
        f"<figure><img alt='{esc(r['id'])}' src='data:image/png;base64,"
        f"{base64.b64encode(thumbs[r['id']]).decode()}'><figcaption>{esc(r['id'])} "
        f"Dice {r['dice']:.3f}</figcaption></figure>"
        for r in rows if r["id"] in thumbs and r.get("dice") is not None)
    facts = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                    for k, v in summary.items())
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>prepare: registration QC</title><style>{_CSS}</style></head><body>
<h1>Registration quality control</h1><table>{facts}</table>
<p>Dice: registered brain mask vs. the template (MNI152) brain mask; inside: share of the
registered brain inside the template brain. Scans below the configured minimum are excluded
from training, calibration and evaluation.</p>
<h2>Scans, worst first</h2><table><tr><th>scan</th><th>split</th><th>Dice</th><th>inside</th>
<th>brain mask</th><th>log bias field p1/p99</th><th>status</th><th>error</th></tr>
{"".join(cells)}</table>
<h2>Mid-slices in template space (red: template brain outline), worst first</h2>
<p>Sagittal, coronal, axial; neurological convention (patient's left on the left).</p>
<div class="grid">{figures}</div></body></html>"""


def write_qc_html(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]],
                  thumbs: dict[str, bytes]) -> Path:
    return write_text(path, render_qc_html(summary, rows, thumbs))
