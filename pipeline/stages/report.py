"""``vae-anomaly report``: an HTML report per evaluated test scan and a cohort index page.

Reads the maps ``evaluate`` wrote to ``data/evaluation/`` and ``reports/metrics.json``; writes
``reports/cases/<stem>.html`` and ``reports/index.html``.
"""

from __future__ import annotations

import html
import json
import logging
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.config import Params
from pipeline.modelio import load_model
from pipeline.nifti import load_mask, load_scan, read_array, stem, write_text
from pipeline.outputs import output_paths
from pipeline.report import render_scan_report
from pipeline.stages.prepare import load_manifest

log = logging.getLogger(__name__)


def _index(metrics: dict[str, Any], rows: list[dict[str, Any]], trained: dict[str, Any]) -> str:
    esc = html.escape
    mrows = "".join(f"<tr><th>{esc(k)}</th><td>{v:.4f}</td></tr>" for k, v in metrics.items()
                    if isinstance(v, float))
    cols = ("voxel_auroc", "voxel_auprc", "best_dice", "dice_at_calibrated_threshold",
            "healthy_voxel_fpr", "scan_auroc", "lesion_detection_rate")
    table = metrics.get("score_types", {})
    srows = "".join(
        f"<tr><th>{esc(name)}{' (primary)' if name == metrics.get('score') else ''}</th>"
        + "".join(f"<td>{row.get(c, float('nan')):.3f}</td>" for c in cols) + "</tr>"
        for name, row in table.items())
    comparison = (f"<h2>Score types and baselines</h2><p>Same test scans, same thresholds "
                  f"policy (healthy calibration scans); <i>intensity</i>, "
                  f"<i>intensity_normative</i> and <i>autoencoder</i> are baselines.</p>"
                  f"<table><tr><th>score</th>{''.join(f'<th>{c}</th>' for c in cols)}</tr>"
                  f"{srows}</table>") if table else ""
    crow = "".join(
        f"<tr><td><a href='cases/{esc(r['stem'])}.html'>{esc(r['case'])}</a></td>"
        f"<td>{esc(r['split'])}</td><td>{r['scan_score']:.3f}</td>"
        f"<td>{'abnormal' if r['is_abnormal'] else 'normal'}</td>"
        f"<td>{r['flagged_volume_ml']}</td></tr>" for r in rows)
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>vae-anomaly cohort report</title><style>body{{font-family:system-ui,sans-serif;margin:24px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style></head><body>
<h1>vae-anomaly: test cohort report</h1>
<p>Model trained on {esc(str(trained.get('modality')))} scans of
{esc(str(trained.get('cohort')))} in {esc(str(trained.get('space')))}.</p>
<h2>Metrics</h2><table>{mrows}</table>
{comparison}
<h2>Test scans</h2><table><tr><th>case</th><th>split</th><th>scan score</th><th>verdict</th>
<th>flagged mL</th></tr>{crow}</table></body></html>"""


def run(params: Params) -> None:
    loaded = load_model(paths.model_dir(params.root))
    healthy = loaded.healthy_scan_scores()
    manifest = load_manifest(params)
    ev = paths.evaluation_dir(params.root)
    out = paths.reports_dir(params.root) / "cases"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    cases = manifest["test_healthy"] + manifest["test_lesion"]
    for case in cases[: params.report.max_cases]:
        s = stem(case["image"])
        p = output_paths(ev, s)
        info = json.loads(p["json"].read_text())
        img = load_scan(case["image"])
        heat = read_array(p["heatmap"])
        mask = read_array(p["mask"], np.uint8)
        rec = read_array(p["reconstruction"])
        truth = load_mask(case["truth"], img) if case["truth"] else None
        page = render_scan_report(np.asarray(img.dataobj), img.affine, heat, mask, rec, info,
                                  healthy, truth)
        write_text(out / f"{s}.html", page)
        rows.append({"stem": s, **info})
    metrics = json.loads((paths.reports_dir(params.root) / "metrics.json").read_text())
    write_text(paths.reports_dir(params.root) / "index.html",
               _index(metrics, rows, loaded.trained_on()))
    log.info("wrote %d case reports and reports/index.html", len(rows))
