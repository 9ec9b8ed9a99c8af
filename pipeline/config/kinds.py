"""Named kinds to choose from: the score types a scan can be scored with and the latent
path modes of `interpolate` (no torch here: the config and the CLI parser validate against
them).

Example:
    >>> KINDS["combi"].needs_model, KINDS["intensity"].normative
    (True, False)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoreKind:
    """How a score type is computed and calibrated."""

    needs_model: bool
    normative: bool = True    # z-score against healthy voxel statistics
    two_sided: bool = False   # |z| (the raw value can be anomalous in both directions)
    description: str = ""


KINDS: dict[str, ScoreKind] = {
    "residual": ScoreKind(True, description="reconstruction error |x - x_hat|"),
    "nll": ScoreKind(True, description="voxel-wise -log p(x|z) under the decoder"),
    "elbo_grad": ScoreKind(True, description="|d(-ELBO)/dx|, smoothed"),
    "combi": ScoreKind(True, description="reconstruction error x |d(-ELBO)/dx| (ceVAE)"),
    "restoration": ScoreKind(True, description="|x - MAP restoration| under the VAE prior"),
    "intensity": ScoreKind(False, normative=False,
                           description="|x - median brain intensity| (baseline, uncalibrated)"),
    "intensity_normative": ScoreKind(False, two_sided=True,
                                     description="intensity against healthy scans (atlas, "
                                                 "no VAE)"),
}
MODEL_KINDS = tuple(k for k, v in KINDS.items() if v.needs_model)

PATH_MODES = ("linear", "spherical")  # latent interpolation paths (`interpolate --mode`)
