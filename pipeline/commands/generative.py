"""``vae-anomaly sample | interpolate | impute | loglik``: the VAE as a generative model.

Outputs are NIfTI volumes in the model's template space (normalised intensities: the brain's
1st/99th percentiles at 0/1), except ``impute``, which writes the filled scan on the input's
own grid and in its intensity units, plus a JSON record and a PNG/HTML preview. Defaults come
from the model's ``generative`` parameters. Exit status as for ``score``.

Example:
    $ vae-anomaly sample --n 8 --out samples/ --temperature 0.8 --seed 1
    $ vae-anomaly interpolate a.nii.gz b.nii.gz --steps 8 --out path/
    $ vae-anomaly impute t1.nii.gz --mask hole.nii.gz --out filled/
    $ vae-anomaly loglik a.nii.gz b.nii.gz --k 100
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.generative import sampling
from pipeline.generative.quality import IntensityStats, mean_abs_diff, path_quality
from pipeline.io.atomic import all_or_nothing, write_json
from pipeline.io.errors import ScanError, UsageError, one_line, shown
from pipeline.io.nifti import load_mask, load_scan, stem, write_nifti
from pipeline.model.objective import Likelihood
from pipeline.modelstore.loading import model_for_command
from pipeline.modelstore.types import LoadedModel
from pipeline.preprocess.record import PreparedScan
from pipeline.reporting import preview

UNITS = "normalised intensity (the brain's 1st/99th percentiles at 0/1), template space"


def _about(loaded: LoadedModel) -> dict[str, Any]:
    return {"model": loaded.identity(), "trained_on": loaded.trained_on()}


def _meta_rows(loaded: LoadedModel, extra: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    t = loaded.trained_on()
    rows = [("model", loaded.uri), ("trained on", ", ".join(
        str(t[k]) for k in ("modality", "space", "cohort") if k in t))]
    return [(k, v) for k, v in rows + extra]


def _volume_stats(volume: np.ndarray, brain: np.ndarray) -> dict[str, float]:
    s = IntensityStats.of(volume, brain)
    return {"brain_mean": round(s.mean, 5), "brain_std": round(s.std, 5)}


def _scan_failed(scan: Path, exc: Exception, debug: bool) -> None:
    """One ``error: <scan>: <reason>`` line (with ``--debug``, unexpected errors propagate)."""
    if debug and not isinstance(exc, ScanError):
        raise exc
    print(f"error: {shown(scan)}: {one_line(exc)}", file=sys.stderr)


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise UsageError("--seed must lie in [0, 2**63)")


def sample(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UsageError("--n must be at least 1")
    if args.temperature is not None and not (math.isfinite(args.temperature)
                                             and args.temperature >= 0):
        raise UsageError("--temperature must be a finite number >= 0")
    _check_seed(args.seed)
    loaded = model_for_command(args.model, args.device, (args.out,), require_calibration=False)
    outputs = [args.out / f"sample_{i:03d}.nii.gz" for i in range(args.n)]
    outputs += [args.out / f"samples{s}" for s in (".png", ".json", ".html")]
    with all_or_nothing(outputs):
        _sample(args, loaded)
    print(f"wrote {args.n} sample(s) to {args.out}")
    return 0


def _sample(args: argparse.Namespace, loaded: LoadedModel) -> None:
    g, tpl = loaded.params.generative, loaded.template
    temperature = g.temperature if args.temperature is None else args.temperature
    z = sampling.sample_latents(sampling.latent_shape(loaded.vae, tpl.shape), args.n,
                                temperature, args.seed)
    decoded = sampling.decode_draw(loaded.vae, z, Likelihood.of(loaded.params.model),
                                   args.seed + 1, g.iwae_batch) if args.noise \
        else sampling.decode_mean(loaded.vae, z, g.iwae_batch)
    images = decoded.numpy()
    files, stats = [], []
    for i, image in enumerate(images):
        files.append(f"sample_{i:03d}.nii.gz")
        write_nifti(args.out / files[-1], image, tpl.affine)
        stats.append(_volume_stats(image, tpl.brain))
    style = preview.style_for(images[0], loaded.params.report)
    pixels = preview.samples_mosaic(images, tpl.affine, style)
    preview.write_png(args.out / "samples.png", pixels)
    info = {**_about(loaded), "space": tpl.space, "units": UNITS, "n": args.n,
            "temperature": temperature, "seed": args.seed,
            "kind": "x ~ p(x|z)" if args.noise else "decoder mean E[x|z]",
            "samples": [{"file": f, **s} for f, s in zip(files, stats, strict=True)]}
    write_json(args.out / "samples.json", info)
    preview.write_page(args.out / "samples.html", "Samples from the healthy VAE",
                          _meta_rows(loaded, [("samples", args.n), ("temperature", temperature),
                                              ("seed", args.seed), ("kind", info["kind"])]),
                          pixels, f"Each sample: axial, coronal, sagittal through the centre "
                          f"({preview.SAMPLES_PER_ROW} samples per row, files sample_000 "
                          f"onwards).", loaded.params.report.convention)


def interpolate(args: argparse.Namespace) -> int:
    if args.steps is not None and args.steps < 2:
        raise UsageError("--steps must be at least 2 (the two ends)")
    loaded = model_for_command(args.model, args.device, (args.out,), require_calibration=False)
    steps = loaded.params.generative.interpolation_steps if args.steps is None else args.steps
    masks = list(args.brain_mask) if args.brain_mask else [None, None]
    prepared = []
    for scan, mask in zip(args.scans, masks, strict=True):
        try:
            prepared.append(loaded.preprocessor.prepare_file(scan, mask).prepared)
        except Exception as exc:
            _scan_failed(scan, exc, args.debug)
            return 1
    modes = sampling.PATH_MODES if args.mode == "both" else (args.mode,)
    outputs = [args.out / f"input_{c}.nii.gz" for c in "ab"]
    outputs += [args.out / f"{m}_{i:02d}.nii.gz" for m in modes for i in range(steps)]
    outputs += [args.out / f"interpolation{s}" for s in (".json", ".png", ".html")]
    with all_or_nothing(outputs):
        _interpolate(args, loaded, prepared, steps, modes)
    print(f"wrote {len(modes)} path(s) of {steps} steps to {args.out}")
    return 0


def _interpolate(args: argparse.Namespace, loaded: LoadedModel, prepared: list[PreparedScan],
                 steps: int, modes: tuple[str, ...]) -> None:
    g, tpl = loaded.params.generative, loaded.template
    ends = [sampling.encode_mean(loaded.vae, torch.from_numpy(p.image)) for p in prepared]
    info: dict[str, Any] = {**_about(loaded), "space": tpl.space, "units": UNITS,
                            "inputs": [str(s) for s in args.scans], "steps": steps,
                            "max_step_ratio": g.max_step_ratio, "paths": {},
                            "inputs_change": round(mean_abs_diff(prepared[0].image,
                                                                 prepared[1].image, tpl.brain), 5)}
    for i, p in enumerate(prepared):
        write_nifti(args.out / f"input_{'ab'[i]}.nii.gz", p.image, tpl.affine)
    style = preview.style_for(prepared[0].image, loaded.params.report)
    rows: list[list[np.ndarray]] = []
    for mode in modes:
        path = sampling.latent_path(ends[0], ends[1], steps, mode)
        images = sampling.decode_mean(loaded.vae, path, g.iwae_batch).numpy()
        files = [f"{mode}_{i:02d}.nii.gz" for i in range(steps)]
        for f, image in zip(files, images, strict=True):
            write_nifti(args.out / f, image, tpl.affine)
        info["paths"][mode] = {"files": files, **path_quality(
            images, (prepared[0].image, prepared[0].brain),
            (prepared[1].image, prepared[1].brain), tpl.brain, g.max_step_ratio)}
        rows += preview.path_rows(prepared[0].image, images, prepared[1].image, tpl.affine,
                                     style)
    write_json(args.out / "interpolation.json", info)
    pixels = preview.mosaic(rows)
    preview.write_png(args.out / "interpolation.png", pixels)
    preview.write_page(
        args.out / "interpolation.html", "Latent interpolation",
        _meta_rows(loaded, [("A", args.scans[0]), ("B", args.scans[1]), ("steps", steps)]),
        pixels, f"Rows: {', '.join(f'{m} (axial, coronal)' for m in modes)}; first and last "
        f"columns are the prepared inputs A and B, between them the decoded path.",
        loaded.params.report.convention)


def impute(args: argparse.Namespace) -> int:
    loaded = model_for_command(args.model, args.device, (args.out,), require_calibration=False)
    name = stem(args.scan)
    outputs = [args.out / f"{name}_imputed{s}" for s in (".nii.gz", "_template.nii.gz",
                                                          ".json", ".png", ".html")]
    try:
        with all_or_nothing(outputs):
            _impute(args, loaded, name, outputs)
    except Exception as exc:
        _scan_failed(args.scan, exc, args.debug)
        return 1
    print(f"wrote {outputs[0]}")
    return 0


def _impute(args: argparse.Namespace, loaded: LoadedModel, name: str, outputs: list[Path]
            ) -> None:
    from pipeline.generative.imputation import impute_scan

    img = load_scan(args.scan)
    missing = load_mask(args.mask, img, what="missing-region mask")
    brain = load_mask(args.brain_mask, img) if args.brain_mask else None
    imp = impute_scan(loaded, img, missing, brain, loaded.params.generative.impute)
    write_nifti(outputs[0], imp.filled, img.affine, img.header)
    write_nifti(outputs[1], imp.template_filled, loaded.template.affine)
    centre = [round(float(v)) for v in np.argwhere(missing).mean(0)]
    style = preview.style_for(imp.filled, loaded.params.report)
    pixels = preview.mosaic([
        preview.orthogonal_views(v, img.affine, style, centre, missing)
        for v in (np.asarray(img.dataobj, np.float32), imp.filled)])
    info = {**_about(loaded), "input": str(args.scan), "missing_mask": str(args.mask),
            "output": outputs[0].name, "missing_voxels": int(missing.sum()),
            "imputed_by_model": int(imp.modelled.sum()),
            "outside_brain_filled_from_surroundings": int((missing & ~imp.modelled).sum()),
            "intensity_map": {"a": imp.scale[0], "b": imp.scale[1]},
            "steps": loaded.params.generative.impute.steps, "timings_s": imp.timings_s}
    write_json(outputs[2], info)
    preview.write_png(outputs[3], pixels)
    preview.write_page(outputs[4], f"Imputation: {name}", _meta_rows(loaded, [
        ("input", args.scan), ("missing voxels", info["missing_voxels"]),
        ("filled by the model (inside the brain)", info["imputed_by_model"])]), pixels,
        "Top row: the input with the missing region outlined; bottom row: the imputed "
        "scan. Views through the centre of the missing region.",
        loaded.params.report.convention)


def loglik(args: argparse.Namespace) -> int:
    if args.k is not None and args.k < 1:
        raise UsageError("--k must be at least 1")
    _check_seed(args.seed)
    masks = list(args.brain_mask) if args.brain_mask else [None] * len(args.scans)
    if len(masks) != len(args.scans):
        raise UsageError(f"--brain-mask given {len(masks)} time(s) for {len(args.scans)} scan(s)")
    loaded = model_for_command(args.model, args.device, () if args.out is None else (args.out,),
                               require_calibration=False)
    g = loaded.params.generative
    k = g.iwae_samples if args.k is None else args.k
    rows, failures = [], 0
    print("scan\tlog_likelihood_nats\tbits_per_voxel\tk")
    for scan, mask in zip(args.scans, masks, strict=True):
        try:
            prepared = loaded.preprocessor.prepare_file(scan, mask).prepared
            ll = sampling.log_likelihood(loaded.vae, Likelihood.of(loaded.params.model),
                                           torch.from_numpy(prepared.image), k, args.seed,
                                           g.iwae_batch)
        except Exception as exc:
            failures += 1
            _scan_failed(scan, exc, args.debug)
            continue
        rows.append({"scan": str(scan), "log_likelihood_nats": round(ll.nats, 3),
                     "bits_per_voxel": round(ll.bits_per_voxel, 6), "k": k,
                     "voxels": ll.voxels})
        print(f"{scan}\t{ll.nats:.3f}\t{ll.bits_per_voxel:.6f}\t{k}", flush=True)
    if args.out is not None:
        write_json(args.out / "loglik.json", {**_about(loaded), "units": UNITS, "seed": args.seed,
                                              "scans": rows})
    return 1 if failures else 0


COMMANDS = {"sample": sample, "interpolate": interpolate, "impute": impute, "loglik": loglik}
