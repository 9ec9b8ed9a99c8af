"""``vae-anomaly generative``: how good is the trained VAE as a generative model?

Four checks (parameters under ``generative.checks``), written to ``reports/generative.json``
with previews in ``data/generative/`` that the cohort page shows:

- **samples** from the prior: their brain intensity mean and std against the training
  scans' (decoder mean, and draws with the decoder's noise); novelty as the SSIM of each
  sample to its nearest training scan (a copy would score ~1), next to the same figure for
  held-out healthy scans; the samples' SSIM with each other (diversity).
- **interpolation** between two held-out healthy scans: SSIM of the path's ends with the
  inputs, and the largest step as a multiple of the even share of the end-to-end change.
- **imputation** of a cube removed from held-out healthy scans on their own grid (the
  ``impute`` command's code path): mean absolute error against the truth, next to filling
  with the training mean image (the healthy template mean) and with the surroundings.
- **log-likelihood**: the IWAE bound for several K on held-out healthy scans (it should
  tighten as K grows).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import torch
from nibabel.affines import voxel_sizes

from pipeline.cohort.store import Case, Part, load_images, load_manifest, load_template_case
from pipeline.config import paths
from pipeline.config.kinds import PATH_MODES
from pipeline.config.schema import Params
from pipeline.generative.imputation import impute_scan
from pipeline.generative.quality import (
    IntensityStats,
    mean_abs_diff,
    nearest_ssim,
    path_quality,
    relative_difference,
    ssim_many,
)
from pipeline.generative.sampling import (
    decode_draw,
    decode_mean,
    encode_mean,
    latent_path,
    latent_shape,
    log_likelihood,
    sample_latents,
)
from pipeline.io.atomic import write_json
from pipeline.io.nifti import load_mask, load_scan, write_nifti
from pipeline.model.objective import Likelihood
from pipeline.modelstore.loading import load_model
from pipeline.modelstore.types import LoadedModel
from pipeline.reporting import preview
from pipeline.space.template import Template

log = logging.getLogger(__name__)


def _stats(s: IntensityStats, ref: IntensityStats, tol: float) -> dict[str, Any]:
    dm, ds = relative_difference(s.mean, ref.mean), relative_difference(s.std, ref.std)
    return {"mean": round(s.mean, 4), "std": round(s.std, 4), "mean_rel_diff": round(dm, 4),
            "std_rel_diff": round(ds, 4), "within_tolerance": bool(max(dm, ds) <= tol)}


def _samples(loaded: LoadedModel, params: Params, tpl: Template, train: np.ndarray,
             test: np.ndarray) -> dict[str, Any]:
    g, ch = params.generative, params.generative.checks
    z = sample_latents(latent_shape(loaded.vae, tpl.shape), ch.samples, g.temperature,
                       params.seed)
    means = decode_mean(loaded.vae, z, g.iwae_batch).numpy()
    draws = decode_draw(loaded.vae, z, Likelihood.of(loaded.params.model), params.seed + 1,
                        g.iwae_batch).numpy()
    ref = IntensityStats.of(train, tpl.brain)
    nearest = [nearest_ssim(s, train, tpl.brain, ch.nearest_candidates) for s in means]
    held_out = [nearest_ssim(s, train, tpl.brain, ch.nearest_candidates)[0]
                for s in test[:ch.samples]]
    k = min(len(means), ch.diversity_samples)
    pairs = [float(v) for i in range(k) for v in ssim_many(means[i], means[i + 1:k], tpl.brain)]
    out_dir = paths.generative_dir(params.root)
    for i, image in enumerate(means):
        write_nifti(out_dir / "samples" / f"sample_{i:03d}.nii.gz", image, tpl.affine)
    style = preview.style_for(means[0], params.report)
    preview.write_png(out_dir / "samples.png",
                         preview.samples_mosaic(means, tpl.affine, style))
    values = [v for v, _ in nearest]
    return {
        "n": len(means), "temperature": g.temperature, "training": {
            "mean": round(ref.mean, 4), "std": round(ref.std, 4), "n": len(train)},
        "decoder_mean": _stats(IntensityStats.of(means, tpl.brain), ref, ch.intensity_tolerance),
        "with_decoder_noise": _stats(IntensityStats.of(draws, tpl.brain), ref,
                                     ch.intensity_tolerance),
        "nearest_training_ssim": [round(v, 4) for v in values],
        "nearest_training_ssim_max": round(max(values), 4),
        "novel": bool(max(values) < ch.novelty_max_ssim),
        "held_out_nearest_training_ssim_median": round(float(np.median(held_out)), 4)
        if held_out else None,
        "pairwise_ssim_mean": round(float(np.mean(pairs)), 4) if pairs else None}


def _interpolation(loaded: LoadedModel, params: Params, tpl: Template,
                   cases: list[Case], held_out: list[tuple[np.ndarray, np.ndarray]]
                   ) -> dict[str, Any] | None:
    if len(cases) < 2:
        return None
    g = params.generative
    inputs = held_out[:2]
    ends = [encode_mean(loaded.vae, torch.from_numpy(img)) for img, _ in inputs]
    style = preview.style_for(inputs[0][0], params.report)
    out: dict[str, Any] = {"a": cases[0].id, "b": cases[1].id,
                           "steps": g.interpolation_steps, "paths": {},
                           "inputs_change": round(mean_abs_diff(inputs[0][0], inputs[1][0],
                                                                tpl.brain), 5)}
    rows = []
    for mode in PATH_MODES:
        path = decode_mean(loaded.vae, latent_path(ends[0], ends[1], g.interpolation_steps,
                                                   mode), g.iwae_batch).numpy()
        out["paths"][mode] = path_quality(path, inputs[0], inputs[1], tpl.brain,
                                          g.max_step_ratio)
        rows += preview.path_rows(inputs[0][0], path, inputs[1][0], tpl.affine, style)
    preview.write_png(paths.generative_dir(params.root) / "interpolation.png",
                         preview.mosaic(rows))
    return out


def _cube(brain: np.ndarray, affine: np.ndarray, edge_mm: float, rng: np.random.Generator
          ) -> np.ndarray:
    """A cube of ``edge_mm`` (voxel counts per axis from the spacing) centred on a random
    brain voxel deep enough for the cube to stay mostly inside the brain."""
    from scipy import ndimage

    half = np.maximum(np.round(edge_mm / 2 / voxel_sizes(affine)).astype(int), 1)
    core = np.asarray(ndimage.binary_erosion(brain, iterations=int(half.min())))
    candidates = np.argwhere(core if core.any() else brain)
    centre = candidates[rng.integers(len(candidates))]
    cube = np.zeros(brain.shape, bool)
    cube[tuple(slice(max(int(c - h), 0), int(c + h)) for c, h in zip(centre, half,
                                                                     strict=True))] = True
    return cube


def _imputation(loaded: LoadedModel, params: Params, cases: list[Case],
                train_mean: np.ndarray) -> dict[str, Any] | None:
    ch = params.generative.checks
    rows = []
    for i, case in enumerate(cases[:ch.impute_scans]):
        img = load_scan(case.image)
        truth = np.asarray(img.dataobj, np.float32)
        brain = load_mask(case.mask, img)
        missing = _cube(brain, img.affine, ch.impute_cube_mm,
                        np.random.default_rng(params.seed + i))
        imp = impute_scan(loaded, img, missing, brain, params.generative.impute)
        at, a = imp.modelled, imp.scale[0]
        errors = {"vae": np.abs(imp.filled - truth)[at].mean(),
                  "template_mean": np.abs(imp.native_values(train_mean) - truth)[at].mean(),
                  "surroundings": np.abs(imp.native_values(imp.prepared.image)
                                         - truth)[at].mean()}
        rows.append({"case": case.id, "voxels": int(at.sum()),
                     **{f"mae_{k}": round(float(v / a), 5) for k, v in errors.items()}})
        log.info("imputation %s: MAE %s (%.1f s)", case.id, rows[-1],
                 sum(imp.timings_s.values()))
    if not rows:
        return None
    mean = {k: float(np.mean([r[f"mae_{k}"] for r in rows]))
            for k in ("vae", "template_mean", "surroundings")}
    gain = 1.0 - mean["vae"] / max(mean["template_mean"], 1e-12)
    return {"cube_mm": ch.impute_cube_mm, "units": "normalised intensity (native MAE / a)",
            "scans": rows, **{f"mae_{k}": round(v, 5) for k, v in mean.items()},
            "gain_over_template_mean": round(gain, 4),
            "meets_target": bool(gain >= ch.impute_min_gain)}


def _iwae(loaded: LoadedModel, params: Params, images: list[np.ndarray]) -> dict[str, Any]:
    g, lik = params.generative, Likelihood.of(loaded.params.model)
    table: dict[str, list[float]] = {}
    for k in sorted(set(g.checks.iwae_k)):
        table[str(k)] = [log_likelihood(loaded.vae, lik, torch.from_numpy(im), k, params.seed,
                                        g.iwae_batch).nats for im in images]
    means = {k: float(np.mean(v)) for k, v in table.items() if v}
    ordered = list(means.values())
    return {"k": list(means), "mean_nats": {k: round(v, 2) for k, v in means.items()},
            "per_scan_nats": {k: [round(x, 2) for x in v] for k, v in table.items()},
            "tightens": bool(all(b >= a for a, b in itertools.pairwise(ordered)))}


def run(params: Params) -> dict[str, Any]:
    loaded = load_model(paths.model_dir(params.root))
    tpl = loaded.template
    manifest = load_manifest(params)
    train = load_images(params, manifest[Part.TRAIN])[:, 0]
    healthy = manifest[Part.TEST_HEALTHY]
    held_out = [load_template_case(params, c.id) for c in healthy]  # (image, brain)
    test = [image for image, _ in held_out]
    result: dict[str, Any] = {"model": loaded.meta.get("mlflow", {}),
                              "cohort": params.cohort.name, "space": tpl.space}
    result["samples"] = _samples(loaded, params, tpl, train, np.asarray(test))
    result["interpolation"] = _interpolation(loaded, params, tpl, healthy, held_out)
    result["imputation"] = _imputation(loaded, params, healthy, train.mean(0))
    result["iwae"] = _iwae(loaded, params, test[:params.generative.checks.iwae_scans])
    write_json(paths.reports_dir(params.root) / "generative.json", result)
    s = result["samples"]
    log.info("samples: brain mean/std rel. diff %.3f/%.3f (decoder mean), %.3f/%.3f (with "
             "noise); nearest-training SSIM max %.3f", s["decoder_mean"]["mean_rel_diff"],
             s["decoder_mean"]["std_rel_diff"], s["with_decoder_noise"]["mean_rel_diff"],
             s["with_decoder_noise"]["std_rel_diff"], s["nearest_training_ssim_max"])
    if result["imputation"]:
        im = result["imputation"]
        log.info("imputation MAE %.4f (VAE) vs %.4f (template mean), gain %.3f",
                 im["mae_vae"], im["mae_template_mean"], im["gain_over_template_mean"])
    log.info("IWAE mean nats by K: %s", result["iwae"]["mean_nats"])
    return result
