"""Whole-process wall time of ``vae-anomaly score`` on one scan.

Usage:
    python benchmarks/score_cli.py SCAN.nii.gz [--model models/vae] [--runs 5] [--no-report]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scan", type=Path)
    ap.add_argument("--model", default="models/vae")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    times = []
    for _ in range(args.runs + 1):  # first run is a warm-up (file cache)
        with tempfile.TemporaryDirectory() as out:
            cmd = ["vae-anomaly", "score", str(args.scan), "--out", out, "--model", args.model]
            if args.no_report:
                cmd.append("--no-report")
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    publish("score_cli", {
        "scan": str(args.scan), "report": not args.no_report, "runs": args.runs,
        "median_s": statistics.median(times[1:]), "min_s": min(times[1:]),
        "max_s": max(times[1:])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
