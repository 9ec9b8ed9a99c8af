"""Seconds to render N per-scan HTML reports from an evaluated project, as the report stage does.

Each report: read the scan and its maps from ``data/evaluation/``, draw every view, the
findings and the slice viewer, write the HTML file. Cases are taken in the report stage's
order (cycled when the project has fewer than N).

Usage:
    VAE_ANOMALY_ROOT=<evaluated project> python benchmarks/render_reports.py [--n 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import publish

from pipeline.cohort.store import load_manifest
from pipeline.config import paths
from pipeline.config.params import load_params
from pipeline.io.atomic import write_text
from pipeline.modelstore.loading import load_model
from pipeline.reporting.scan_report import CanonicalVolumes, render_scan_report
from pipeline.scoring.result import ScanSummary
from pipeline.stages.report import case_volumes, report_cases


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    t_start = time.perf_counter()
    params = load_params()
    healthy = load_model(paths.model_dir(params.root)).healthy_scan_scores()
    cases = report_cases(params, load_manifest(params))
    if not cases:
        raise SystemExit("no evaluated cases: run `vae-anomaly evaluate` first")
    seconds, sizes = [], []
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        for n, (case, files) in enumerate(itertools.islice(itertools.cycle(cases), args.n)):
            t = time.perf_counter()
            summary = ScanSummary.from_json(json.loads(files.json.read_text()))
            vols = case_volumes(case.image, files, case.truth)
            page = render_scan_report(CanonicalVolumes(vols), summary, healthy, params.report)
            target = write_text(Path(out) / f"{n}.html", page)
            seconds.append(time.perf_counter() - t)
            sizes.append(target.stat().st_size / 1e6)
        total = time.perf_counter() - t0
    publish("render_reports", {
        "project": str(params.root), "cohort": params.cohort.name, "reports": args.n,
        "distinct_scans": min(len(cases), args.n),
        "grid": list(vols.image.shape), "total_s": round(total, 2),
        "median_s_per_report": round(statistics.median(seconds), 3),
        "max_s_per_report": round(max(seconds), 3),
        "median_mb_per_report": round(statistics.median(sizes), 2),
        "setup_s": round(t0 - t_start, 2)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
