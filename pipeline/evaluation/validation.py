"""The realistic validation set: lesions that look like real pathology, in calibration scans.

Methods are chosen here, never on the test split. Each of the first ``validation.scans``
healthy calibration scans gets one version per kind of :mod:`pipeline.evaluation.realistic`
(MS-like white-matter lesions, a chronic stroke cavity, a tumour with mass effect and
oedema, and atrophy, a negative that must stay quiet), drawn in template space with a seed of
its own, and every calibrated map of the model (the primary map and ``scoring.compare``) is
scored on it exactly as ``score`` computes it before the native grid: raw maps, z-scores
against the healthy calibration statistics, the calibrated threshold, small components
removed. Voxels of the scored brain are pooled per kind and over all lesion kinds; atrophy
gives flagged volume.

The calibration statistics were fitted on these very scans before the lesions went in, so
the healthy tissue around a lesion is judged slightly more leniently than a new scan's
would be: a small optimism shared by every map, which does not change their ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.cohort.store import Manifest, Part, load_template_case
from pipeline.config.schema import Params
from pipeline.evaluation import metrics
from pipeline.evaluation.realistic import KINDS, RealisticCase, realistic_case
from pipeline.modelstore.types import LoadedModel
from pipeline.scoring.maps import (
    calibrated_maps,
    scan_score,
    template_scores,
    threshold_mask,
)
from pipeline.scoring.raw import scored_region
from pipeline.space.grid import voxel_volume_ml

log = logging.getLogger(__name__)

LESIONS = "lesions"     # the pool of every lesion kind
NEGATIVE = "atrophy"    # the kind without lesions: flagged volume only


def realistic_cases(params: Params, manifest: Manifest
                    ) -> Iterator[tuple[str, np.ndarray, RealisticCase]]:
    """(calibration case id, its brain, realistic case) for each kind of
    ``validation.lesions.kinds`` in each of the first ``validation.scans`` calibration scans
    (0: all), each drawn from its own seed."""
    vp = params.validation
    cases = manifest[Part.CALIBRATION]
    cases = cases[:vp.scans] if vp.scans else cases
    spacing = params.template.resolution_mm
    for i, case in enumerate(cases):
        image, brain = load_template_case(params, case.id)
        for kind in vp.lesions.kinds:
            rng = np.random.default_rng([params.seed, i, KINDS.index(kind)])
            yield case.id, brain, realistic_case(image, brain, kind, vp.lesions, rng, spacing)


@dataclass
class ValidationSet:
    """Every calibrated map's metrics on the realistic cases, pooled per kind."""

    loaded: LoadedModel
    params: Params
    pooled: dict[tuple[str, str], metrics.Pooled] = field(default_factory=dict)
    flagged_ml: dict[str, list[float]] = field(default_factory=dict)
    described: list[dict[str, Any]] = field(default_factory=list)
    compare: list[str] = field(init=False)    # the calibrated maps besides the primary one
    voxel_ml: float = field(init=False)       # one template voxel's volume

    def __post_init__(self) -> None:
        thresholds = self.loaded.calibrated().thresholds
        self.compare = [c for c in self.params.scoring.compare if c in thresholds]
        self.voxel_ml = voxel_volume_ml(self.loaded.template.affine)

    def add(self, case_id: str, rc: RealisticCase, brain: np.ndarray) -> None:
        """Score one realistic case with every calibrated map and pool it (a lesion kind
        whose lesions all fell outside the scored brain is left out, with a warning)."""
        calib, sp = self.loaded.calibrated(), self.loaded.params.scoring
        if rc.kind != NEGATIVE and not (rc.truth & scored_region(brain, sp)).any():
            log.warning("%s: its %s lesions lie outside the scored brain: left out", case_id,
                        rc.kind)
            return
        raw = template_scores(self.loaded, rc.image, brain, {*calib.score, *self.compare})
        region = raw.region
        for name, z in calibrated_maps(raw, calib, sp, self.compare).items():
            mask = threshold_mask(z, calib.thresholds[name].threshold, sp.min_component_voxels)
            score = scan_score(z, raw, sp, name == calib.primary)
            pools = [self.pooled.setdefault((k, name), metrics.Pooled())
                     for k in (rc.kind, LESIONS)]
            if rc.kind == NEGATIVE:
                self.flagged_ml.setdefault(name, []).append(float(mask.sum()) * self.voxel_ml)
                for pool in pools:
                    pool.add_healthy(mask[region] > 0, score)
                continue
            found = metrics.lesions_found(mask, rc.truth & region)
            for pool in pools:
                pool.add_lesioned(z[region], rc.truth[region], mask[region] > 0, score, found)
        self.described.append({"case": case_id, "kind": rc.kind, **rc.described})

    def summary(self) -> dict[str, Any]:
        """Per map: each lesion kind's and the pooled lesions' metrics (the pool with its
        95 % bootstrap intervals), and the flagged volume of the atrophy negatives."""
        ev, out = self.params.evaluate, dict[str, Any]()
        for (kind, name), pool in sorted(self.pooled.items()):
            if not pool.scores:
                continue
            row: dict[str, Any] = {k: v for k, v in pool.summary(ev.n_thresholds).items()
                                   if k != "best_dice_threshold"}
            if kind == LESIONS and ev.bootstrap_samples:
                row["ci95"] = pool.intervals(ev.bootstrap_samples, ev.bootstrap_bins,
                                             self.params.seed)
            out.setdefault(name, {})[kind] = row
        for name, volumes in self.flagged_ml.items():
            out.setdefault(name, {})[NEGATIVE] = {
                "flagged_ml_mean": round(float(np.mean(volumes)), 2),
                "flagged_ml_max": round(float(np.max(volumes)), 2), "n_scans": len(volumes)}
        return out


def validate(loaded: LoadedModel, params: Params, manifest: Manifest) -> dict[str, Any]:
    """Score the realistic validation set with every calibrated map; its summary."""
    vs = ValidationSet(loaded, params)
    for case_id, brain, rc in realistic_cases(params, manifest):
        vs.add(case_id, rc, brain)
    calib = loaded.calibrated()
    return {"primary": calib.primary, "n_scans": len({d["case"] for d in vs.described}),
            "kinds": list(params.validation.lesions.kinds), "maps": vs.summary(),
            "cases": vs.described}
