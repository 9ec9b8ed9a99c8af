"""Brain extraction of held-out IXI scans given without their masks, against the IXI masks.

Uses the head atlas that ``prepare`` learned from the training split and scans the
calibration and test subjects (never in the atlas) as ``score`` would: no ``--brain-mask``.
Run after ``vae-anomaly prepare`` with the IXI preset::

    python benchmarks/brain_extraction_ixi.py [--limit N]

Prints per-scan Dice and seconds, then median / min Dice and the median time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import SimpleITK as sitk

from pipeline.cohort.store import Part, load_manifest
from pipeline.config import paths
from pipeline.config.params import load_params
from pipeline.io.nifti import load_mask, load_scan
from pipeline.preprocess import headatlas
from pipeline.preprocess.brainmask import derive_brain_mask
from pipeline.preprocess.prepare import Preprocessor
from pipeline.preprocess.registration import dice
from pipeline.space.grid import to_canonical
from pipeline.space.template import build_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="at most this many scans")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    params = load_params()
    prepared = paths.prepared_dir(params.root)
    atlas = headatlas.read(prepared / paths.HEAD_ATLAS_FILE)
    pre = Preprocessor.of(params, build_template(params.template.resolution_mm,
                                                 params.template.crop_shape), atlas)
    manifest = load_manifest(params)
    cases = [c for part in (Part.CALIBRATION, Part.TEST_HEALTHY) for c in manifest[part]]
    cases = cases[: args.limit] if args.limit else cases
    scores, seconds = [], []
    for case in cases:
        img = load_scan(case.image)
        truth = load_mask(case.mask, img)
        canon, affine, _ = to_canonical(np.asarray(img.dataobj, np.float32), img.affine)
        t0 = time.perf_counter()
        mask, source = derive_brain_mask(canon, affine, pre)
        seconds.append(time.perf_counter() - t0)
        scores.append(dice(mask, to_canonical(truth.astype(np.uint8), img.affine)[0] > 0))
        print(f"{case.id}\t{source}\tDice {scores[-1]:.4f}\t{seconds[-1]:.2f} s", flush=True)
    print(f"n={len(scores)} median Dice {np.median(scores):.4f} min {np.min(scores):.4f} "
          f"median {np.median(seconds):.2f} s/scan (atlas of {atlas.n_scans} training scans)")


if __name__ == "__main__":
    main()
