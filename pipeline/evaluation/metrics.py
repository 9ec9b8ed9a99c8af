"""Segmentation and detection metrics over pooled voxels and over scans.

Example:
    >>> import numpy as np
    >>> round(dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool)), 3)
    0.667
"""

from __future__ import annotations

from typing import Any

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def best_dice(scores: np.ndarray, labels: np.ndarray, n_thresholds: int
              ) -> tuple[float, float]:
    """Best pooled Dice over ``n_thresholds`` thresholds in the upper tail of the scores.

    Thresholds are score quantiles flagging from 1e-5 to 50 % of voxels (log-spaced).
    Returns ``(best dice, its threshold)``.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    tp_cum = np.cumsum(labels[order])
    positives = int(labels.sum())
    fractions = np.logspace(-5, np.log10(0.5), n_thresholds)
    best, best_t = 0.0, float(sorted_scores[0]) if scores.size else 0.0
    for frac in fractions:
        k = max(1, round(frac * scores.size))
        t = sorted_scores[k - 1]
        k = int(np.searchsorted(-sorted_scores, -t, side="right"))  # all ties included
        tp = int(tp_cum[k - 1])
        d = 2.0 * tp / (k + positives) if k + positives else 0.0
        if d > best:
            best, best_t = d, float(t)
    return best, best_t


def curves(scores: np.ndarray, labels: np.ndarray, points: int
           ) -> tuple[dict[str, float], list[dict[str, float]], list[dict[str, float]]]:
    """AUROC, AUPRC and downsampled ROC / PR curves of pooled voxel scores."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    if labels.all() or not labels.any():
        return {"auroc": float("nan"), "auprc": float("nan")}, [], []
    auroc = float(roc_auc_score(labels, scores))
    auprc = float(average_precision_score(labels, scores))
    if points <= 0:  # the areas only: no curves to keep
        return {"auroc": auroc, "auprc": auprc}, [], []
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    roc = [{"fpr": float(a), "tpr": float(b)} for a, b in _thin(fpr, tpr, points)]
    pr = [{"recall": float(a), "precision": float(b)} for a, b in _thin(recall, precision, points)]
    return {"auroc": auroc, "auprc": auprc}, roc, pr


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> list[tuple[float, float]]:
    """About ``points`` points of the curve (x, y), evenly spaced along its length (both axes
    span [0, 1]), the end points kept: a steep stretch keeps as many points as a flat one.
    Thinning by index instead drops whole stretches where few thresholds change the curve
    (the PR curve's start, at low recall, in the demo: a drawn area 5x the AUPRC)."""
    if len(x) <= points:
        return [(float(a), float(b)) for a, b in zip(x, y, strict=True)]
    along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    marks = np.linspace(0.0, along[-1], points)
    idx = np.unique(np.concatenate([[0, len(x) - 1],
                                    np.searchsorted(along, marks).clip(0, len(x) - 1)]))
    return [(float(x[i]), float(y[i])) for i in idx]


def scan_auroc(healthy: list[float], abnormal: list[float]) -> float:
    if not healthy or not abnormal:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(healthy)), np.ones(len(abnormal))]
    return float(roc_auc_score(labels, np.r_[healthy, abnormal]))


def lesions_found(mask: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(found, total) lesions: connected components of ``truth`` (26-connected) that the
    binary ``mask`` overlaps."""
    from scipy import ndimage

    labels, n = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    if n == 0:
        return 0, 0
    hit = np.unique(labels[(labels > 0) & mask.astype(bool)])
    return int(hit.size), int(n)


class Pooled:
    """Voxel scores and masks pooled over scans, summarised into the evaluation metrics.

    Example:
        >>> p = Pooled()
        >>> p.add_healthy(np.array([0, 0], bool), 0.3)
        >>> p.add_lesioned(np.array([0.1, 0.9]), np.array([0, 1], bool),
        ...                np.array([False, True]), 2.0, (1, 1))
        >>> p.summary(10)["dice_at_calibrated_threshold"]
        1.0
    """

    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.preds: list[np.ndarray] = []
        self.healthy_scan: list[float] = []
        self.lesion_scan: list[float] = []
        self.flagged = self.healthy_voxels = 0
        self.found = self.lesions = self.scans_detected = 0
        self.roc: list[dict[str, float]] = []
        self.pr: list[dict[str, float]] = []

    def add_healthy(self, pred: np.ndarray, scan_score: float) -> None:
        """A healthy scan's brain voxels: its flagged voxels are false positives."""
        self.healthy_scan.append(scan_score)
        self.flagged += int(pred.sum())
        self.healthy_voxels += int(pred.size)

    def add_lesioned(self, scores: np.ndarray, labels: np.ndarray, pred: np.ndarray,
                     scan_score: float, found: tuple[int, int]) -> None:
        """A lesioned scan's brain voxels with truth; ``found`` from :func:`lesions_found`."""
        self.scores.append(np.asarray(scores, np.float32))
        self.labels.append(np.asarray(labels, bool))
        self.preds.append(np.asarray(pred, bool))
        self.lesion_scan.append(scan_score)
        self.found += found[0]
        self.lesions += found[1]
        self.scans_detected += int(found[0] > 0)

    def summary(self, n_thresholds: int, curve_points: int = 0
                ) -> dict[str, float | int | None]:
        s, y = np.concatenate(self.scores), np.concatenate(self.labels)
        c, self.roc, self.pr = curves(s, y, curve_points)
        best, best_t = best_dice(s, y, n_thresholds)
        nan = float("nan")
        return {
            "voxel_auroc": c["auroc"], "voxel_auprc": c["auprc"],
            "best_dice": best, "best_dice_threshold": best_t,
            "dice_at_calibrated_threshold": dice(np.concatenate(self.preds), y),
            "healthy_voxel_fpr": self.flagged / self.healthy_voxels if self.healthy_voxels
            else nan,
            "scan_auroc": scan_auroc(self.healthy_scan, self.lesion_scan),
            "lesion_detection_rate": self.found / self.lesions if self.lesions else nan,
            "lesioned_scans_with_detection": self.scans_detected / max(len(self.lesion_scan), 1),
            "n_lesions": self.lesions,
        }

    def intervals(self, samples: int, bins: int, seed: int) -> dict[str, list[float]]:
        """95 % bootstrap intervals over scans (:mod:`pipeline.evaluation.bootstrap`)."""
        from pipeline.evaluation.bootstrap import intervals

        return intervals(self.scores, self.labels, self.preds, self.healthy_scan,
                         self.lesion_scan, samples, bins, seed)


def loglik_summary(healthy: dict[str, float], lesioned: dict[str, tuple[str, float]], k: int
                   ) -> dict[str, Any]:
    """Healthy vs lesioned log-likelihood: means, paired drop and scan AUROC.

    ``healthy`` maps a subject to its bound (nats); ``lesioned`` maps a lesioned copy to
    (its healthy subject, its bound).
    """
    pairs = [(healthy[s], v) for s, v in lesioned.values() if s in healthy]
    drops = [h - v for h, v in pairs]
    return {
        "k": k, "healthy_mean_nats": float(np.mean(list(healthy.values()))) if healthy else None,
        "lesioned_mean_nats": float(np.mean([v for _, v in lesioned.values()]))
        if lesioned else None,
        "pairs": len(pairs),
        "lesioned_lower_fraction": float(np.mean([d > 0 for d in drops])) if drops else None,
        "mean_drop_nats": float(np.mean(drops)) if drops else None,
        "scan_auroc": scan_auroc([-v for v in healthy.values()],
                                         [-v for _, v in lesioned.values()])
        if healthy and lesioned else None}
