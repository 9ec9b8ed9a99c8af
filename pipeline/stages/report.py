"""``vae-anomaly report``: an HTML report per evaluated scan and the cohort page.

Reads the maps ``evaluate`` wrote to ``data/evaluation/`` and ``reports/metrics.json``; writes
``reports/cases/<stem>.html`` (healthy and lesioned test scans, then the real lesion cases of
``evaluate.extra_cases``, with known lesions outlined) and ``reports/index.html`` (with the
``generative`` stage's samples, interpolation, imputation and log-likelihood figures).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.config import Params
from pipeline.dashboard import CaseRow, gallery_tile, read_curve, render_index
from pipeline.modelio import load_model
from pipeline.nifti import load_mask, load_scan, read_array, stem, write_text
from pipeline.outputs import extra_stem, output_paths
from pipeline.report import CanonicalVolumes, ReportVolumes, findings_of, render_scan_report
from pipeline.stages.prepare import load_manifest

log = logging.getLogger(__name__)


def _volumes(image: str, files: dict[str, Path], truth: str | None) -> ReportVolumes:
    img = load_scan(image)
    optional = {k: read_array(files[k]) if files[k].is_file() else None
                for k in ("reconstruction", "restoration")}
    return ReportVolumes(np.asarray(img.dataobj), img.affine, read_array(files["heatmap"]),
                         read_array(files["mask"], np.uint8), optional["reconstruction"],
                         optional["restoration"], load_mask(truth, img) if truth else None)


def _cases(params: Params) -> list[dict[str, Any]]:
    """(name, split, image, truth, evaluation stem) of every scan evaluate scored."""
    manifest = load_manifest(params)
    out = [{"name": c["id"], "split": part, "image": c["image"], "truth": c["truth"],
            "stem": stem(c["image"])}
           for part in ("test_healthy", "test_lesion") for c in manifest[part]]
    if params.report.max_cases:
        out = out[: params.report.max_cases]
    ev = paths.evaluation_dir(params.root)
    for c in params.evaluate.extra_cases:
        info_file = output_paths(ev, extra_stem(c.name))["json"]
        if info_file.is_file():
            info = json.loads(info_file.read_text())
            out.append({"name": c.name, "split": "extra", "image": info["input"],
                        "truth": info.get("truth"), "stem": extra_stem(c.name)})
    return out


def _generative(params: Params, metrics: dict[str, Any]) -> str:
    """The cohort page's generative section from the ``generative`` stage's outputs."""
    from pipeline.gendashboard import generative_section

    summary = paths.reports_dir(params.root) / "generative.json"
    gen = json.loads(summary.read_text()) if summary.is_file() else None
    folder = paths.generative_dir(params.root)
    images = {name: (folder / f"{name}.png").read_bytes()
              for name in ("samples", "interpolation") if (folder / f"{name}.png").is_file()}
    return generative_section(gen, metrics, images)


def run(params: Params) -> None:
    loaded = load_model(paths.model_dir(params.root))
    healthy = loaded.healthy_scan_scores()
    rp = params.report
    ev = paths.evaluation_dir(params.root)
    reports = paths.reports_dir(params.root)
    out = reports / "cases"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[CaseRow] = []
    gallery: list[str] = []
    extra_links: dict[str, str] = {}
    for case in _cases(params):
        files = output_paths(ev, case["stem"])
        info = json.loads(files["json"].read_text())
        vols = _volumes(case["image"], files, case["truth"])
        found = findings_of(info, vols, rp)  # computed here once for older summaries
        info = {**info, "findings": [f.to_json() for f in found]}
        canonical = CanonicalVolumes(vols)
        write_text(out / f"{case['stem']}.html",
                   render_scan_report(vols, info, healthy, rp, canonical))
        link = f"cases/{case['stem']}.html"
        rows.append(CaseRow(case["name"], case["split"], float(info["scan_score"]),
                            bool(info["is_abnormal"]), float(info["flagged_volume_ml"]),
                            len(found), max((f.peak for f in found), default=0.0), link))
        if case["split"] == "extra":
            extra_links[case["name"]] = link
        if case["split"] == "test_healthy" and len(gallery) < rp.gallery_max:
            caption = f"{case['name']}: {float(info['flagged_volume_ml']):.2f} mL"
            gallery.append(gallery_tile(canonical, float(info["threshold"]), rp, caption,
                                        link))
    metrics = json.loads((reports / "metrics.json").read_text())
    curves = {"roc": read_curve(reports / "plots" / "roc.csv", "fpr", "tpr"),
              "pr": read_curve(reports / "plots" / "pr.csv", "recall", "precision")}
    write_text(reports / "index.html",
               render_index(metrics, rows, loaded.trained_on(), curves, gallery, extra_links,
                            _generative(params, metrics)))
    log.info("wrote %d case reports and reports/index.html", len(rows))
