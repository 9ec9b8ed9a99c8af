"""The per-scan HTML report a radiologist reviews (written by ``score`` and the report stage).

One self-contained file: header (scan, model, what it was trained on, verdict, where the scan
score falls among the healthy calibration scans), views through the strongest findings
(input, reconstruction, pseudo-healthy restoration when computed, anomaly map with the mask
outline and a colour bar in calibrated units), the findings table, an axial montage and an
interactive slice viewer. Views and orientation labels: see :mod:`pipeline.render`.

Example:
    >>> vols = ReportVolumes(image, affine, heat, mask)                 # doctest: +SKIP
    >>> html = render_scan_report(vols, info, healthy_scores, params.report)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import render, svg
from pipeline.findings import Finding, find_components
from pipeline.htmlkit import esc, meta_table, page, table, tile, verdict
from pipeline.nifti import voxel_spacing
from pipeline.preprocess import to_canonical
from pipeline.schema import ReportParams

_CONVENTION = {
    "radiological": "radiological convention: the patient's right is on the image left "
                    "(axial and coronal views)",
    "neurological": "neurological convention: the patient's left is on the image left "
                    "(axial and coronal views)"}


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
        self.spacing = voxel_spacing(canon_affine)
        self.shape = self.arrays["image"].shape

    def point(self, native_voxel: list[int] | list[float]) -> tuple[int, int, int]:
        p = self.index_map[:3, :3] @ np.asarray(native_voxel, float) + self.index_map[:3, 3]
        q = np.clip(np.rint(p).astype(int), 0, np.asarray(self.shape) - 1)
        return int(q[0]), int(q[1]), int(q[2])

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)


def _index(point: tuple[int, int, int], plane: str) -> int:
    return point[{"axial": 2, "coronal": 1, "sagittal": 0}[plane]]


def _view(c: CanonicalVolumes, style: render.Style, plane: str, index: int, layer: str
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


_COLUMNS = {"image": "input", "reconstruction": "reconstruction",
            "restoration": "pseudo-healthy restoration", "overlay": "anomaly map"}


def _finding_grid(c: CanonicalVolumes, styles: dict[str, render.Style], point: tuple[int, int, int],
                  layers: list[str], title: str) -> str:
    cells = []
    columns = len(layers) if len(layers) > 1 else len(render.PLANES)
    for plane in render.PLANES:
        idx = _index(point, plane)
        for layer in layers:
            style = styles[layer if layer in styles else "image"]
            rgb = _view(c, style, plane, idx, layer)
            cells.append(tile(render.image_uri(rgb), render.labels(plane, style.convention),
                              f"{title}: {_COLUMNS[layer]}, {plane}",
                              f"{_COLUMNS[layer]} · {plane} {idx}"))
    return (f"<div class='grid' style='grid-template-columns:repeat({columns},auto)'>"
            f"{''.join(cells)}</div>")


def _montage(c: CanonicalVolumes, style: render.Style, n: int) -> str:
    heat = c.arrays["heatmap"]
    source = heat if np.any(heat) else c.arrays["image"]
    lo, hi = render.extent(source, 2)
    tiles = [tile(render.image_uri(_view(c, style, "axial", k, "overlay")),
                  render.labels("axial", style.convention), f"axial slice {k}", f"axial {k}")
             for k in render.spread(lo, hi, n)]
    return f"<div class='views'>{''.join(tiles)}</div>"


def _viewer(c: CanonicalVolumes, style: render.Style, plane: str, max_slices: int) -> str:
    """A slider over the slices of one plane: two stacked sprites (anatomy, overlay)."""
    finest = float(min(c.spacing))
    vstyle = render.Style(style.window, style.heat_range, finest, style.convention)
    source = c.arrays["heatmap"] if np.any(c.arrays["heatmap"]) else c.arrays["image"]
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    lo, hi = render.extent(source, axis)
    rows = render.display_slice(c.arrays["image"], plane, lo, style.convention).shape[0]
    frame_h = max(render.display_rows(rows, vstyle, render.pixel_mm(c.spacing, plane)), 1)
    slices = render.spread(lo, hi, min(max_slices, render.MAX_SPRITE_PX // frame_h))
    over = np.concatenate([_view(c, vstyle, plane, k, "layer") for k in slices])
    anat = np.concatenate([_view(c, vstyle, plane, k, "image") for k in slices])
    h, w = over.shape[0] // len(slices), over.shape[1]
    zoom = finest / style.display_mm  # shown with the static views' pixel size
    h_px, w_px, total = h * zoom, w * zoom, len(slices) * h * zoom
    anat_uri, over_uri = render.image_uri(anat, "jpeg"), render.image_uri(over)
    marks = "".join(f"<span class='lab {side[0]}'>{esc(t)}</span>"
                    for side, t in render.labels(plane, style.convention).items())
    size = f"width:{w_px:.1f}px;height:{total:.1f}px"
    return (f"<div class='viewer' data-h='{h_px:.3f}' data-slices='{slices}'>"
            f"<div><b>{plane}</b></div>"
            f"<div class='tile' style='width:{w_px:.1f}px;height:{h_px:.1f}px'>"
            f"<img class='anat' alt='{plane} anatomy' style='{size}' src='{anat_uri}'>"
            f"<img class='over' alt='{plane} anomaly map' style='{size}' src='{over_uri}'>"
            f"{marks}"
            f"</div><input type='range' aria-label='{plane} slice' min='0' "
            f"max='{len(slices) - 1}' value='{len(slices) // 2}'><span class='pos'></span> "
            f"<label><input type='checkbox' checked> map</label></div>")


def _findings_table(rows: list[Finding], limit: int) -> str:
    def cell(r: Finding) -> list[str]:
        mni = "" if r.centroid_mni is None else esc(r.centroid_mni)
        return [str(r.volume_ml), f"{r.peak:.2f}", f"{r.mean:.2f}", esc(r.centroid_voxel),
                esc(r.centroid_mm), mni, esc(r.hemisphere), esc(r.tissue)]

    shown = rows[:limit]
    body = [[str(i + 1), *cell(r)] for i, r in enumerate(shown)]
    more = (f"<p class='note'>{len(rows) - len(shown)} smaller-peak findings are listed in the "
            f"JSON summary.</p>") if len(rows) > len(shown) else ""
    if not rows:
        return "<p>No component above the calibrated threshold.</p>"
    return table(["#", "volume (mL)", "peak z", "mean z", "centroid (native voxel)",
                  "centroid (scanner mm, RAS)", "centroid (MNI mm)", "hemisphere",
                  "tissue (ICBM152)"], body, sortable=True) + more


def _header(info: dict[str, Any], healthy: list[float]) -> str:
    model, trained = info.get("model", {}), info.get("trained_on", {})
    reg = info.get("registration", {})
    score, thr = float(info["scan_score"]), float(info["scan_threshold"])
    rank = (f"; higher than {100.0 * np.mean(np.asarray(healthy) < score):.0f}% of the "
            f"{len(healthy)} healthy calibration scans") if healthy else ""
    warnings = "; ".join(esc(w) for w in info.get("warnings", [])) or "none"
    rows = [
        ("input", esc(info.get("input", ""))),
        ("created", esc(info.get("created", ""))),
        ("model", f"{esc(model.get('name'))} version {esc(model.get('version'))} "
                  f"({esc(model.get('uri'))})"),
        ("trained on", f"{esc(trained.get('modality'))} scans, {esc(trained.get('space'))}, "
                       f"cohort {esc(trained.get('cohort'))} "
                       f"({esc(trained.get('n_train'))} healthy training scans)"),
        ("verdict", verdict(bool(info["is_abnormal"]))),
        ("scan score", f"{score:.3f} (threshold {thr:.3f}{rank})"),
        ("anomaly map", esc(info.get("heatmap_units", "z-score"))),
        ("voxel threshold", f"z &gt; {float(info['threshold']):.3f}: "
                            f"{esc(info.get('flagged_volume_ml'))} mL flagged"),
        ("registration", f"Dice with the template brain "
                         f"{esc(reg.get('dice_with_template_brain'))}; brain mask "
                         f"{esc(reg.get('brain_mask'))}"),
        ("warnings", warnings),
    ]
    return meta_table(rows) + svg.strip_plot(score, healthy, thr)


def findings_of(info: dict[str, Any], vols: ReportVolumes, rp: ReportParams) -> list[Finding]:
    """The findings of the JSON summary (computed without MNI lookups for older summaries)."""
    if "findings" in info:
        return [Finding.from_json(f) for f in info["findings"]]
    return find_components(vols.heatmap, vols.mask, vols.affine, midline_mm=rp.midline_mm)


def render_scan_report(vols: ReportVolumes, info: dict[str, Any], healthy: list[float],
                       rp: ReportParams, canonical: CanonicalVolumes | None = None) -> str:
    """The report of one scored scan as a self-contained HTML string (``canonical``: the
    volumes already reoriented, when the caller has them)."""
    c = canonical or CanonicalVolumes(vols)
    threshold = float(info["threshold"])
    styles = _styles(c, threshold, rp)
    found = findings_of(info, vols, rp)
    layers = ["image", *[n for n in ("reconstruction", "restoration") if c.get(n) is not None],
              "overlay"]
    heat = c.arrays["heatmap"]
    peak = c.point(found[0].peak_voxel) if found else (
        np.unravel_index(int(np.argmax(heat)), heat.shape) if np.any(heat)
        else tuple(s // 2 for s in c.shape))
    point = (int(peak[0]), int(peak[1]), int(peak[2]))
    lo, hi = styles["overlay"].heat_range
    blocks = [_finding_grid(c, styles, point, layers,
                            "finding 1" if found else "strongest voxel")]
    for n, f in enumerate(found[1:rp.finding_views], start=2):
        blocks.append(f"<h3>Finding {n}: {f.volume_ml} mL, peak z {f.peak:.2f}</h3>"
                      + _finding_grid(c, styles, c.point(f.peak_voxel), ["overlay"],
                                      f"finding {n}"))
    truth_note = (" Green outline: known lesions (ground truth)."
                  if vols.truth is not None else "")
    viewers = "".join(_viewer(c, styles["overlay"], p, rp.viewer_max_slices)
                      for p in render.PLANES) if rp.viewer_max_slices else ""
    name = str(info.get("input", "scan")).replace("\\", "/").rsplit("/", 1)[-1]
    body = f"""<h1>Anomaly report: {esc(name)}</h1>{_header(info, healthy)}
<h2>{"Strongest finding" if found else "No finding: views through the highest score"}</h2>
<p class='note'>Native grid in its closest anatomical orientation (an exact axis permutation,
no resampling); {_CONVENTION[rp.convention]}; sagittal views: anterior on the left. Colour:
{esc(info.get("heatmap_units", "anomaly score"))}, from {lo:.2f} up; cyan outline: the mask at
the calibrated threshold.{truth_note}</p>
{svg.colour_bar(lo, hi, threshold, "z")}{"".join(blocks)}
<h2>Findings ({len(found)})</h2>{_findings_table(found, rp.max_findings)}
<p class='note'>Components of the mask (26-connected), strongest peak first. MNI coordinates,
hemisphere and tissue class come through the scan's affine registration to MNI152 and the
ICBM152 tissue probability maps: approximate locations, not a parcellation.</p>
<h2>Axial montage through the brain</h2>{_montage(c, styles["overlay"], rp.montage_slices)}
{"<h2>Slice viewer</h2>" + viewers if viewers else ""}"""
    return page(f"{name}: anomaly report", body)
