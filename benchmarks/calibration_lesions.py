"""Model and score selection on the calibration split only (no test scan is ever read).

Synthetic lesions (``lesions:`` of the project's parameters, a fixed seed per scan) are
inserted into the template-space healthy calibration scans; every raw score type of
``scoring.compare`` is computed for the healthy and the lesioned copies under a trained model,
each lesioned copy is calibrated against the *other* healthy calibration scans (leave one
out), and the voxels inside the brains are pooled: AUPRC and best Dice per score type and for
combinations of them (the mean of their z-maps, as the primary map is made). This is how the
score types, the primary map and the recipe were chosen (README "Anomaly scores"); it is not
a speed figure.

Usage:
    VAE_ANOMALY_ROOT=<project> python benchmarks/calibration_lesions.py [--model models/trained]
        [--scans 24] [--combine nll+intensity_normative,restoration+intensity_normative]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from typing import Any

import numpy as np
from common import publish

from pipeline.cohort.lesions import insert_lesions
from pipeline.cohort.store import Case, Part, load_manifest, load_template_case
from pipeline.config import paths
from pipeline.config.kinds import KINDS
from pipeline.config.params import load_params
from pipeline.evaluation.metrics import best_dice, curves
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import Calibration
from pipeline.scoring.calibration import NormativeSums
from pipeline.scoring.maps import calibrate_map, postprocess, template_scores
from pipeline.space.template import TEMPLATE_FILE, read_template

SEED = 20261201  # the synthetic lesions of the calibration scans: the same for every model


def _lesioned(image: np.ndarray, brain: np.ndarray, affine: np.ndarray, params: Any,
              i: int) -> tuple[np.ndarray, np.ndarray]:
    out, truth, _ = insert_lesions(image, affine, brain, params.lesions,
                                   np.random.default_rng([SEED, i]))
    return np.where(brain, out, 0.0).astype(np.float32), truth


def _maps(loaded: Any, cases: list[Case], params: Any, affine: np.ndarray
          ) -> tuple[list[Any], list[Any], list[np.ndarray]]:
    kinds = set(params.scoring.compare)
    healthy, lesioned, truths = [], [], []
    for i, case in enumerate(cases):
        image, brain = load_template_case(params, case.id)
        healthy.append(template_scores(loaded, image, brain, kinds))
        sick, truth = _lesioned(image, brain, affine, params, i)
        lesioned.append(template_scores(loaded, sick, brain, kinds))
        truths.append(truth)
    return healthy, lesioned, truths


def _z_maps(healthy: list[Any], lesioned: list[Any], sp: Any) -> dict[str, list[np.ndarray]]:
    """Leave-one-out z-maps of every score type on each lesioned copy."""
    out: dict[str, list[np.ndarray]] = {}
    regions = [h.region for h in healthy]
    for t in lesioned[0].maps:
        sums = (NormativeSums([h.maps[t] for h in healthy], regions) if KINDS[t].normative
                else None)
        for h, sick in zip(healthy, lesioned, strict=True):
            stats = {t: sums.left_out(h.maps[t], h.region, sp)} if sums is not None else {}
            calib = Calibration(score=[t], stats=stats, thresholds={})
            out.setdefault(t, []).append(calibrate_map(sick.maps[t], sick.region, t, calib))
    return out


def _figures(zs: list[np.ndarray], lesioned: list[Any], truths: list[np.ndarray], sp: Any,
             n_thresholds: int) -> dict[str, float]:
    scores = np.concatenate([postprocess(z, s.region, sp)[s.region]
                             for z, s in zip(zs, lesioned, strict=True)])
    labels = np.concatenate([t[s.region] for t, s in zip(truths, lesioned, strict=True)])
    c, _, _ = curves(scores, labels, 0)
    return {"voxel_auprc": round(c["auprc"], 4), "voxel_auroc": round(c["auroc"], 4),
            "best_dice": round(best_dice(scores, labels, n_thresholds)[0], 4)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model folder (default: models/trained)")
    ap.add_argument("--scans", type=int, default=0, help="calibration scans (0 = all)")
    ap.add_argument("--combine", default="", help="comma list of '+'-joined score types")
    args = ap.parse_args()
    params = load_params()
    folder = args.model or str(paths.trained_model_dir(params.root))
    loaded = load_model(folder, require_calibration=False)
    loaded.params = dataclasses.replace(loaded.params, scoring=params.scoring)
    cases = load_manifest(params)[Part.CALIBRATION][: args.scans or None]
    affine = read_template(loaded.folder / TEMPLATE_FILE).affine
    healthy, lesioned, truths = _maps(loaded, cases, params, affine)
    z = _z_maps(healthy, lesioned, params.scoring)
    combos = [c.split("+") for c in args.combine.split(",") if c] or \
        [list(p) for p in itertools.combinations(sorted(z), 2)
         if "intensity_normative" in p and "intensity" not in p]
    table = {t: _figures(z[t], lesioned, truths, params.scoring,
                         params.evaluate.n_thresholds) for t in sorted(z)}
    for combo in combos:
        mean = [np.mean([z[t][i] for t in combo], axis=0) for i in range(len(cases))]
        table["+".join(combo)] = _figures(mean, lesioned, truths, params.scoring,
                                          params.evaluate.n_thresholds)
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["voxel_auprc"]):
        print(f"{name:40s} AUPRC {row['voxel_auprc']:.3f}  best Dice {row['best_dice']:.3f}  "
              f"AUROC {row['voxel_auroc']:.3f}")
    publish("calibration_lesions", {"model": folder, "scans": len(cases),
                                    "lesion_voxels": int(sum(t.sum() for t in truths)),
                                    "score_types": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
