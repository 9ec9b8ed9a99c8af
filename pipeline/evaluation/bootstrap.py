"""95 % bootstrap intervals over scans for the evaluation's headline metrics.

Scans, not voxels, are the independent units: a replicate draws the lesioned test scans (and,
for the scan-level AUROC, the healthy ones) with replacement and recomputes the voxel AUPRC,
the best Dice, the Dice at the calibrated threshold and the scan AUROC from what each drawn
scan contributes. To keep a thousand replicates cheap, each lesioned scan is summarised once
as histograms of its lesion and healthy voxels' scores on bins shared by all scans (quantiles
of the pooled scores, log-spaced towards the top) plus its counts at the calibrated
threshold; a replicate's AUPRC and best Dice are therefore computed at bin resolution (on
synthetic scores within 0.001 of the exact values with 2048 bins), while the reported point
estimates stay the exact ones.

Example:
    >>> rng = np.random.default_rng(0)
    >>> scores = [rng.random(500) + 0.5 * (np.arange(500) < 50) for _ in range(6)]
    >>> labels = [np.arange(500) < 50 for _ in range(6)]
    >>> ci = intervals(scores, labels, [s > 1.0 for s in scores], healthy_scan=[0.1, 0.2, 0.3],
    ...                lesion_scan=[0.5, 0.6, 0.9, 0.25, 0.7, 0.8], samples=200, bins=256, seed=0)
    >>> sorted(ci), all(lo <= hi for lo, hi in ci.values())
    (['best_dice', 'dice_at_calibrated_threshold', 'scan_auroc', 'voxel_auprc'], True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LEVEL = 0.95  # the interval's coverage


def _histograms(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray], bins: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-scan counts of lesion (``pos``) and healthy (``neg``) voxels per score bin, the
    bins running from the highest scores down."""
    pooled = np.concatenate(scores)
    # fine where lesions are, in the upper tail: the share of voxels above an edge runs
    # log-spaced from one voxel to all of them
    above = np.logspace(np.log10(1.0 / pooled.size), 0.0, bins)
    edges = np.unique(np.quantile(pooled, 1.0 - above))
    pos = np.zeros((len(scores), len(edges) + 1), np.int64)
    neg = np.zeros_like(pos)
    for i, (s, y) in enumerate(zip(scores, labels, strict=True)):
        idx = len(edges) - np.searchsorted(edges, s, side="right")  # 0 = highest bin
        pos[i] = np.bincount(idx[y], minlength=pos.shape[1])
        neg[i] = np.bincount(idx[~y], minlength=pos.shape[1])
    return pos, neg


def _auprc(pos: np.ndarray, neg: np.ndarray) -> float:
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    total = tp[-1]
    if total == 0:
        return float("nan")
    precision = tp / np.maximum(tp + fp, 1)
    return float(np.sum(np.diff(np.r_[0, tp]) / total * precision))


def _best_dice(pos: np.ndarray, neg: np.ndarray) -> float:
    tp, flagged = np.cumsum(pos), np.cumsum(pos + neg)
    return float(np.max(2.0 * tp / np.maximum(flagged + tp[-1], 1)))


def _scan_auroc(healthy: np.ndarray, lesioned: np.ndarray) -> float:
    if healthy.size == 0 or lesioned.size == 0:
        return float("nan")
    greater = (lesioned[:, None] > healthy[None, :]).mean()
    ties = (lesioned[:, None] == healthy[None, :]).mean()
    return float(greater + 0.5 * ties)


def intervals(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray],
              preds: Sequence[np.ndarray], healthy_scan: Sequence[float],
              lesion_scan: Sequence[float], samples: int, bins: int, seed: int
              ) -> dict[str, list[float]]:
    """``[low, high]`` of each metric over ``samples`` replicates (per lesioned scan: its
    voxel ``scores``, ``labels`` and calibrated ``preds``; the scan scores of the healthy and
    the lesioned test scans)."""
    labels = [np.asarray(y, bool) for y in labels]
    pos, neg = _histograms(scores, labels, bins)
    tp = np.array([int((p & y).sum()) for p, y in zip(preds, labels, strict=True)])
    flagged = np.array([int(np.asarray(p, bool).sum()) for p in preds])
    truth = np.array([int(y.sum()) for y in labels])
    healthy, lesioned = np.asarray(healthy_scan, float), np.asarray(lesion_scan, float)
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {k: [] for k in ("voxel_auprc", "best_dice",
                                                   "dice_at_calibrated_threshold",
                                                   "scan_auroc")}
    n = len(scores)
    for _ in range(samples):
        w = np.bincount(rng.integers(n, size=n), minlength=n)
        p, q = w @ pos, w @ neg
        out["voxel_auprc"].append(_auprc(p, q))
        out["best_dice"].append(_best_dice(p, q))
        out["dice_at_calibrated_threshold"].append(
            2.0 * float(w @ tp) / max(float(w @ (flagged + truth)), 1.0))
        drawn_healthy = healthy[rng.integers(healthy.size, size=healthy.size)]
        out["scan_auroc"].append(_scan_auroc(drawn_healthy, np.repeat(lesioned, w)))
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    return {k: [round(float(np.nanpercentile(v, tail)), 4),
                round(float(np.nanpercentile(v, 100.0 - tail)), 4)] for k, v in out.items()}
