"""The cohort page ``reports/index.html``: metrics, curves, comparison, every scan, a gallery.

Example:
    >>> html = render_index(metrics, rows, trained_on, curves, gallery)   # doctest: +SKIP
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import render, svg
from pipeline.htmlkit import esc, href, meta_table, page, table, tile
from pipeline.report import CanonicalVolumes, heat_range
from pipeline.schema import ReportParams

METRICS = (  # (key in metrics.json, label, format)
    ("voxel_auroc", "voxel AUROC", "{:.3f}"), ("voxel_auprc", "voxel AUPRC", "{:.3f}"),
    ("best_dice", "best Dice (threshold swept)", "{:.3f}"),
    ("dice_at_calibrated_threshold", "Dice at the calibrated threshold", "{:.3f}"),
    ("healthy_voxel_fpr", "healthy voxels flagged", "{:.4%}"),
    ("voxel_fpr_target", "voxel FPR target (calibration)", "{:.4%}"),
    ("scan_auroc", "scan-level AUROC", "{:.3f}"),
    ("lesion_detection_rate", "lesions found", "{:.1%}"),
    ("n_lesions", "lesions in the test scans", "{}"),
    ("n_test_healthy", "healthy test scans", "{}"), ("n_test_lesion", "lesioned test scans", "{}"),
    ("calibrated_threshold", "voxel threshold (z)", "{:.3f}"),
    ("seconds_per_scan_all_maps", "seconds per scan (all score types)", "{:.1f}"))
COMPARISON = (("voxel_auroc", "voxel AUROC", "{:.3f}"), ("voxel_auprc", "voxel AUPRC", "{:.3f}"),
              ("best_dice", "best Dice", "{:.3f}"),
              ("dice_at_calibrated_threshold", "Dice@calib", "{:.3f}"),
              ("healthy_voxel_fpr", "healthy voxels flagged", "{:.3%}"),
              ("scan_auroc", "scan AUROC", "{:.3f}"),
              ("lesion_detection_rate", "lesions found", "{:.1%}"))
GALLERY_PIXEL_SCALE = 2.0  # gallery tiles: pixels twice report.display_mm (thumbnails)
BASELINES = {"intensity": "baseline: intensity thresholding",
             "intensity_normative": "baseline: intensity atlas (no VAE)",
             "autoencoder": "baseline: plain autoencoder (β = 0)"}


@dataclass
class CaseRow:
    """One scan of the cohort table."""

    name: str
    split: str
    scan_score: float
    is_abnormal: bool
    flagged_ml: float
    n_findings: int
    peak: float
    link: str | None


def read_curve(path: Path, x: str, y: str) -> tuple[list[float], list[float]] | None:
    """Two columns of a DVC plot CSV, or ``None`` when the file is missing."""
    if not path.is_file():
        return None
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return [float(r[x]) for r in rows], [float(r[y]) for r in rows]


def gallery_tile(c: CanonicalVolumes, threshold: float, rp: ReportParams, caption: str,
                 link: str | None) -> str:
    """Axial maximum-intensity projection of the map and mask over the mid-brain slice."""
    image, heat, mask = c.arrays["image"], c.arrays["heatmap"], c.arrays["mask"]
    lo, hi = render.extent(heat if np.any(heat) else image, 2)
    k = (lo + hi) // 2
    style = render.Style(render.window(image), heat_range(threshold, heat, rp),
                         GALLERY_PIXEL_SCALE * rp.display_mm, rp.convention)
    conv = rp.convention
    rgb = render.compose(render.display_slice(image, "axial", k, conv), style,
                         render.pixel_mm(c.spacing, "axial"),
                         heat=render.display_slice(heat.max(axis=2, keepdims=True), "axial", 0,
                                                   conv),
                         mask=render.display_slice(mask.max(axis=2, keepdims=True), "axial", 0,
                                                   conv))
    img = tile(render.image_uri(rgb), render.labels("axial", conv), caption, caption)
    return f"<a href='{href(link)}'>{img}</a>" if link else img


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = [(label, esc(fmt.format(metrics[key]))) for key, label, fmt in METRICS
            if isinstance(metrics.get(key), int | float)]
    return meta_table(rows)


def _comparison(metrics: dict[str, Any]) -> str:
    types = metrics.get("score_types", {})
    if not types:
        return ""
    body = []
    for name, row in types.items():
        label = f"{name} (primary)" if name == metrics.get("score") else BASELINES.get(name, name)
        body.append([f"<td class='name'>{esc(label)}</td>",
                     *(esc(fmt.format(float(row.get(key, float("nan")))))
                       for key, _, fmt in COMPARISON)])
    return ("<h2>Score types and baselines</h2><p class='note'>Same test scans, same "
            "threshold policy (healthy calibration scans at the same voxel FPR).</p>"
            + table(["map", *(label for _, label, _ in COMPARISON)], body, sortable=True))


def _extra(metrics: dict[str, Any], links: dict[str, str]) -> str:
    cases = metrics.get("extra_cases", {})
    if not cases:
        return ""
    primary = metrics.get("score", "")
    body = []
    for name, m in cases.items():
        p = m.get(primary, {})
        link = f"<a href='{href(links[name])}'>{esc(name)}</a>" if name in links else esc(name)
        label = f"<td class='name'>{link}</td>"
        body.append([label, esc(m.get("lesion_volume_ml")),
                     *(f"{float(p.get(c, float('nan'))):.3f}"
                       for c in ("voxel_auroc", "voxel_auprc", "best_dice",
                                 "dice_at_calibrated_threshold", "lesion_detection_rate")),
                     esc(p.get("flagged_volume_ml"))])
    return ("<h2>Real lesion cases</h2>" + table(
        ["case", "lesion mL", "voxel AUROC", "voxel AUPRC", "best Dice", "Dice@calib",
         "lesions found", "flagged mL"], body))


def _cases(rows: Sequence[CaseRow]) -> str:
    body = []
    for r in rows:
        link = f"<a href='{href(r.link)}'>{esc(r.name)}</a>" if r.link else esc(r.name)
        name = f"<td class='name'>{link}</td>"
        verdict = ("<td data-v='1' class='abnormal'>abnormal</td>" if r.is_abnormal
                   else "<td data-v='0'>normal</td>")
        body.append([name, esc(r.split), f"{r.scan_score:.3f}", verdict, f"{r.flagged_ml:.2f}",
                     str(r.n_findings), f"{r.peak:.2f}"])
    return table(["scan", "split", "scan score", "verdict", "flagged mL", "findings",
                  "peak z"], body, sortable=True)


def render_index(metrics: dict[str, Any], rows: Sequence[CaseRow], trained: dict[str, Any],
                 curves: dict[str, tuple[list[float], list[float]] | None],
                 gallery: Sequence[str], extra_links: dict[str, str] | None = None,
                 generative: str = "") -> str:
    """The cohort page as one self-contained HTML string (``generative``: the HTML of
    :func:`pipeline.gendashboard.generative_section`)."""
    charts = []
    roc, pr = curves.get("roc"), curves.get("pr")
    if roc is not None:
        charts.append(svg.line_chart([("primary map", *roc)], "false positive rate",
                                     "true positive rate", diagonal=True))
    if pr is not None:
        charts.append(svg.line_chart([("primary map", *pr)], "recall", "precision"))
    n_abnormal = sum(r.is_abnormal for r in rows)
    body = f"""<h1>vae-anomaly: test cohort report</h1>
<p>Model {esc(metrics.get("model", {}).get("registered_model", ""))} version
{esc(metrics.get("model", {}).get("version", ""))}, trained on {esc(trained.get("modality"))}
scans of the cohort {esc(trained.get("cohort"))} ({esc(trained.get("n_train"))} healthy
training scans) in {esc(trained.get("space"))}. Primary map: {esc(metrics.get("score"))}.
{len(rows)} scans listed, {n_abnormal} called abnormal.</p>
<h2>Metrics (primary map, held-out test scans)</h2>{_metrics_table(metrics)}
<h2>Voxel ROC and precision-recall curves (lesioned test scans)</h2>
<div class='views'>{"".join(charts) or "<p>No curve data.</p>"}</div>
{_comparison(metrics)}{_extra(metrics, extra_links or {})}
<h2>Test scans</h2><p class='note'>Click a column header to sort; a scan's name opens its
report.</p>{_cases(rows)}
<h2>Healthy test scans: where the map fires</h2><p class='note'>Each tile: the axial
maximum-intensity projection of the anomaly map and its mask (cyan) over the mid-brain axial
slice, so every false positive of a healthy scan is visible at a glance.</p>
<div class='gallery'>{"".join(gallery) or "<p>No healthy test scans.</p>"}</div>
{generative}"""
    return page("vae-anomaly cohort report", body)
