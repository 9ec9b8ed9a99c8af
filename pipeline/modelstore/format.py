"""Model folder formats: the version a folder declares, and the one step that migrates it.

``model.json`` names its format. Folders of the current format (:data:`FORMAT`, 4) store
only the parameter sections a model keeps (:class:`~pipeline.config.schema.ModelConfig`) and
are read strictly: every key must be there, and anything missing or unknown refuses the
model with the key named; nothing is filled in. Older folders are migrated here, and only
here: format 3 is completed with the keys added since (:data:`ADDED_TO_V3`); format 2 (the
whole experiment's parameters) keeps its model sections, completed with the keys added since
(:data:`ADDED_TO_V2`); format 1 (``vae-anomaly/1``, and folders without a ``format``) is
completed with the values those models were built and trained with, and its calibration's
threshold names and layout are brought to the current ones.

Example:
    >>> old = {"format": "vae-anomaly/1", "params": {"train": {"augment_flip": True}}}
    >>> meta = migrate_meta(old)
    >>> meta["format"], source_format(meta), meta["params"]["train"]["augment"]["flip"]
    ('vae-anomaly/4', 'vae-anomaly/1', True)
    >>> "evaluate" in meta["params"]
    False
    >>> migrate_thresholds("vae-anomaly/1", {"voxel": 3.0, "scan": 4.0})
    {'threshold': 3.0, 'scan_threshold': 4.0}
"""

from __future__ import annotations

from typing import Any

from pipeline.config.params import deep_merge
from pipeline.config.schema import MODEL_SECTIONS
from pipeline.modelstore.types import ModelError

FORMAT = "vae-anomaly/4"
MODEL_SECTIONS_FORMAT = "vae-anomaly/3"  # the model sections, before train.anomalies
WHOLE_PARAMS_FORMAT = "vae-anomaly/2"  # stored every section of the experiment's parameters
LEGACY_FORMAT = "vae-anomaly/1"
FORMATS = (FORMAT, MODEL_SECTIONS_FORMAT, WHOLE_PARAMS_FORMAT, LEGACY_FORMAT)

# Keys added after model folders of format 1 were written, with the values that reproduce
# how those models were built and trained, so older model folders stay loadable.
LEGACY_DEFAULTS: dict[str, Any] = {
    "model": {"residual_units": 0, "latent": "spatial", "latent_dim": 1,
              "likelihood": "gaussian", "min_sigma": 0.01, "architecture": "classic",
              "blocks": [], "stem": 1, "upsample": "transposed", "mean_input": False},
    "train": {"lr_schedule": "cosine", "grad_clip_norm": 0.0, "kl_schedule": "linear",
              "steps_per_epoch": 0, "patch_size": 0, "patch_min_brain": 0.0,
              "warmup_fraction": 0.1, "denoise": {"std": 0.0, "cell_vox": 8},
              "kl_cycle_epochs": 1, "free_bits": 0.0, "early_stopping_patience": 0,
              "early_stopping_min_delta": 0.0, "iwae_samples": 0, "iwae_every": 1,
              "channels_last": False, "compile": False, "gpu_cache_fraction": 0.0,
              "augment": {"rotation_deg": 0.0, "translation_vox": 0.0, "scale": 0.0,
                          "intensity_shift": 0.0, "gamma": 0.0, "bias_field": 0.0}},
    "scoring": {"score": ["residual"], "compare": ["residual"], "residual": "abs",
                "mc_samples": 0, "grad_smoothing_sigma_vox": 1.0, "median_filter_vox": 0,
                "restoration": {"steps": 0, "step_size": 0.5, "consistency": 0.05},
                "scan_statistic": "top_voxels", "precision": "fp32"},
    "report": {"convention": "radiological", "finding_views": 3, "max_findings": 20,
               "viewer_max_slices": 48, "display_mm": 1.0, "heat_range": [0.5, 2.5],
               "midline_mm": 4.0, "gallery_max": 48, "reconstruction_scans": 3},
    "generative": {"temperature": 1.0, "interpolation_steps": 8, "max_step_ratio": 2.0,
                   "impute": {"steps": 10, "step_size": 1.0, "ring_vox": 3,
                              "min_ring_voxels": 20, "template_cover": 0.01}, "iwae_samples": 10,
                   "iwae_batch": 10, "checks": {
                       "samples": 16, "nearest_candidates": 5, "impute_scans": 8,
                       "impute_cube_mm": 20.0, "iwae_k": [1, 10, 100], "iwae_scans": 4,
                       "diversity_samples": 8,
                       "intensity_tolerance": 0.1, "novelty_max_ssim": 0.98,
                       "impute_min_gain": 0.3}},
}
# Keys added after the first folders of format 2 were written: their values reproduce how
# those models were prepared and trained (no harmonisation, no site simulation).
ADDED_TO_V2: dict[str, Any] = {
    "prepare": {"harmonise": {"method": "none", "quantiles": [0.01, 0.99]},
                "match_resolution": False},
    "train": {"site": {"probability": 0.0, "low_resolution": [1.0, 1.0],
                       "blur_sigma_vox": [0.0, 0.0], "noise_std": 0.0, "gamma": [1.0, 1.0],
                       "bias_field": 0.0, "rim_erosion_vox": 0}},
}
# Keys added after format 3: their values reproduce how those models were trained (no
# synthetic anomalies on the input, no sharpening among the simulated sites).
ADDED_TO_V3: dict[str, Any] = {
    "train": {"anomalies": {"probability": 0.0, "per_patch": [1, 1], "diameter_vox": [1.0, 1.0],
                            "level": [0.0, 0.0], "strength": [0.0, 0.0], "texture": 0.0,
                            "border_vox": 1.0},
              "site": {"sharpen_alpha": [0.0, 0.0]}},
}
_LEGACY_RENAMED = {"augment_flip": "flip", "augment_intensity": "intensity_scale"}


def _v1_params(data: dict[str, Any]) -> dict[str, Any]:
    """Parameters stored by a format-1 model folder, completed to the current schema."""
    data = deep_merge(deep_merge(ADDED_TO_V2, LEGACY_DEFAULTS), data)
    train = dict(data["train"])
    for old, new in _LEGACY_RENAMED.items():
        if old in train:
            train["augment"] = {**train["augment"], new: train.pop(old)}
    data["train"] = train
    model = data["model"]
    if "strides" not in model:
        data["model"] = {**model, "strides": [2] * len(model.get("channels", []))}
    return data



def folder_format(meta: dict[str, Any]) -> str:
    """The format a ``model.json`` declares (folders written before formats existed: 1)."""
    fmt = str(meta.get("format", LEGACY_FORMAT))
    if fmt not in FORMATS:
        raise ModelError(f"unknown model folder format {fmt!r} (this version reads "
                         f"{', '.join(FORMATS)})")
    return fmt


def _model_sections(params: dict[str, Any]) -> dict[str, Any]:
    """The sections of a whole parameter tree that a model keeps."""
    return {k: v for k, v in params.items() if k in MODEL_SECTIONS}


def migrate_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``model.json`` in the current format (the input when it already is)."""
    fmt, params = folder_format(meta), dict(meta.get("params", {}))
    if fmt == FORMAT:
        return meta
    if fmt == WHOLE_PARAMS_FORMAT:
        params = deep_merge(ADDED_TO_V2, params)
    elif fmt == LEGACY_FORMAT:
        params = _v1_params(params)
    return {**meta, "format": FORMAT, "migrated_from": fmt,
            "params": deep_merge(ADDED_TO_V3, _model_sections(params))}


def source_format(meta: dict[str, Any]) -> str:
    """The format a folder was written in (before :func:`migrate_meta`)."""
    return str(meta.get("migrated_from", meta.get("format", LEGACY_FORMAT)))


_V1_THRESHOLD_KEYS = {"voxel": "threshold", "scan": "scan_threshold"}


def migrate_thresholds(fmt: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One map's thresholds of ``calibration.json`` with the current field names."""
    if fmt != LEGACY_FORMAT:  # the calibration layout has not changed since format 2
        return entry
    return {_V1_THRESHOLD_KEYS.get(k, k): v for k, v in entry.items()}


def migrate_calibration(fmt: str, info: dict[str, Any]) -> dict[str, Any]:
    """``calibration.json`` in the current layout: ``score`` and per-map ``thresholds``,
    and the ``precision`` of the calibration pass (format 1 before it was recorded:
    float32). The earliest layout (one residual map) is converted too."""
    if fmt != LEGACY_FORMAT:
        return info
    info = {"precision": "float32", **info}
    if "thresholds" not in info:  # the first calibrations: one residual map
        info["score"] = ["residual"]
        info["thresholds"] = {"residual": {
            "voxel": info["voxel_threshold"], "scan": info["scan_threshold"],
            "healthy_scan_scores": info.get("healthy_scan_scores", [])}}
        info["arrays"] = {"mean": "residual.mean", "std": "residual.std"}
    info["thresholds"] = {k: migrate_thresholds(fmt, v) for k, v in info["thresholds"].items()}
    return info
