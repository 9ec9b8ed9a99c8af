"""Model folders (weights + JSON, never pickle) and their MLflow model versions.

A model folder holds ``weights.safetensors``, ``template.safetensors`` (the template crop the
scans are registered to), ``model.json`` (the full parameters it was prepared/trained with,
what it was trained on, the SHA-256 of weights and template), ``head_atlas.safetensors``
when the training scans had skull and masks (brain extraction of scans with skull), and,
once calibrated, ``calibration.safetensors`` + ``calibration.json``.

Example:
    >>> loaded = load_model("models/vae")                         # doctest: +SKIP
    >>> loaded = load_model("models:/vae-anomaly-ixi-t1@champion") # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline import paths
from pipeline.config import Params, params_from_dict, with_legacy_defaults
from pipeline.nifti import one_line, sha256
from pipeline.paths import HEAD_ATLAS_FILE
from pipeline.template import TEMPLATE_FILE, load_template, read_template, save_template

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
CALIBRATION = "calibration.safetensors"
CALIBRATION_JSON = "calibration.json"
WEIGHTS_SHA_TAG = "weights_sha256"          # model version tags: the registry's own record,
CALIBRATION_SHA_TAG = "calibration_sha256"  # checked against the downloaded files on load


T = TypeVar("T")
log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model that cannot be found, verified or used; ``str()`` is one line."""


@dataclass
class Normative:
    """Voxel-wise healthy mean and (floored) std of one raw score type, template space."""

    mean: np.ndarray
    std: np.ndarray


@dataclass
class Thresholds:
    """Thresholds of one calibrated map, chosen on healthy calibration scans."""

    voxel: float                 # voxel score above which a voxel is flagged
    scan: float                  # scan score above which a scan is abnormal
    healthy_scan_scores: list[float] = field(default_factory=list)


@dataclass
class Calibration:
    """Everything scoring needs beyond the weights: which score, its statistics, thresholds.

    ``score`` lists the types whose calibrated maps are averaged into the primary map (the
    one ``score`` writes); ``thresholds`` holds one entry per calibrated map, keyed by
    :func:`map_name` (the primary combination and every compared type).
    """

    score: list[str]
    stats: dict[str, Normative]
    thresholds: dict[str, Thresholds]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return map_name(self.score)

    @property
    def voxel_threshold(self) -> float:
        return self.thresholds[self.primary].voxel

    @property
    def scan_threshold(self) -> float:
        return self.thresholds[self.primary].scan


def map_name(score: list[str]) -> str:
    """Name of the map combining the ``score`` types (``residual+elbo_grad``)."""
    return "+".join(score)


@dataclass
class LoadedModel:
    vae: Any
    params: Params
    meta: dict[str, Any]
    folder: Path
    uri: str
    calibration: Calibration | None = None
    head_atlas: Any = None

    def trained_on(self) -> dict[str, Any]:
        return dict(self.meta.get("trained_on", {}))

    def healthy_scan_scores(self) -> list[float]:
        """Scan scores of the healthy calibration scans (the reference shown in reports)."""
        if self.calibration is None:
            return []
        return list(self.calibration.thresholds[self.calibration.primary].healthy_scan_scores)


def build_vae(params: Params) -> Any:
    from pipeline.model import ConvVAE

    m = params.model
    shape = params.template.crop_shape
    return ConvVAE(list(m.channels), m.latent_channels, m.norm,
                   image_shape=(shape[0], shape[1], shape[2]), strides=list(m.strides),
                   residual_units=m.residual_units, latent=m.latent, latent_dim=m.latent_dim,
                   mean_image=m.learn_mean_image,
                   learned_sigma=m.likelihood == "gaussian_learned", init_sigma=m.recon_sigma,
                   min_sigma=m.min_sigma)


def save_model(folder: Path, vae: Any, params: Params, meta: dict[str, Any],
               head_atlas: Path | None = None) -> None:
    """Write weights, template, ``model.json`` (and a copy of ``head_atlas``) into ``folder``."""
    from safetensors.torch import save_file

    from pipeline.config import to_dict
    from pipeline.nifti import atomic_write, copy_file, write_json

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p)))
    save_template(load_template(params.template.resolution_mm, params.template.crop_shape),
                  folder / TEMPLATE_FILE)
    body = {**meta, "params": to_dict(params), "weights_sha256": sha256(folder / WEIGHTS),
            "template_sha256": sha256(folder / TEMPLATE_FILE)}
    (folder / HEAD_ATLAS_FILE).unlink(missing_ok=True)
    if head_atlas is not None:
        copy_file(head_atlas, folder / HEAD_ATLAS_FILE)
        body["head_atlas_sha256"] = sha256(folder / HEAD_ATLAS_FILE)
    write_json(folder / MODEL_JSON, body)


def save_calibration(folder: Path, calib: Calibration) -> None:
    from pipeline.nifti import write_arrays, write_json

    arrays = {}
    for name, st in calib.stats.items():
        arrays[f"{name}.mean"] = st.mean.astype(np.float32)
        arrays[f"{name}.std"] = st.std.astype(np.float32)
    write_arrays(folder / CALIBRATION, arrays)
    write_json(folder / CALIBRATION_JSON, {
        **calib.info, "score": calib.score, "primary": calib.primary,
        "voxel_threshold": calib.voxel_threshold, "scan_threshold": calib.scan_threshold,
        "thresholds": {k: asdict(v) for k, v in calib.thresholds.items()},
        "statistics_sha256": sha256(folder / CALIBRATION)})


def load_model(uri: str | Path | None = None, params: Params | None = None,
               device: str = "cpu", require_calibration: bool = True) -> LoadedModel:
    """Load a model folder, or an MLflow model URI (default: the configured champion)."""
    folder, uri_text, registry = resolve(uri, params)
    try:
        meta = json.loads((folder / MODEL_JSON).read_text())
        stored = params_from_dict(with_legacy_defaults(meta["params"]),
                                  root=paths.project_root())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{uri_text}: not a vae-anomaly model folder ({exc})") from exc
    if uri_text.startswith("models:/") and WEIGHTS_SHA_TAG not in registry:
        log.warning("%s: the registry records no weights checksum for this version (older "
                    "versions, or a URI without a version number or alias): checked against "
                    "model.json only", uri_text)
    _agrees(registry, WEIGHTS_SHA_TAG, meta.get("weights_sha256"), uri_text, "weights")
    weights = _verified(folder / WEIGHTS, meta.get("weights_sha256"), uri_text, "weights")
    _safely(uri_text, "template", lambda: read_template(_verified(
        folder / TEMPLATE_FILE, meta.get("template_sha256"), uri_text, "template")))
    from safetensors.torch import load_file

    vae = build_vae(stored)
    # safetensors holds raw tensors only: nothing in the file is ever executed
    _safely(uri_text, "weights", lambda: vae.load_state_dict(load_file(str(weights),
                                                                       device="cpu")))
    vae.to(device).eval()
    loaded = LoadedModel(vae=vae, params=stored, meta=meta, folder=folder, uri=uri_text)
    if meta.get("head_atlas_sha256"):
        from pipeline import headatlas

        loaded.head_atlas = _safely(uri_text, "head atlas", lambda: headatlas.read(_verified(
            folder / HEAD_ATLAS_FILE, meta["head_atlas_sha256"], uri_text, "head atlas")))
    if (folder / CALIBRATION_JSON).is_file():
        loaded.calibration = _safely(uri_text, "calibration",
                                     lambda: _load_calibration(folder, uri_text))
        _agrees(registry, CALIBRATION_SHA_TAG, loaded.calibration.info.get("statistics_sha256"),
                uri_text, "calibration")
        from pipeline.runtime import follow_calibration  # legacy: float32 (on the CPU)

        p = follow_calibration(stored.scoring.precision, loaded.calibration.info.get(
            "precision", "float32"), next(vae.parameters()).device)
        loaded.params = replace(stored, scoring=replace(stored.scoring, precision=p))
    elif require_calibration:
        raise ModelError(f"{uri_text}: model is not calibrated (run `vae-anomaly calibrate`)")
    return loaded


def _safely(uri_text: str, what: str, read: Callable[[], T]) -> T:
    """``read()``, with anything but a :class:`ModelError` turned into one line."""
    try:
        return read()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{uri_text}: {what} is not a valid file of a vae-anomaly model "
                         f"({one_line(exc)})") from exc


def _agrees(tags: dict[str, str], key: str, recorded: str | None, uri_text: str, what: str
            ) -> None:
    """Refuse a model whose files disagree with the checksum its model version records."""
    if key in tags and tags[key] != recorded:
        raise ModelError(f"{uri_text}: {what} differ from the checksum recorded in the model "
                         "registry (tampered?)")


def _verified(path: Path, expected: str | None, uri_text: str, what: str) -> Path:
    """``path`` if it exists and has the recorded SHA-256; else refuse the model."""
    if not path.is_file() or sha256(path) != expected:
        raise ModelError(f"{uri_text}: {what} missing or checksum mismatch (tampered?)")
    return path


def _load_calibration(folder: Path, uri_text: str) -> Calibration:
    from safetensors.numpy import load_file

    info = json.loads((folder / CALIBRATION_JSON).read_text())
    _verified(folder / CALIBRATION, info.get("statistics_sha256"), uri_text, "calibration")
    arrays = load_file(str(folder / CALIBRATION))
    if "thresholds" not in info:  # format of issue 3: one residual map, no combination
        stats = {"residual": Normative(arrays["mean"], arrays["std"])}
        return Calibration(score=["residual"], stats=stats, thresholds={"residual": Thresholds(
            float(info["voxel_threshold"]), float(info["scan_threshold"]),
            list(info.get("healthy_scan_scores", [])))}, info=info)
    names = {k.rsplit(".", 1)[0] for k in arrays}
    stats = {n: Normative(arrays[f"{n}.mean"], arrays[f"{n}.std"]) for n in sorted(names)}
    thresholds = {k: Thresholds(**v) for k, v in info["thresholds"].items()}
    return Calibration(score=list(info["score"]), stats=stats, thresholds=thresholds, info=info)


def resolve(uri: str | Path | None, params: Params | None
            ) -> tuple[Path, str, dict[str, str]]:
    """Turn a folder path or MLflow URI into a local folder, the URI as given and the
    registry tags of the model version it names (none for folders and ``runs:/``)."""
    if uri is not None and Path(uri).is_dir():
        return Path(uri), str(uri), {}
    if uri is None:
        from pipeline.config import load_params

        try:
            p = params or load_params()
        except Exception as exc:
            raise ModelError(f"no --model given and no project parameters ({exc})") from exc
        uri = f"models:/{p.mlflow.registered_model}@champion"
    text = str(uri)
    if not text.startswith(("models:/", "runs:/")):
        raise ModelError(f"{text}: neither a model folder nor an MLflow model URI")
    from pipeline.registry import fetch

    try:
        got = fetch(text)
    except Exception as exc:
        raise ModelError(f"{text}: cannot load from MLflow ({one_line(exc)})") from exc
    return got.folder, text, got.tags


def update_meta(folder: Path, params: Params, mlflow_info: dict[str, Any]) -> None:
    """Rewrite the parameters and MLflow version in ``model.json`` (weights untouched)."""
    from pipeline.config import to_dict
    from pipeline.nifti import write_json

    meta = json.loads((folder / MODEL_JSON).read_text())
    meta["params"] = to_dict(params)
    meta["mlflow"] = {**meta.get("mlflow", {}), **mlflow_info}
    write_json(folder / MODEL_JSON, meta)


def copy_model(src: Path, dst: Path) -> None:
    """Copy a model folder's files (weights + JSON) to ``dst``, each atomically."""
    from pipeline.nifti import copy_file

    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in (WEIGHTS, MODEL_JSON, TEMPLATE_FILE, HEAD_ATLAS_FILE):
        if name == HEAD_ATLAS_FILE and not (src / name).is_file():
            continue
        copy_file(src / name, dst / name)
