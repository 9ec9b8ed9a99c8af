"""Site robustness on the calibration split only (no test scan is ever read).

The healthy calibration scans are cut in two halves: the first calibrates the model (voxel
statistics, thresholds and domain ranges, exactly as ``calibrate`` does), the second is
scored from its native files as it is and as every variant of ``evaluate.sites`` (healthy,
and with synthetic lesions inserted natively, a fixed seed per scan). Per variant: flagged mL
per healthy scan (all and in the outer rim), scans called abnormal / out of distribution,
and the lesioned copies' AUPRC and best Dice. This is how ``train.site`` and
``prepare.harmonise`` were chosen for the ixi preset (README "Other scanners and sites").

Usage:
    VAE_ANOMALY_ROOT=<project> python benchmarks/calibration_sites.py [--model models/vae]
        [--scans 12] [--name calibration_sites]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import publish

from pipeline.cohort.lesions import insert_lesions
from pipeline.cohort.store import Case, Part, load_manifest, load_template_case
from pipeline.config import paths
from pipeline.config.params import load_params
from pipeline.evaluation.site_study import UNMODIFIED, VariantOutcomes
from pipeline.evaluation.sites import SiteScan, make_variant
from pipeline.io.errors import ScanError, one_line
from pipeline.io.nifti import load_mask, load_scan
from pipeline.modelstore.loading import load_model
from pipeline.scoring.calibration import fit_calibration, healthy_raw_scores

SEED = 20261201  # the synthetic lesions of the calibration scans: the same for every model


def _calibrated(model: Path, params: Any, cases: list[Case]) -> Any:
    loaded = load_model(model, require_calibration=False)
    sp = params.scoring
    pairs = (load_template_case(params, c.id) for c in cases)
    raws = healthy_raw_scores(loaded, pairs, {*sp.score})
    loaded.calibration = fit_calibration(raws, sp, params.calibrate)
    return loaded


def _scans(case: Case, params: Any, i: int) -> tuple[SiteScan, SiteScan]:
    img = load_scan(case.image)
    mask = load_mask(case.mask, img)
    data, truth, _ = insert_lesions(np.asarray(img.dataobj), img.affine, mask, params.lesions,
                                    np.random.default_rng([SEED, i]))
    sick = type(img)(data.astype(np.float32), img.affine, img.header)
    return SiteScan(img, mask, None), SiteScan(sick, mask, truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--scans", type=int, default=12, help="scored calibration scans")
    ap.add_argument("--name", default="calibration_sites", help="result file name")
    args = ap.parse_args()
    params = load_params()
    cases = load_manifest(params)[Part.CALIBRATION]
    half = len(cases) - min(args.scans, len(cases) // 2)
    loaded = _calibrated(args.model or paths.model_dir(params.root), params, cases[:half])
    scored = [_scans(c, params, i) for i, c in enumerate(cases[half:])]
    ev = params.evaluate
    table = {}
    for name in [UNMODIFIED, *ev.sites.variants]:
        acc = VariantOutcomes()
        for pair in scored:
            for scan in pair:
                try:
                    acc.add(loaded, scan if name == UNMODIFIED else
                            make_variant(name, scan, ev.sites), ev.rim_mm)
                except ScanError as exc:
                    acc.failed.append(one_line(exc))
        row = acc.summary(ev.n_thresholds)
        row.pop("healthy_scans", None)
        table[name] = row
        print(name, {k: v for k, v in row.items() if k != "failed"}, flush=True)
    publish(args.name, {"model": str(args.model), "calibrated_on": half,
                        "scored": len(scored), "variants": table})


if __name__ == "__main__":
    main()
