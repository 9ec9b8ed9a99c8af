"""``vae-anomaly report``: an HTML report per evaluated scan and the cohort page.

Reads the maps ``evaluate`` wrote to ``data/evaluation/`` and ``reports/metrics.json``; writes
``reports/cases/<stem>.html`` (healthy and lesioned test scans, then the real lesion cases of
``evaluate.extra_cases``, with known lesions outlined) and ``reports/index.html`` (with the
``generative`` stage's samples, interpolation, imputation and log-likelihood figures).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
from markupsafe import Markup

from pipeline.cohort.store import (
    EXTRA,
    Case,
    Manifest,
    Part,
    load_images,
    load_manifest,
    load_template_case,
)
from pipeline.config import paths
from pipeline.config.schema import Params
from pipeline.generative.sampling import decode_mean, encode_mean
from pipeline.io.atomic import write_text
from pipeline.io.nifti import load_mask, load_scan, read_array, stem
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import LoadedModel
from pipeline.reporting.cohort_page import (
    CaseRow,
    gallery_tile,
    read_columns,
    read_curve,
    render_index,
)
from pipeline.reporting.generative_section import generative_section
from pipeline.reporting.html import Tile
from pipeline.reporting.reconstruction import MODELS, reconstruction_row, reconstruction_section
from pipeline.reporting.scan_report import CanonicalVolumes, ReportVolumes, render_scan_report
from pipeline.scoring.outputs import ScanOutputs, extra_stem, scan_outputs
from pipeline.scoring.result import ScanSummary

log = logging.getLogger(__name__)
PREVIEWS = ("samples", "interpolation")  # the generative stage's PNGs on the cohort page


def case_volumes(image: str, files: ScanOutputs, truth: str) -> ReportVolumes:
    """The volumes of a scored case's report (``truth``: its lesion mask, ``""``: none)."""
    img = load_scan(image)
    optional = {k: read_array(files.image(k)) if files.image(k).is_file() else None
                for k in ("reconstruction", "restoration")}
    return ReportVolumes(np.asarray(img.dataobj), img.affine, read_array(files.heatmap),
                         read_array(files.mask, np.uint8), optional["reconstruction"],
                         optional["restoration"], load_mask(truth, img) if truth else None)


def report_cases(params: Params, manifest: Manifest) -> list[tuple[Case, ScanOutputs]]:
    """Every scan evaluate scored (the test cases, then the real lesion cases) with its
    outputs in ``data/evaluation``."""
    ev = paths.evaluation_dir(params.root)
    out = [(c, scan_outputs(ev, stem(c.image)))
           for part in (Part.TEST_HEALTHY, Part.TEST_LESION) for c in manifest[part]]
    if params.report.max_cases:
        out = out[: params.report.max_cases]
    for c in params.evaluate.extra_cases:
        files = scan_outputs(ev, extra_stem(c.name))
        if files.json.is_file():
            info = json.loads(files.json.read_text())
            truth = info.get("truth")
            out.append((Case(c.name, "", EXTRA, str(paths.resolve(info["input"], params.root)),
                             truth=str(paths.resolve(truth, params.root)) if truth else ""),
                        files))
    return out


def _generative(params: Params, metrics: dict[str, Any]) -> Markup:
    """The cohort page's generative section from the ``generative`` stage's outputs."""
    summary = paths.reports_dir(params.root) / "generative.json"
    gen = json.loads(summary.read_text()) if summary.is_file() else None
    folder = paths.generative_dir(params.root)
    images = {name: (folder / f"{name}.png").read_bytes()
              for name in PREVIEWS if (folder / f"{name}.png").is_file()}
    return generative_section(gen, metrics, images)


def _reconstructions(params: Params, manifest: Manifest, loaded: LoadedModel) -> Markup:
    """The cohort page's reconstruction section: the training figures of the VAE and the
    autoencoder, and a gallery of calibration scans with the model's reconstructions."""
    mean = load_images(params, manifest[Part.TRAIN])[:, 0].mean(0)
    affine = loaded.template.affine
    rows = []
    for case in manifest[Part.CALIBRATION][: params.report.reconstruction_scans]:
        image, brain = load_template_case(params, case.id)
        x = torch.from_numpy(image)
        rec = decode_mean(loaded.vae, encode_mean(loaded.vae, x)[None])[0].numpy()
        rows.append(reconstruction_row(case.id, image, rec, mean, brain, affine,
                                       params.report))
    reports = paths.reports_dir(params.root)
    training = {suffix: json.loads(f.read_text()) for _, suffix in MODELS
                if (f := reports / f"train{suffix}_metrics.json").is_file()}
    curves = {suffix: read_columns(reports / "plots" / f"train{suffix}.csv", "epoch", "val_mae",
                                   "val_mean_image_mae")
              for suffix in training if "val_mae" in training[suffix]}
    return reconstruction_section(rows, training, curves)


def run(params: Params) -> None:
    loaded = load_model(paths.model_dir(params.root))
    healthy = loaded.healthy_scan_scores()
    rp = params.report
    reports = paths.reports_dir(params.root)
    out = reports / "cases"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[CaseRow] = []
    gallery: list[Tile] = []
    extra_links: dict[str, str] = {}
    manifest = load_manifest(params)
    for case, files in report_cases(params, manifest):
        summary = ScanSummary.from_json(json.loads(files.json.read_text()))
        canonical = CanonicalVolumes(case_volumes(case.image, files, case.truth))
        write_text(out / f"{files.name}.html",
                   render_scan_report(canonical, summary, healthy, rp))
        link = f"cases/{files.name}.html"
        rows.append(CaseRow(case.id, case.split, summary.scan_score,
                            summary.verdict, summary.flagged_volume_ml,
                            len(summary.findings),
                            max((f.peak for f in summary.findings), default=0.0), link))
        if case.split == EXTRA:
            extra_links[case.id] = link
        if case.split == Part.TEST_HEALTHY and len(gallery) < rp.gallery_max:
            caption = f"{case.id}: {summary.flagged_volume_ml:.2f} mL"
            gallery.append(gallery_tile(canonical, summary.threshold, rp, caption, link))
    metrics = json.loads((reports / "metrics.json").read_text())
    validation = json.loads((reports / "validation.json").read_text())
    curves = {"roc": read_curve(reports / "plots" / "roc.csv", "fpr", "tpr"),
              "pr": read_curve(reports / "plots" / "pr.csv", "recall", "precision")}
    sections = _reconstructions(params, manifest, loaded) + _generative(params, metrics)
    write_text(reports / "index.html",
               render_index(metrics, rows, loaded.trained_on(), curves, gallery, extra_links,
                            sections, validation))
    log.info("wrote %d case reports and reports/index.html", len(rows))
