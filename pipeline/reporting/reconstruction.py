"""The cohort page's check that the model reconstructs each brain, not the population mean.

A model whose latent carries nothing reconstructs every subject as the training scans' mean
image: its error is the mean image's. The section shows, for the VAE and the autoencoder
baseline, the held-out reconstruction error inside the brain next to the mean image's (from
``train``'s figures), and a gallery of calibration scans: input, posterior-mean
reconstruction, mean image and |input − reconstruction|, one axial slice through the middle
of the brain each (``templates/reconstruction_section.html.j2``).

Example:
    >>> import numpy as np
    >>> from pipeline.config.output_schema import ReportParams
    >>> rp = ReportParams(convention="radiological", montage_slices=12, finding_views=3,
    ...     max_findings=20, viewer_max_slices=48, display_mm=1.0, heat_range=[0.5, 2.5],
    ...     midline_mm=4.0, gallery_max=48, max_cases=0, reconstruction_scans=3)
    >>> x = np.zeros((20, 24, 20), np.float32); x[4:16, 4:20, 4:16] = 0.8
    >>> row = reconstruction_row("sub-01", x, x * 0.9, x * 0.7, x > 0, np.eye(4), rp)
    >>> len(row.tiles), round(row.mae, 3), round(row.mean_image_mae, 3)
    (4, 0.08, 0.24)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup
from nibabel.affines import voxel_sizes

from pipeline.config.output_schema import ReportParams
from pipeline.reporting import render, svg
from pipeline.reporting.html import Cell, Table, Tile, cells, fragment
from pipeline.space.grid import PLANE_AXIS

COLUMNS = ("input", "reconstruction", "mean image", "|input − reconstruction|")
DIFFERENCE_WINDOW = (0.0, 0.3)  # normalised intensity units (the brain's range is about 0..1)
EPOCH_TICK_STEP = 4  # the epoch axis ends at a multiple of this: whole epochs at quarter ticks
MODELS = (("VAE", ""), ("autoencoder baseline (β = 0)", "_autoencoder"))  # (label, suffix)


@dataclass
class ReconstructionRow:
    case: str
    mae: float               # mean |input − reconstruction| in the brain
    mean_image_mae: float    # mean |input − mean image| in the brain
    tiles: list[Tile]


def reconstruction_row(case: str, image: np.ndarray, reconstruction: np.ndarray,
                       mean_image: np.ndarray, brain: np.ndarray, affine: np.ndarray,
                       rp: ReportParams) -> ReconstructionRow:
    """One gallery row of a template-space (RAS) scan."""
    lo, hi = render.extent(brain, PLANE_AXIS["axial"])
    k, conv = (lo + hi) // 2, rp.convention
    mm = render.pixel_mm(voxel_sizes(affine), "axial")
    grey = render.Style(render.window(image), (0.0, 1.0), rp.display_mm, conv)
    diff = render.Style(DIFFERENCE_WINDOW, (0.0, 1.0), rp.display_mm, conv)
    error = np.abs(image - reconstruction) * brain
    tiles = [Tile(render.image_uri(render.grey(render.display_slice(v, "axial", k, conv),
                                               style, mm)),
                  render.labels("axial", conv), f"{case}: {label}", label)
             for v, style, label in zip((image, reconstruction, mean_image, error),
                                        (grey, grey, grey, diff), COLUMNS, strict=True)]
    inside = brain.astype(bool)
    return ReconstructionRow(case, float(error[inside].mean()),
                             float(np.abs(image - mean_image)[inside].mean()), tiles)


def _errors_table(training: dict[str, dict[str, Any]]) -> Table:
    table = Table(["model", "reconstruction MAE", "mean image MAE", "ratio", "best epoch"])
    for label, suffix in MODELS:
        m = training.get(suffix, {})
        if "val_mae" not in m:
            continue
        table.rows.append([Cell(label, cls="name"), *cells(
            f"{m['val_mae']:.4f}", f"{m['val_mean_image_mae']:.4f}",
            f"{m['val_mae_ratio']:.3f}", m.get("best_epoch", ""))])
    return table


def _per_epoch(curves: dict[str, list[list[float]]]) -> Markup:
    """Reconstruction MAE against the mean image's, per epoch, for each trained model."""
    lines = [(f"{label}: {what}", curves[suffix][0], curves[suffix][column])
             for label, suffix in MODELS if suffix in curves
             for what, column in (("reconstruction", 1), ("mean image", 2))]
    if not lines:
        return Markup("")
    top = max(max(v) for _, _, v in lines)
    # whole epochs at the grid's quarter ticks
    last = EPOCH_TICK_STEP * math.ceil(max(max(e) for _, e, _ in lines) / EPOCH_TICK_STEP)
    return svg.line_chart(lines, "epoch", "MAE in the brain", size=360,
                          x_range=(0.0, float(last)), y_range=(0.0, float(top) * 1.05))


def reconstruction_section(rows: list[ReconstructionRow], training: dict[str, dict[str, Any]],
                           curves: dict[str, list[list[float]]]
                           ) -> Markup:
    """The section's markup; ``training`` maps a model's report suffix ("" for the VAE) to
    its ``train`` figures (``reports/train*_metrics.json``), ``curves`` to its epochs, MAE
    and mean image MAE (``reports/plots/train*.csv``)."""
    return fragment("reconstruction_section.html.j2", errors=_errors_table(training),
                    rows=rows, columns=COLUMNS, chart=_per_epoch(curves))
