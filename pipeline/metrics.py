"""Segmentation and detection metrics over pooled voxels and over scans.

Example:
    >>> import numpy as np
    >>> round(dice(np.array([1, 1, 0], bool), np.array([1, 0, 0], bool)), 3)
    0.667
"""

from __future__ import annotations

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
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    roc = [{"fpr": float(a), "tpr": float(b)} for a, b in _thin(fpr, tpr, points)]
    pr = [{"recall": float(a), "precision": float(b)} for a, b in _thin(recall, precision, points)]
    return {"auroc": auroc, "auprc": auprc}, roc, pr


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> list[tuple[float, float]]:
    idx = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).round().astype(int))
    return [(float(x[i]), float(y[i])) for i in idx]


def scan_auroc(healthy: list[float], abnormal: list[float]) -> float:
    if not healthy or not abnormal:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(healthy)), np.ones(len(abnormal))]
    return float(roc_auc_score(labels, np.r_[healthy, abnormal]))
