"""The per-scan HTML report a radiologist reviews (written by ``score`` and the report stage).

One self-contained file: header (scan, model, what it was trained on, verdict, where the scan
score falls among the healthy calibration scans), views through the strongest findings
(input, reconstruction, pseudo-healthy restoration when computed, anomaly map with the mask
outline and a colour bar in calibrated units), the findings table, an axial montage and an
interactive slice viewer. Views and orientation labels: see :mod:`pipeline.reporting.render`;
the page itself: ``templates/scan_report.html.j2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes

from pipeline.config.output_schema import ReportParams
from pipeline.reporting import render, svg
from pipeline.reporting.html import Table, Tile, cells
from pipeline.reporting.html import render as render_page
from pipeline.scoring.domain import DomainVerdict
from pipeline.scoring.findings import Finding
from pipeline.scoring.result import ScanResult, ScanSummary
from pipeline.space.grid import PLANE_AXIS, PLANES, to_canonical

CONVENTION = {
    "radiological": "radiological convention: the patient's right is on the image left "
                    "(axial and coronal views)",
    "neurological": "neurological convention: the patient's left is on the image left "
                    "(axial and coronal views)"}
COLUMNS = {"image": "input", "reconstruction": "reconstruction",
           "restoration": "pseudo-healthy restoration", "overlay": "anomaly map"}


@dataclass
class ReportVolumes:
    """Arrays on the scan's native grid (``affine``); optional ones are left out if ``None``."""

    image: np.ndarray
    affine: np.ndarray
    heatmap: np.ndarray
    mask: np.ndarray
    reconstruction: np.ndarray | None = None
    restoration: np.ndarray | None = None
    truth: np.ndarray | None = None


class CanonicalVolumes:
    """The volumes in canonical RAS order, their spacing and the native → canonical index map
    (built once per scan; the report and the cohort gallery both draw from it)."""

    def __init__(self, v: ReportVolumes) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        canon_affine = v.affine
        for name in ("image", "heatmap", "mask", "reconstruction", "restoration", "truth"):
            data = getattr(v, name)
            if data is not None:
                self.arrays[name], canon_affine, _ = to_canonical(np.asarray(data), v.affine)
        self.index_map = np.linalg.inv(canon_affine) @ np.asarray(v.affine, np.float64)
        self.spacing = voxel_sizes(canon_affine)
        self.shape = self.arrays["image"].shape

    def point(self, native_voxel: list[int] | list[float]) -> tuple[int, int, int]:
        p = self.index_map[:3, :3] @ np.asarray(native_voxel, float) + self.index_map[:3, 3]
        q = np.clip(np.rint(p).astype(int), 0, np.asarray(self.shape) - 1)
        return int(q[0]), int(q[1]), int(q[2])

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)


def view(c: CanonicalVolumes, style: render.Style, plane: str, index: int, layer: str
         ) -> np.ndarray:
    """One displayed slice: a grey volume's name gives grey pixels, "overlay" the anatomy with
    the map and outlines (RGB), "layer" the map and outlines alone (RGBA)."""

    def sl(name: str) -> np.ndarray | None:
        vol = c.get(name)
        return None if vol is None else render.display_slice(vol, plane, index, style.convention)

    mm = render.pixel_mm(c.spacing, plane)
    anat = sl("image" if layer in ("overlay", "layer") else layer)
    assert anat is not None
    g = render.grey(anat, style, mm)
    if layer not in ("overlay", "layer"):
        return g
    rgba = render.overlay(g.shape, style, mm, sl("heatmap"), sl("mask"), sl("truth"))
    return rgba if layer == "layer" else render.blend(g, rgba)


def heat_range(threshold: float, heat: np.ndarray, rp: ReportParams) -> tuple[float, float]:
    """The map's colour range: ``report.heat_range`` × the threshold (× the map's maximum
    when the threshold is not positive)."""
    top = float(np.max(heat, initial=0.0))
    scale = threshold if threshold > 0 else (top if top > 0 else 1.0)
    return rp.heat_range[0] * scale, rp.heat_range[1] * scale


def _styles(c: CanonicalVolumes, threshold: float, rp: ReportParams) -> dict[str, render.Style]:
    heat = heat_range(threshold, c.arrays["heatmap"], rp)
    out = {}
    for name in ("image", "reconstruction", "restoration"):
        vol = c.get(name)
        if vol is not None:
            out[name] = render.Style(render.window(vol), heat, rp.display_mm, rp.convention)
    out["overlay"] = out["image"]
    return out


@dataclass
class FindingGrid:
    """Views through one point: each layer (columns) in each plane (rows)."""

    title: str
    columns: int
    tiles: list[Tile]


def _finding_grid(c: CanonicalVolumes, styles: dict[str, render.Style],
                  point: tuple[int, int, int], layers: list[str], title: str) -> FindingGrid:
    tiles = []
    for plane in PLANES:
        idx = point[PLANE_AXIS[plane]]
        for layer in layers:
            style = styles[layer if layer in styles else "image"]
            tiles.append(Tile(render.image_uri(view(c, style, plane, idx, layer)),
                              render.labels(plane, style.convention),
                              f"{title}: {COLUMNS[layer]}, {plane}",
                              f"{COLUMNS[layer]} · {plane} {idx}"))
    return FindingGrid(title, len(layers) if len(layers) > 1 else len(PLANES), tiles)


def _montage(c: CanonicalVolumes, style: render.Style, n: int) -> list[Tile]:
    heat = c.arrays["heatmap"]
    lo, hi = render.extent(heat if np.any(heat) else c.arrays["image"], PLANE_AXIS["axial"])
    return [Tile(render.image_uri(view(c, style, "axial", k, "overlay")),
                 render.labels("axial", style.convention), f"axial slice {k}", f"axial {k}")
            for k in render.spread(lo, hi, n)]


@dataclass
class Viewer:
    """A slider over the slices of one plane: two stacked sprites (anatomy, overlay)."""

    plane: str
    slices: list[int]
    frame_px: tuple[float, float]   # (width, height) of one shown slice
    anatomy: str                    # data URIs of the sprites
    overlay: str
    labels: dict[str, str]


def _viewer(c: CanonicalVolumes, style: render.Style, plane: str, max_slices: int) -> Viewer:
    finest = float(min(c.spacing))
    vstyle = render.Style(style.window, style.heat_range, finest, style.convention)
    source = c.arrays["heatmap"] if np.any(c.arrays["heatmap"]) else c.arrays["image"]
    lo, hi = render.extent(source, PLANE_AXIS[plane])
    rows = render.display_slice(c.arrays["image"], plane, lo, style.convention).shape[0]
    frame_h = max(render.display_rows(rows, vstyle, render.pixel_mm(c.spacing, plane)), 1)
    slices = render.spread(lo, hi, min(max_slices, render.MAX_SPRITE_PX // frame_h))
    over = np.concatenate([view(c, vstyle, plane, k, "layer") for k in slices])
    anat = np.concatenate([view(c, vstyle, plane, k, "image") for k in slices])
    zoom = finest / style.display_mm  # shown with the static views' pixel size
    h, w = over.shape[0] // len(slices) * zoom, over.shape[1] * zoom
    return Viewer(plane, slices, (w, h), render.image_uri(anat, "jpeg"),
                  render.image_uri(over), render.labels(plane, style.convention))


def _findings_table(rows: list[Finding], limit: int) -> Table:
    table = Table(["#", "volume (mL)", "peak z", "mean z", "centroid (native voxel)",
                   "centroid (scanner mm, RAS)", "centroid (MNI mm)", "hemisphere",
                   "tissue (ICBM152)"], sortable=True)
    for i, r in enumerate(rows[:limit]):
        table.rows.append(cells(str(i + 1), str(r.volume_ml), f"{r.peak:.2f}", f"{r.mean:.2f}",
                                r.centroid_voxel, r.centroid_mm,
                                "" if r.centroid_mni is None else r.centroid_mni,
                                r.hemisphere, r.tissue))
    return table


def _header(s: ScanSummary, healthy: list[float]) -> dict[str, Any]:
    rank = (f"; higher than {100.0 * np.mean(np.asarray(healthy) < s.scan_score):.0f}% of the "
            f"{len(healthy)} healthy calibration scans") if healthy else ""
    model, trained, reg = s.model, s.trained_on, s.registration
    checked = DomainVerdict.from_json(s.domain)
    return {
        "input": s.input, "created": s.created,
        "model": f"{model.get('name')} version {model.get('version')} ({model.get('uri')})",
        "trained_on": f"{trained.get('modality')} scans, {trained.get('space')}, cohort "
                      f"{trained.get('cohort')} ({trained.get('n_train')} healthy training "
                      f"scans)",
        "score": f"{s.scan_score:.3f} (threshold {s.scan_threshold:.3f}{rank})",
        "threshold": f"z > {s.threshold:.3f}: {round(s.flagged_volume_ml, 3)} mL flagged",
        "registration": f"Dice with the template brain {reg.get('dice_with_template_brain')}; "
                        f"brain mask {reg.get('brain_mask')}",
        "warnings": "; ".join(s.warnings) or "none",
        "domain": checked.reason(), "domain_line": checked.summary(),
        "strip": svg.strip_plot(s.scan_score, healthy, s.scan_threshold)}


def _peak(c: CanonicalVolumes, found: list[Finding]) -> tuple[int, int, int]:
    """Where the views go: the strongest finding, else the highest map value, else the
    centre."""
    heat = c.arrays["heatmap"]
    peak = c.point(found[0].peak_voxel) if found else (
        np.unravel_index(int(np.argmax(heat)), heat.shape) if np.any(heat)
        else tuple(s // 2 for s in c.shape))
    return int(peak[0]), int(peak[1]), int(peak[2])


def render_scan_report(c: CanonicalVolumes, summary: ScanSummary, healthy: list[float],
                       rp: ReportParams) -> str:
    """The report of one scored scan as a self-contained HTML string."""
    styles = _styles(c, summary.threshold, rp)
    found = summary.findings
    layers = ["image", *[n for n in ("reconstruction", "restoration") if c.get(n) is not None],
              "overlay"]
    lo, hi = styles["overlay"].heat_range
    grids = [_finding_grid(c, styles, _peak(c, found), layers,
                           "finding 1" if found else "strongest voxel")]
    grids += [_finding_grid(c, styles, c.point(f.peak_voxel), ["overlay"], f"finding {n}")
              for n, f in enumerate(found[1:rp.finding_views], start=2)]
    viewers = [_viewer(c, styles["overlay"], p, rp.viewer_max_slices)
               for p in PLANES] if rp.viewer_max_slices else []
    name = str(summary.input).replace("\\", "/").rsplit("/", 1)[-1]
    return render_page(
        "scan_report.html.j2", title=f"{name}: anomaly report", name=name, s=summary,
        header=_header(summary, healthy), grids=grids, findings=found,
        findings_table=_findings_table(found, rp.max_findings),
        more=max(len(found) - rp.max_findings, 0), convention=CONVENTION[rp.convention],
        heat_lo=lo, colour_bar=svg.colour_bar(lo, hi, summary.threshold, "z"),
        truth=c.get("truth") is not None,
        montage=_montage(c, styles["overlay"], rp.montage_slices), viewers=viewers,
    )


def render_result(img: nib.Nifti1Image, result: ScanResult, summary: ScanSummary,
                  healthy: list[float], rp: ReportParams) -> str:
    """The report of a scan just scored, from its native image and result in memory (what
    the scoring service is given as its renderer).

    Args:
        img: the scan as it was read.
        result: its primary result on the scan's grid.
        summary: its summary, as its JSON records it.
        healthy: the scan scores of the healthy calibration scans.
        rp: the report's settings.

    Returns:
        The self-contained HTML page.
    """
    vols = ReportVolumes(np.asarray(img.dataobj), img.affine, result.heatmap, result.mask,
                         result.reconstruction, result.restoration)
    return render_scan_report(CanonicalVolumes(vols), summary, healthy, rp)
