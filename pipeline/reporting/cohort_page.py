"""The cohort page ``reports/index.html``: metrics, curves, comparison, every scan, a gallery.

Example:
    >>> rows = [CaseRow("sub-01", "test_healthy", 1.2, "normal", 0.0, 0, 0.0, "cases/sub-01.html")]
    >>> page = render_index({"voxel_auprc": 0.5, "score": "nll"}, rows, {"modality": "T1w"},
    ...                     {"roc": None, "pr": None}, [], {}, Markup(""), {})
    >>> "href='cases/sub-01.html'" in page and "1 scans listed, 0 called abnormal" in page
    True
    >>> validation = {"primary": "nll", "n_scans": 2, "kinds": ["ms", "atrophy"], "maps": {
    ...     "nll": {"lesions": {"voxel_auprc": 0.41, "best_dice": 0.45,
    ...                         "dice_at_calibrated_threshold": 0.3,
    ...                         "ci95": {"voxel_auprc": [0.3, 0.5]}},
    ...             "ms": {"voxel_auprc": 0.02}, "atrophy": {"flagged_ml_mean": 0.4}}}}
    >>> page = render_index({"score": "nll"}, rows, {}, {}, [], {}, Markup(""), validation)
    >>> "Realistic validation lesions" in page and "0.410 (0.30-0.50)" in page
    True
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from pipeline.config.output_schema import ReportParams
from pipeline.reporting import render, svg
from pipeline.reporting.html import Cell, Table, Tile, cells
from pipeline.reporting.html import render as render_page
from pipeline.reporting.scan_report import CanonicalVolumes, heat_range
from pipeline.scoring.domain import ABNORMAL, NORMAL, OUT_OF_DISTRIBUTION
from pipeline.space.grid import PLANE_AXIS

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
    ("threshold", "voxel threshold (z)", "{:.3f}"))
COMPARISON = (("voxel_auroc", "voxel AUROC", "{:.3f}"), ("voxel_auprc", "voxel AUPRC", "{:.3f}"),
              ("best_dice", "best Dice", "{:.3f}"),
              ("dice_at_calibrated_threshold", "Dice@calib", "{:.3f}"),
              ("healthy_voxel_fpr", "healthy voxels flagged", "{:.3%}"),
              ("scan_auroc", "scan AUROC", "{:.3f}"),
              ("lesion_detection_rate", "lesions found", "{:.1%}"))
GALLERY_PIXEL_SCALE = 2.0  # gallery tiles: pixels twice report.display_mm (thumbnails)
EXTRA_COLUMNS = ("voxel_auroc", "voxel_auprc", "best_dice", "dice_at_calibrated_threshold",
                 "lesion_detection_rate")
BASELINES = {"intensity": "baseline: intensity thresholding",
             "intensity_normative": "baseline: intensity atlas (no VAE)",
             "autoencoder": "baseline: plain autoencoder (β = 0)"}


# the cohort table's verdict cell: CSS class and sort key (the scans to look at first)
VERDICT_CELLS = {OUT_OF_DISTRIBUTION: ("ood", "2"), ABNORMAL: ("abnormal", "1"), NORMAL: ("", "0")}


@dataclass
class CaseRow:
    """One scan of the cohort table."""

    name: str
    split: str
    scan_score: float
    verdict: str                 # one of scoring.domain.VERDICTS, as its JSON records it
    flagged_ml: float
    n_findings: int
    peak: float
    link: str | None


def read_columns(path: Path, *names: str) -> list[list[float]]:
    """The named columns of a DVC plot CSV."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return [[float(r[n]) for r in rows] for n in names]


def read_curve(path: Path, x: str, y: str) -> tuple[list[float], list[float]] | None:
    """Two columns of a DVC plot CSV, or ``None`` when the file is missing."""
    if not path.is_file():
        return None
    xs, ys = read_columns(path, x, y)
    return xs, ys


def gallery_tile(c: CanonicalVolumes, threshold: float, rp: ReportParams, caption: str,
                 link: str | None) -> Tile:
    """Axial maximum-intensity projection of the map and mask over the mid-brain slice."""
    image, heat, mask = c.arrays["image"], c.arrays["heatmap"], c.arrays["mask"]
    axis = PLANE_AXIS["axial"]
    lo, hi = render.extent(heat if np.any(heat) else image, axis)
    style = render.Style(render.window(image), heat_range(threshold, heat, rp),
                         GALLERY_PIXEL_SCALE * rp.display_mm, rp.convention)
    conv = rp.convention

    def projection(vol: np.ndarray) -> np.ndarray:
        return render.display_slice(vol.max(axis=axis, keepdims=True), "axial", 0, conv)

    rgb = render.compose(render.display_slice(image, "axial", (lo + hi) // 2, conv), style,
                         render.pixel_mm(c.spacing, "axial"), heat=projection(heat),
                         mask=projection(mask))
    return Tile(render.image_uri(rgb), render.labels("axial", conv), caption, caption, link)


def _fmt(fmt: str, value: object) -> str:
    return fmt.format(value)


def _metrics_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """Label and value of each headline metric, with its 95 % bootstrap interval if any."""
    ci = metrics.get("ci95", {})
    return [(label, _fmt(fmt, metrics[key]) + (
        f" (95 % CI {_fmt(fmt, ci[key][0])} to {_fmt(fmt, ci[key][1])})" if key in ci else ""))
            for key, label, fmt in METRICS if isinstance(metrics.get(key), int | float)]


def _comparison(metrics: dict[str, Any]) -> Table | None:
    types = metrics.get("score_types", {})
    if not types:
        return None
    table = Table(["map", *(label for _, label, _ in COMPARISON)], sortable=True)
    for name, row in types.items():
        label = f"{name} (primary)" if name == metrics.get("score") else BASELINES.get(name, name)
        table.rows.append([Cell(label, cls="name"), *cells(*(
            _fmt(fmt, float(row.get(key, float("nan")))) for key, _, fmt in COMPARISON))])
    return table


def _domain_values(values: dict[str, float]) -> str:
    """A case's domain statistics in one cell ("grey white contrast 0.504; ...")."""
    return "; ".join(f"{k.replace('_', ' ')} {float(v):.3f}" for k, v in values.items())


def _extra(metrics: dict[str, Any], links: dict[str, str]) -> Table | None:
    cases = metrics.get("extra_cases", {})
    if not cases:
        return None
    primary = metrics.get("score", "")
    table = Table(["case", "lesion mL", "voxel AUROC", "voxel AUPRC", "best Dice", "Dice@calib",
                   "lesions found", "flagged mL", "outside lesions mL", "verdict",
                   "domain statistics"])
    for name, m in cases.items():
        p = m.get(primary, {})
        table.rows.append([Cell(name, cls="name", link=links.get(name)),
                           *cells(m.get("lesion_volume_ml"), *(
                               f"{float(p.get(k, float('nan'))):.3f}" for k in EXTRA_COLUMNS),
                                  p.get("flagged_volume_ml"),
                                  m.get("flagged_outside_lesions_ml", ""),
                                  m.get("verdict", ""), _domain_values(m.get("domain", {})))])
    return table


def _interval(row: dict[str, Any], key: str) -> str:
    """``row[key]`` with its 95 % interval, if any ("0.512 (0.40-0.63)")."""
    ci = row.get("ci95", {}).get(key)
    text = f"{float(row.get(key, float('nan'))):.3f}"
    return text + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def _validation(validation: dict[str, Any]) -> Table | None:
    """The realistic validation set (``reports/validation.json``): one row per map."""
    maps = validation.get("maps", {})
    if not maps:
        return None
    kinds = [k for k in validation.get("kinds", []) if k != "atrophy"]
    table = Table(["map", "AUPRC (95 % CI)", "best Dice (95 % CI)", "Dice@calib",
                   *(f"{k} AUPRC" for k in kinds), "atrophy: flagged mL"], sortable=True)
    for name, row in maps.items():
        pooled = row.get("lesions", {})
        label = f"{name} (primary)" if name == validation.get("primary") else name
        table.rows.append([Cell(label, cls="name"), *cells(
            _interval(pooled, "voxel_auprc"), _interval(pooled, "best_dice"),
            f"{float(pooled.get('dice_at_calibrated_threshold', float('nan'))):.3f}",
            *(f"{float(row.get(k, {}).get('voxel_auprc', float('nan'))):.3f}" for k in kinds),
            row.get("atrophy", {}).get("flagged_ml_mean", ""))])
    return table


SITE_COLUMNS = (("healthy_flagged_ml_mean", "{:.2f}"), ("healthy_flagged_ml_max", "{:.2f}"),
                ("healthy_flagged_rim_ml_mean", "{:.2f}"), ("healthy_abnormal", "{}"),
                ("healthy_out_of_distribution", "{}"), ("voxel_auprc", "{:.3f}"),
                ("best_dice", "{:.3f}"))


def _sites(metrics: dict[str, Any]) -> Table | None:
    """Simulated other sites (``evaluate.sites``) and other-modality cases, one row each."""
    sites, domain_cases = metrics.get("sites", {}), metrics.get("domain_cases", {})
    if not sites and not domain_cases:
        return None
    table = Table(["version", "healthy scans", "flagged mL (mean)", "flagged mL (max)",
                   "rim mL (mean)", "called abnormal", "out of distribution",
                   "lesioned AUPRC", "lesioned best Dice"])
    for name, row in sites.items():
        values = [fmt.format(row[k]) if k in row else "" for k, fmt in SITE_COLUMNS]
        table.rows.append([Cell(name, cls="name"), *cells(row.get("n_healthy"), *values)])
    for name, row in domain_cases.items():
        ood = int(row.get("verdict") == OUT_OF_DISTRIBUTION)
        table.rows.append([Cell(f"{name} (another modality)", cls="name"), *cells(
            1, row.get("flagged_ml", ""), "", row.get("flagged_rim_ml", ""),
            int(row.get("verdict") == ABNORMAL), ood, "", "")])
    return table


def _cases(rows: Sequence[CaseRow]) -> Table:
    table = Table(["scan", "split", "scan score", "verdict", "flagged mL", "findings", "peak z"],
                  sortable=True)
    for r in rows:
        cls, sort = VERDICT_CELLS.get(r.verdict, ("", ""))
        verdict = Cell(r.verdict, cls=cls, sort=sort)
        table.rows.append([Cell(r.name, cls="name", link=r.link), Cell(r.split),
                           Cell(f"{r.scan_score:.3f}"), verdict, Cell(f"{r.flagged_ml:.2f}"),
                           Cell(str(r.n_findings)), Cell(f"{r.peak:.2f}")])
    return table


def render_index(metrics: dict[str, Any], rows: Sequence[CaseRow], trained: dict[str, Any],
                 curves: dict[str, tuple[list[float], list[float]] | None],
                 gallery: Sequence[Tile], extra_links: dict[str, str], generative: Markup,
                 validation: dict[str, Any]) -> str:
    """The cohort page as one self-contained HTML string (``generative``: its closing
    sections, e.g. :func:`pipeline.reporting.reconstruction.reconstruction_section` and
    :func:`pipeline.reporting.generative_section.generative_section`; ``validation``: the
    ``validate`` stage's result)."""
    charts = []
    roc, pr = curves.get("roc"), curves.get("pr")
    if roc is not None:
        charts.append(svg.line_chart([("primary map", *roc)], "false positive rate",
                                     "true positive rate", diagonal=True))
    if pr is not None:
        charts.append(svg.line_chart([("primary map", *pr)], "recall", "precision"))
    model = metrics.get("model", {})
    return render_page(
        "cohort.html.j2", title="vae-anomaly cohort report", metrics=metrics, model=model,
        trained=trained, n_rows=len(rows), n_abnormal=sum(r.verdict == ABNORMAL for r in rows),
        metrics_rows=_metrics_rows(metrics), charts=charts, comparison=_comparison(metrics),
        extra=_extra(metrics, extra_links), validation=_validation(validation),
        n_validation=validation.get("n_scans", 0), sites=_sites(metrics), cases=_cases(rows),
        gallery=list(gallery), generative=generative)
