"""Image similarity figures for the generative checks: SSIM, intensity statistics, smoothness.

SSIM follows Wang et al. (2004) with a 7×7×7 uniform window (scikit-image's default) and the
usual constants K1 = 0.01, K2 = 0.03 for a data range of 1 (the normalised brain intensity
range), averaged over a region. It runs as average pooling in torch, so comparing a sample
with many training scans stays fast on a CPU.

Example:
    >>> import numpy as np
    >>> a = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)
    >>> round(ssim(a, a, np.ones(a.shape, bool)), 6)
    1.0
    >>> step_fractions(np.stack([a * 0, a * 0.5, a]), np.ones(a.shape, bool))
    [0.5, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SSIM_WINDOW = 7
SSIM_K = (0.01, 0.03)


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity of two volumes inside ``region`` (1 = identical)."""
    return float(ssim_many(a, b[None], region, data_range)[0])


def ssim_many(a: np.ndarray, refs: np.ndarray, region: np.ndarray, data_range: float = 1.0
              ) -> np.ndarray:
    """SSIM of ``a`` with each volume of ``refs`` ``(n, *a.shape)`` inside ``region``."""
    idx = np.argwhere(region)
    if idx.size == 0:
        raise ValueError("SSIM needs a non-empty region")
    lo = np.maximum(idx.min(0) - SSIM_WINDOW, 0)
    hi = np.minimum(idx.max(0) + SSIM_WINDOW + 1, region.shape)
    box = tuple(slice(int(s), int(e)) for s, e in zip(lo, hi, strict=True))
    x = torch.from_numpy(np.ascontiguousarray(a[box], np.float32))[None, None]
    y = torch.from_numpy(np.ascontiguousarray(refs[(slice(None), *box)], np.float32))[:, None]
    x = x.expand_as(y)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(t, SSIM_WINDOW, 1, SSIM_WINDOW // 2, count_include_pad=False)

    c1, c2 = (SSIM_K[0] * data_range) ** 2, (SSIM_K[1] * data_range) ** 2
    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    inside = torch.from_numpy(np.ascontiguousarray(region[box]))
    return s[:, 0][:, inside].mean(1).numpy().astype(np.float64)


def nearest_ssim(sample: np.ndarray, references: np.ndarray, region: np.ndarray,
                 candidates: int) -> tuple[float, int]:
    """SSIM of ``sample`` with its nearest reference, and that reference's index.

    The ``candidates`` references closest in mean squared difference (inside ``region``) are
    compared by SSIM; the highest SSIM among them is returned.
    """
    diff = ((references[:, region] - sample[region][None]) ** 2).mean(1)
    order = np.argsort(diff)[:max(candidates, 1)]
    values = ssim_many(sample, references[order], region)
    best = int(np.argmax(values))
    return float(values[best]), int(order[best])


@dataclass(frozen=True)
class IntensityStats:
    """Pooled mean and standard deviation of the voxels inside a region."""

    mean: float
    std: float

    @classmethod
    def of(cls, volumes: np.ndarray, region: np.ndarray) -> IntensityStats:
        values = np.asarray(volumes)[..., region].astype(np.float64)
        return cls(mean=float(values.mean()), std=float(values.std()))


def relative_difference(value: float, reference: float) -> float:
    """|value − reference| / |reference|."""
    return abs(value - reference) / max(abs(reference), 1e-12)


def mean_abs_diff(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean |a − b| inside ``region``."""
    return float(np.abs(a[region].astype(np.float64) - b[region]).mean())


def path_quality(path: np.ndarray, a: tuple[np.ndarray, np.ndarray],
                 b: tuple[np.ndarray, np.ndarray], region: np.ndarray, max_step_ratio: float
                 ) -> dict[str, Any]:
    """How a decoded path ``(steps, ...)`` between inputs ``a`` and ``b`` (image, brain)
    behaves: step fractions, the largest step over the even share and whether that is within
    ``max_step_ratio``, the change from end to end, and the SSIM of its ends with the inputs."""
    fractions = step_fractions(path, region)
    ratio = max(fractions) * (len(path) - 1)
    return {"step_fractions": fractions, "max_step_fraction": max(fractions),
            "end_to_end_change": round(mean_abs_diff(path[0], path[-1], region), 5),
            "max_step_over_even_share": round(ratio, 4), "smooth": bool(ratio <= max_step_ratio),
            "endpoint_ssim": {"a": round(ssim(path[0], *a), 4),
                              "b": round(ssim(path[-1], *b), 4)}}


def step_fractions(path: np.ndarray, region: np.ndarray) -> list[float]:
    """How much each step of a path ``(steps, ...)`` changes the image, as a share of the
    change between its two ends (mean absolute difference inside ``region``)."""
    inside = path[:, region].astype(np.float64)
    total = float(np.abs(inside[-1] - inside[0]).mean())
    steps = np.abs(np.diff(inside, axis=0)).mean(1)
    return [round(float(s) / max(total, 1e-12), 6) for s in steps]
