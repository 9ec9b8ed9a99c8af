"""``vae-anomaly score`` end to end: one scan as a whole process, per step, and batches.

- ``single SCAN``: whole-process wall time of ``vae-anomaly score SCAN`` (imports, model
  load, preparation, model, inverse mapping, writing; with and without the HTML report),
  median of ``--runs`` after a warm-up run, with the process's peak RSS; then one in-process
  run timed step by step (imports, model load, load, brain mask, bias field, registration,
  resampling + normalisation, model + native mapping, writing, report).
- ``batch SCAN... [--list FILE]``: whole-process wall time of one ``vae-anomaly score`` over
  the first ``--n`` scans, once per ``--workers`` value: scans/min, seconds per scan, peak
  RSS of the largest process.

Every run writes into a fresh temporary folder. ``--device`` and ``--model`` are passed on.

Usage:
    python benchmarks/score_cli.py single SCAN.nii.gz [--model M] [--runs 5]
    python benchmarks/score_cli.py batch --list scans.txt --n 100 --workers 0,1 [--no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import publish

STEPS = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import torch  # noqa: F401
from pipeline.inference.options import ScoreOptions
from pipeline.inference.scorer import Scorer
from pipeline.modelstore.loading import model_for_command
from pipeline.reporting.scan_report import render_result
from pipeline.scoring.outputs import scan_outputs
t1 = time.perf_counter()
scan, model, device, out = Path(sys.argv[1]), sys.argv[2] or None, sys.argv[3], sys.argv[4]
runs = {sub: ScoreOptions(out=Path(out, sub), report=sub == "b") for sub in ("a", "b")}
loaded = model_for_command(model, device, tuple(o.out for o in runs.values()))
scorer = Scorer(loaded, render=render_result)
t2 = time.perf_counter()
got = loaded.preprocessor.prepare_file(scan, None)
steps = {"imports": t1 - t0, "model_load": t2 - t1, **got.timings}
t3 = time.perf_counter()
case = scorer.score_case(scan, got, scan_outputs(runs["a"].out, "scan"), runs["a"])
steps["model_and_mapping"] = case.summary.timings_s["model_and_mapping"]
steps["write_outputs"] = time.perf_counter() - t3 - steps["model_and_mapping"]
case = scorer.score_case(scan, got, scan_outputs(runs["b"].out, "scan"), runs["b"])
steps["report"] = case.summary.timings_s["report"]
print(json.dumps({k: round(v, 3) for k, v in steps.items()}))
"""


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: nothing blocks on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 1):
            err.seek(0)
            raise SystemExit(f"error: {' '.join(cmd[:3])}...: exit {proc.returncode}: "
                             f"{err.read().decode(errors='replace')[-500:]}")
    return seconds, round(usage.ru_maxrss / 1024, 1)


def _score(scans: list[str], args: argparse.Namespace, out: str, extra: list[str]) -> list[str]:
    cmd = ["vae-anomaly", "score", *scans, "--out", out, "--device", args.device, *extra]
    return [*cmd, "--model", args.model] if args.model else cmd


def single(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"scan": args.scan}
    for label, extra in (("no_report", ["--no-report"]), ("with_report", [])):
        runs = []
        for _ in range(args.runs + 1):  # the first is a warm-up (file cache)
            with tempfile.TemporaryDirectory() as out:
                runs.append(_run(_score([args.scan], args, out, extra)))
        wall = [w for w, _ in runs[1:]]
        result[label] = {"median_s": round(statistics.median(wall), 2),
                         "min_s": round(min(wall), 2), "max_s": round(max(wall), 2),
                         "peak_rss_mb": max(r for _, r in runs[1:])}
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", STEPS, args.scan, args.model or "",
                               args.device, out], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"error: the step-by-step run failed: {done.stderr[-2000:]}")
    result["steps_s"] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def batch(args: argparse.Namespace) -> dict[str, Any]:
    scans = list(args.scans)
    if args.list:
        scans += Path(args.list).read_text().split()
    scans = scans[: args.n]
    rows = {}
    for workers in args.workers.split(","):
        with tempfile.TemporaryDirectory() as out:
            extra = ["--workers", workers] + (["--no-report"] if args.no_report else [])
            seconds, rss = _run(_score(scans, args, out, extra))
            counts = json.loads((Path(out) / "manifest.json").read_text())["counts"]
        rows[workers] = {"seconds": round(seconds, 1), "scans_per_min": round(
            60 * len(scans) / seconds, 1), "s_per_scan": round(seconds / len(scans), 2),
            "peak_rss_mb_largest_process": rss, "counts": counts}
        print(workers, rows[workers], flush=True)
    return {"n_scans": len(scans), "report": not args.no_report, "by_workers": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("single")
    one.add_argument("scan")
    one.add_argument("--runs", type=int, default=5)
    many = sub.add_parser("batch")
    many.add_argument("scans", nargs="*")
    many.add_argument("--list", help="a file of scan paths (whitespace-separated)")
    many.add_argument("--n", type=int, default=100)
    many.add_argument("--workers", default="0,1")
    many.add_argument("--no-report", action="store_true")
    for p in (one, many):
        p.add_argument("--model", default=None, help="default: the project's champion")
        p.add_argument("--device", default="auto")
    args = ap.parse_args()
    result = single(args) if args.mode == "single" else batch(args)
    publish(f"score_{args.mode}", {"device": args.device, "model": args.model, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
