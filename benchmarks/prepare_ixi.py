"""Whole-process wall time of ``vae-anomaly prepare`` on the IXI cohort: cold, then cached;
scans per minute and the peak RSS of the largest process.

A throw-away project (this repo's ``configs/`` with ``preset: ixi``) and an empty cache are
made in a temporary folder; ``prepare`` runs once cold (every scan registered) and then
again with nothing changed (every scan restored from the per-scan cache).

Usage:
    python benchmarks/prepare_ixi.py [--cohort ../shared/data/ixi-t1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import peak_rss_mb, publish

REPO = Path(__file__).resolve().parents[1]


def _run(root: Path, env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    subprocess.run(["vae-anomaly", "prepare"], cwd=root, env=env, check=True,
                   capture_output=True)
    seconds = time.perf_counter() - t0
    return seconds, json.loads((root / "reports" / "prepare_qc.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cohort", type=Path, default=REPO.parent / "shared" / "data" / "ixi-t1")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not args.cohort.is_dir():
        print(f"error: cohort folder {args.cohort} not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "configs", root / "configs")
        params = yaml.safe_load((root / "configs" / "params.yaml").read_text())
        params["preset"] = "ixi"
        params["prepare"]["workers"] = args.workers
        (root / "configs" / "params.yaml").write_text(yaml.safe_dump(params))
        preset = yaml.safe_load((root / "configs" / "presets" / "ixi.yaml").read_text())
        preset["cohort"]["folder"] = str(args.cohort.resolve())
        (root / "configs" / "presets" / "ixi.yaml").write_text(yaml.safe_dump(preset))
        env = {**os.environ, "VAE_ANOMALY_ROOT": str(root),
               "VAE_ANOMALY_CACHE": str(root / "cache")}
        cold, qc = _run(root, env)
        warm, qc_warm = _run(root, env)
    publish("prepare_ixi", {
        "cohort": str(args.cohort), "workers": args.workers, "n_scans": qc["n_scans"],
        "n_failed": qc["n_failed"], "cold_s": round(cold, 1), "cached_s": round(warm, 1),
        "cold_scans_per_min": round(60 * qc["n_scans"] / cold, 1),
        "peak_rss_mb_largest_process": peak_rss_mb(children=True),
        "subjects_from_cache": qc_warm["n_cached"],
        "registration_dice_median": qc["registration_dice_median"],
        "registration_dice_min": qc["registration_dice_min"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
