"""Raw voxel-wise anomaly scores of one template-space scan under a trained VAE.

Score types (each a non-negative map, larger = less explained by the healthy model):

- ``residual``: |x − x̂| (or its square, ``scoring.residual``) averaged over
  ``mc_samples`` posterior samples z ~ q(z|x) (0: the posterior mean only); the spread of the
  sampled reconstructions is kept as an uncertainty map.
- ``nll``: the per-voxel negative log-likelihood −log p(x|z) under the decoder's likelihood,
  averaged over the same samples (with a learned σ it weighs the residual by the model's own
  voxel-wise confidence).
- ``elbo_grad``: |∂(−ELBO)/∂x|, smoothed: how strongly each voxel pulls the ELBO down,
  through the encoder as well as the decoder (Zimmerer et al., context-encoding VAE).
- ``combi``: ``residual`` × ``elbo_grad``, the ceVAE combination.
- ``restoration``: |x − x_r| where x_r is the MAP restoration of
  :func:`pipeline.model.restoration.restore` (You et al. 2019); x_r is a pseudo-healthy image.

Baselines that need no model: ``intensity`` (|x − the scan's median brain intensity|,
thresholded without normative calibration) and ``intensity_normative`` (two-sided z-score of
the intensity against healthy scans: an atlas, no VAE).

Example:
    >>> import torch
    >>> from pipeline.config.scoring_schema import RestorationParams, ScoringParams
    >>> from pipeline.model.network import ConvVAE
    >>> from pipeline.model.objective import Likelihood
    >>> sp = ScoringParams(score=["restoration"], compare=["residual", "nll", "elbo_grad", "combi",
    ...     "restoration", "intensity", "intensity_normative"], residual="abs", mc_samples=4,
    ...     smoothing_sigma_vox=1.0, grad_smoothing_sigma_vox=1.0,
    ...     restoration=RestorationParams(steps=40, step_size=0.5, consistency=0.05),
    ...     std_smoothing_sigma_vox=2.0, std_floor_fraction=0.5, erode_brain_vox=1,
    ...     median_filter_vox=0, min_component_voxels=5, scan_statistic="top_voxels",
    ...     scan_top_voxels=10, precision="auto")
    >>> vae = ConvVAE([4, 8], latent_channels=2).eval()
    >>> image = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    >>> brain = np.zeros(image.shape, bool); brain[3:13, 3:13, 3:13] = True
    >>> raw = raw_scores(vae, Likelihood("gaussian", 0.1), image, brain, {"residual", "combi"},
    ...                  sp)
    >>> sorted(raw.maps), raw.maps["combi"].shape, float(raw.maps["combi"][~brain].max())
    (['combi', 'residual'], (16, 16, 16), 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from pipeline.config.kinds import KINDS, MODEL_KINDS
from pipeline.config.scoring_schema import ScoringParams
from pipeline.io.errors import ScanError
from pipeline.model.layers import VAE, VAEOutput
from pipeline.model.objective import Likelihood, elbo_terms, kl_divergence
from pipeline.model.restoration import frozen, restore
from pipeline.model.runtime import autocast_to, dtype_name, score_dtype


@dataclass
class RawScores:
    """Template-space raw score maps of one scan (zero outside ``region``)."""

    maps: dict[str, np.ndarray]
    region: np.ndarray
    reconstruction: np.ndarray | None = None
    uncertainty: np.ndarray | None = None      # std of sampled reconstructions
    restored: np.ndarray | None = None         # pseudo-healthy restoration
    negative_elbo: float | None = None         # nats per volume (MC estimate)
    warnings: list[str] = field(default_factory=list)
    domain: dict[str, float] = field(default_factory=dict)  # scoring.domain statistics

    def finite(self) -> bool:
        """Whether every map, image and the ELBO are finite (no half-precision overflow)."""
        arrays = [*self.maps.values(), self.reconstruction, self.uncertainty, self.restored]
        return (all(a is None or bool(np.isfinite(a).all()) for a in arrays)
                and (self.negative_elbo is None or math.isfinite(self.negative_elbo)))


def scored_region(brain: np.ndarray, sp: ScoringParams) -> np.ndarray:
    """The brain, eroded by ``erode_brain_vox`` voxels (the rim is all partial volume)."""
    if sp.erode_brain_vox <= 0:
        return brain.astype(bool)
    return np.asarray(ndimage.binary_erosion(brain, iterations=sp.erode_brain_vox))


def _smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(a, sigma) if sigma > 0 else a


def _model_maps(vae: VAE, likelihood: Likelihood, image: np.ndarray, region: np.ndarray,
                kinds: set[str], sp: ScoringParams, seed: int) -> RawScores:
    device = next(vae.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    weight = torch.from_numpy(region.astype(np.float32))[None, None].to(device)
    out = RawScores(maps={}, region=region)
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        k = max(sp.mc_samples, 0)
        if k:
            gen = torch.Generator().manual_seed(seed)
            eps = torch.randn((k, *mu.shape[1:]), generator=gen).to(device)
            z = mu + eps * torch.exp(0.5 * logvar)
        else:
            z = mu
        recs, sigmas = vae.decode_params(z)
        recs, mu, logvar = recs.float(), mu.float(), logvar.float()
        sigmas = None if sigmas is None else sigmas.float()
        nll = likelihood.nll(x.expand_as(recs), VAEOutput(recs, mu, logvar, z.float(), sigmas))
        kl = kl_divergence(mu, logvar).sum()
        out.negative_elbo = float(nll.reshape(len(nll), -1).sum(1).mean() + kl)
        diff = (x - recs).abs()
        err = diff if sp.residual == "abs" else diff**2
        out.reconstruction = recs.mean(0)[0].cpu().numpy()
        out.uncertainty = recs.std(0)[0].cpu().numpy() if k > 1 else None
        residual = err.mean(0)[0].cpu().numpy()
        if "nll" in kinds:
            out.maps["nll"] = _smooth(nll.float().mean(0)[0].cpu().numpy() * region,
                                      sp.smoothing_sigma_vox)
    if kinds & {"residual", "combi"}:
        out.maps["residual"] = _smooth(residual * region, sp.smoothing_sigma_vox)
    if kinds & {"elbo_grad", "combi"}:
        xg = x.clone().requires_grad_(True)
        with frozen(vae):
            terms = elbo_terms(vae(xg, sample=False), xg, likelihood, 1.0, 0.0)
            (grad,) = torch.autograd.grad(terms.negative_elbo, xg)
        g = (grad.float().abs() * weight)[0, 0].cpu().numpy()
        out.maps["elbo_grad"] = _smooth(g, sp.grad_smoothing_sigma_vox)
    if "combi" in kinds:
        out.maps["combi"] = out.maps["residual"] * out.maps["elbo_grad"]
    if "restoration" in kinds:
        restored = restore(vae, likelihood, x, weight, sp.restoration, consistency_weight=weight)
        out.restored = restored[0, 0].float().cpu().numpy()
        out.maps["restoration"] = _smooth(np.abs(image - out.restored) * region,
                                          sp.smoothing_sigma_vox)
    return out


def _checked_model_maps(vae: VAE, likelihood: Likelihood, image: np.ndarray,
                        region: np.ndarray, kinds: set[str], sp: ScoringParams, seed: int
                        ) -> RawScores:
    """The model maps in ``scoring.precision``; a non-finite half-precision result (overflow)
    is computed again in float32 and says so in ``warnings``."""
    device = next(vae.parameters()).device
    dtype = score_dtype(sp.precision, device)
    with autocast_to(device, dtype):
        out = _model_maps(vae, likelihood, image, region, kinds, sp, seed)
    if dtype != torch.float32 and not out.finite():
        name = dtype_name(dtype)
        out = _model_maps(vae, likelihood, image, region, kinds, sp, seed)
        out.warnings.append(f"non-finite values in the {name} model pass (half-precision "
                            "overflow): this scan was re-scored in float32")
    if not out.finite():
        raise ScanError("the model's output is not finite (NaN/Inf) even in float32")
    return out


def raw_scores(vae: VAE | None, likelihood: Likelihood | None, image: np.ndarray,
               brain: np.ndarray, kinds: set[str], sp: ScoringParams, seed: int = 0
               ) -> RawScores:
    """Raw maps of the requested score ``kinds`` for one template-space image.

    Maps are float32, zero outside the scored region; ``seed`` fixes the posterior samples
    so that a scan always gets the same map.
    """
    unknown = kinds - set(KINDS)
    if unknown:
        raise ValueError(f"unknown score type(s) {sorted(unknown)}")
    region = scored_region(brain, sp)
    model_kinds = kinds & set(MODEL_KINDS)
    if model_kinds:
        if vae is None or likelihood is None:
            raise ValueError(f"score type(s) {sorted(model_kinds)} need a model")
        out = _checked_model_maps(vae, likelihood, image, region, model_kinds, sp, seed)
    else:
        out = RawScores(maps={}, region=region)
    if "intensity" in kinds:
        median = float(np.median(image[region])) if region.any() else 0.0
        out.maps["intensity"] = _smooth(np.abs(image - median) * region,
                                        sp.smoothing_sigma_vox)
    if "intensity_normative" in kinds:
        out.maps["intensity_normative"] = _smooth(image * region, sp.smoothing_sigma_vox)
    out.maps = {k: (v * region).astype(np.float32) for k, v in out.maps.items() if k in kinds}
    return out
