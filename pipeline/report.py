"""Self-contained HTML heatmap reports (images embedded, no external requests).

Views are drawn from the scan's canonical (RAS) reorientation of its native grid — an exact
axis permutation, no resampling — in neurological convention (the patient's left on the
left of the image), with orientation labels on every view.

Example:
    >>> page = render_scan_report(data, affine, heat, mask, rec, info, [])  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.nifti import voxel_spacing, voxel_volume_mm3
from pipeline.preprocess import to_canonical

OVERLAY_FRACTION = 0.5  # heat is drawn from this fraction of the threshold upwards

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.4em}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;
padding:3px 8px;font-size:.9em;text-align:right}th{background:#f3f3f3}.bad{color:#b00;
font-weight:bold}.ok{color:#070;font-weight:bold}img{max-width:100%}.meta td{text-align:left}"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _views(shape: tuple[int, ...], spacing: np.ndarray, point: tuple[int, int, int]
           ) -> list[tuple[str, Any, float, tuple[str, str, str, str]]]:
    """(name, slicer, aspect, (left, right, bottom, top) labels) per plane."""
    i, j, k = point
    return [
        ("axial", (slice(None), slice(None), k), spacing[1] / spacing[0], ("L", "R", "P", "A")),
        ("coronal", (slice(None), j, slice(None)), spacing[2] / spacing[0], ("L", "R", "I", "S")),
        ("sagittal", (i, slice(None), slice(None)), spacing[2] / spacing[1], ("P", "A", "I", "S")),
    ]


def figure_three_planes(image: np.ndarray, heat: np.ndarray, mask: np.ndarray,
                        recon: np.ndarray | None, affine: np.ndarray, vmax: float,
                        threshold: float, truth: np.ndarray | None = None) -> str:
    """PNG (base64) of input / reconstruction / heatmap rows through the strongest finding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_c, aff_c, _ = to_canonical(image, affine)
    heat_c = to_canonical(heat, affine)[0]
    mask_c = to_canonical(mask, affine)[0]
    truth_c = to_canonical(truth, affine)[0] if truth is not None else None
    rec_c = to_canonical(recon, affine)[0] if recon is not None else None
    spacing = voxel_spacing(aff_c)
    if heat_c.max() > 0:
        peak = np.unravel_index(int(np.argmax(heat_c)), heat_c.shape)
    else:
        peak = tuple(s // 2 for s in heat_c.shape)
    point = (int(peak[0]), int(peak[1]), int(peak[2]))
    rows = [("input", img_c), *([("reconstruction", rec_c)] if rec_c is not None else []),
            ("anomaly map", img_c)]
    lo, hi = np.percentile(img_c[img_c > 0], [1, 99.5]) if (img_c > 0).any() else (0, 1)
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 3.2 * len(rows)), squeeze=False)
    for col, (name, sl, aspect, labels) in enumerate(_views(img_c.shape, spacing, point)):
        for row, (title, vol) in enumerate(rows):
            ax = axes[row, col]
            ax.imshow(vol[sl].T, cmap="gray", origin="lower", aspect=aspect,
                      vmin=lo if title == "input" or title == "anomaly map" else None,
                      vmax=hi if title == "input" or title == "anomaly map" else None)
            if title == "anomaly map":
                h = np.ma.masked_less(heat_c[sl].T, OVERLAY_FRACTION * threshold)
                im = ax.imshow(h, cmap="hot", origin="lower", aspect=aspect, vmin=0,
                               vmax=vmax, alpha=0.7)
                if mask_c[sl].any():
                    ax.contour(mask_c[sl].T, levels=[0.5], colors="cyan", linewidths=0.8)
                if truth_c is not None and truth_c[sl].any():
                    ax.contour(truth_c[sl].T, levels=[0.5], colors="lime", linewidths=0.8,
                               linestyles="dashed")
                fig.colorbar(im, ax=ax, fraction=0.04, label="z (healthy-calibrated)")
            ax.set_title(f"{title}: {name}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            for text, xy in zip(labels, [(0.02, 0.5), (0.93, 0.5), (0.48, 0.02), (0.48, 0.92)],
                                strict=True):
                ax.text(*xy, text, transform=ax.transAxes, color="yellow", fontsize=9)
    return _png(fig)


def figure_scan_score(score: float, healthy: list[float], threshold: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.4))
    ax.scatter(healthy, np.zeros(len(healthy)), marker="|", s=300, color="gray",
               label="healthy calibration scans")
    ax.axvline(threshold, color="orange", linestyle="--", label="threshold")
    ax.scatter([score], [0], color="red", zorder=3, label="this scan")
    ax.set_yticks([])
    ax.set_xlabel("scan score")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def findings(heat: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> list[dict[str, Any]]:
    """Connected components of ``mask``: volume, peak/mean score, centroid (voxel and mm)."""
    labels, n = ndimage.label(mask > 0)
    voxel_ml = voxel_volume_mm3(affine) / 1000.0
    rows = []
    for idx in range(1, n + 1):
        comp = labels == idx
        centroid = np.argwhere(comp).mean(0)
        world = affine[:3, :3] @ centroid + affine[:3, 3]
        rows.append({"volume_ml": round(float(comp.sum()) * voxel_ml, 3),
                     "peak": round(float(heat[comp].max()), 2),
                     "mean": round(float(heat[comp].mean()), 2),
                     "centroid_voxel": [round(float(v), 1) for v in centroid],
                     "centroid_mm": [round(float(v), 1) for v in world],
                     "hemisphere": "left" if world[0] < 0 else "right"})
    return sorted(rows, key=lambda r: -r["volume_ml"])


def render_scan_report(image: np.ndarray, affine: np.ndarray, heat: np.ndarray,
                       mask: np.ndarray, recon: np.ndarray | None, info: dict[str, Any],
                       healthy_scores: list[float], truth: np.ndarray | None = None) -> str:
    """The per-scan HTML report as one self-contained string (``truth``: known lesions)."""
    esc = html.escape
    threshold = float(info["threshold"])
    vmax = max(threshold * 2.0, float(np.percentile(heat[heat > 0], 99.9)) if (heat > 0).any()
               else 1.0)
    planes = figure_three_planes(image, heat, mask, recon, affine, vmax, threshold, truth)
    score_fig = figure_scan_score(info["scan_score"], healthy_scores, info["scan_threshold"])
    trained = info.get("trained_on", {})
    verdict = ("<span class='bad'>ABNORMAL</span>" if info["is_abnormal"]
               else "<span class='ok'>within healthy range</span>")
    rows = "".join(
        f"<tr><td>{i + 1}</td><td>{f['volume_ml']}</td><td>{f['peak']}</td><td>{f['mean']}</td>"
        f"<td>{f['centroid_voxel']}</td><td>{f['centroid_mm']}</td><td>{f['hemisphere']}</td></tr>"
        for i, f in enumerate(findings(heat, mask, affine)))
    model = info.get("model", {})
    reg = info.get("registration", {})
    meta = [
        ("created", esc(str(info.get("created", "")))),
        ("model", f"{esc(str(model.get('name')))} v{esc(str(model.get('version')))} "
                  f"({esc(str(model.get('uri')))})"),
        ("trained on", f"{esc(str(trained.get('modality')))}, {esc(str(trained.get('space')))}, "
                       f"cohort {esc(str(trained.get('cohort')))} "
                       f"({esc(str(trained.get('n_train')))} healthy scans)"),
        ("scan score", f"{info['scan_score']:.3f} (threshold {info['scan_threshold']:.3f}): "
                       f"{verdict}"),
        ("voxel threshold", f"z &gt; {threshold:.3f}; flagged {info['flagged_volume_ml']} mL"),
        ("registration", f"Dice with template brain {reg.get('dice_with_template_brain')} "
                         f"(brain mask: {esc(str(reg.get('brain_mask')))})"),
    ]
    meta_html = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in meta)
    title = esc(str(info.get("input", "")))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{title}: anomaly report</title><style>{_CSS}</style></head><body>
<h1>Anomaly report: {title}</h1>
<table class="meta">{meta_html}</table>
<p><img alt="scan score among healthy scans" src="data:image/png;base64,{score_fig}"></p>
<h2>Views through the strongest finding</h2>
<p>Native grid, reoriented to RAS without resampling; neurological convention: the patient's
left is on the image left, as labelled. Cyan outline: mask at the calibrated threshold.
Colour: z-score against healthy calibration scans, drawn from half the threshold upwards.
{"Dashed green outline: known (synthetic) lesions." if truth is not None else ""}</p>
<img alt="three planes" src="data:image/png;base64,{planes}">
<h2>Findings</h2><table><tr><th>#</th><th>volume (mL)</th><th>peak z</th><th>mean z</th>
<th>centroid (voxel)</th><th>centroid (mm, scanner)</th><th>side</th></tr>{rows or
'<tr><td colspan=7>no component above threshold</td></tr>'}</table>
<p style="font-size:.8em;color:#666">Research use only; not a medical device.</p>
</body></html>"""
