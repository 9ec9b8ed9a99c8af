"""Model folders (weights + JSON, never pickle): write, verify, load.

A model folder holds ``weights.safetensors``, ``template.safetensors`` (the template crop the
scans are registered to), ``model.json`` (its format, the parameter sections a model keeps:
:class:`~pipeline.config.schema.ModelConfig`; what it was trained on, its training
provenance, the SHA-256 of weights and template),
``head_atlas.safetensors`` when the training scans had skull and masks (brain extraction of
scans with skull), and, once calibrated, ``calibration.safetensors`` + ``calibration.json``.
Every file is checked against its recorded SHA-256 on load (and, for a registered version,
against the registry's own record); older folder formats are migrated by
:mod:`pipeline.modelstore.format`.

Loading (and verifying) a folder: :mod:`pipeline.modelstore.loading`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline.config.params import to_dict
from pipeline.config.paths import HEAD_ATLAS_FILE
from pipeline.config.schema import ModelConfig, Params
from pipeline.io.atomic import atomic_write, copy_file, sha256, write_arrays, write_json
from pipeline.io.errors import one_line
from pipeline.modelstore import format as fmt
from pipeline.modelstore.types import Calibration, ModelError
from pipeline.space.template import TEMPLATE_FILE, Template, save_template

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
CALIBRATION = "calibration.safetensors"
CALIBRATION_JSON = "calibration.json"
WEIGHTS_SHA_TAG = "weights_sha256"          # model version tags: the registry's own record,
CALIBRATION_SHA_TAG = "calibration_sha256"  # checked against the downloaded files on load
MODEL_JSON_SHA_TAG = "model_json_sha256"
CALIBRATION_JSON_SHA_TAG = "calibration_json_sha256"
# the files a registered version consists of, by the tag that records each one's SHA-256
VERSION_FILES = {WEIGHTS_SHA_TAG: WEIGHTS, CALIBRATION_SHA_TAG: CALIBRATION,
                 CALIBRATION_JSON_SHA_TAG: CALIBRATION_JSON, MODEL_JSON_SHA_TAG: MODEL_JSON}
PYFUNC_ARTIFACT = "vae_model"  # the model folder's name among a registered MLflow model's
                               # artifacts (MLmodel's python_function artifacts)


T = TypeVar("T")


def save_model(folder: Path, vae: Any, params: Params, meta: dict[str, Any],
               head_atlas: Path | None, template: Template) -> None:
    """Write weights, ``template``, ``model.json`` (and a copy of ``head_atlas``, if there is
    one) into ``folder``, in the current format."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p)))
    save_template(template, folder / TEMPLATE_FILE)
    body = {"format": fmt.FORMAT, **meta, "params": to_dict(params.model_config()),
            "weights_sha256": sha256(folder / WEIGHTS),
            "template_sha256": sha256(folder / TEMPLATE_FILE)}
    (folder / HEAD_ATLAS_FILE).unlink(missing_ok=True)
    if head_atlas is not None:
        copy_file(head_atlas, folder / HEAD_ATLAS_FILE)
        body["head_atlas_sha256"] = sha256(folder / HEAD_ATLAS_FILE)
    write_json(folder / MODEL_JSON, body)


def save_calibration(folder: Path, calib: Calibration) -> None:
    """Write the statistics (safetensors) and ``calibration.json`` (thresholds, once each)."""
    arrays = {}
    for name, st in calib.stats.items():
        arrays[f"{name}.mean"] = st.mean.astype(np.float32)
        arrays[f"{name}.std"] = st.std.astype(np.float32)
    write_arrays(folder / CALIBRATION, arrays)
    write_json(folder / CALIBRATION_JSON, {
        **calib.info, "score": calib.score, "primary": calib.primary,
        "thresholds": {k: asdict(v) for k, v in calib.thresholds.items()},
        "domain": calib.domain,
        "statistics_sha256": sha256(folder / CALIBRATION)})


def file_digests(folder: Path) -> dict[str, str]:
    """The SHA-256 of each of :data:`VERSION_FILES` in ``folder``, by tag."""
    return {tag: sha256(folder / name) for tag, name in VERSION_FILES.items()}


def safely(uri_text: str, what: str, read: Callable[[], T]) -> T:
    """``read()``, with anything but a :class:`ModelError` turned into one line."""
    try:
        return read()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{uri_text}: {what} is not a valid file of a vae-anomaly model "
                         f"({one_line(exc)})") from exc


def agrees(tags: dict[str, str], key: str, recorded: str | None, uri_text: str, what: str
            ) -> None:
    """Refuse a model whose files disagree with the checksum its model version records."""
    if key in tags and tags[key] != recorded:
        raise ModelError(f"{uri_text}: {what} differ from the checksum recorded in the model "
                         "registry (tampered?)")


def verified(path: Path, expected: str | None, uri_text: str, what: str) -> Path:
    """``path`` if it exists and has the recorded SHA-256; else refuse the model."""
    if not path.is_file() or sha256(path) != expected:
        raise ModelError(f"{uri_text}: {what} missing or checksum mismatch (tampered?)")
    return path


def update_meta(folder: Path, config: ModelConfig) -> None:
    """Rewrite ``model.json`` in the current format with this configuration (weights
    untouched)."""
    meta = fmt.migrate_meta(json.loads((folder / MODEL_JSON).read_text()))
    meta.pop("migrated_from", None)  # written anew: the current format
    meta["params"] = to_dict(config)
    write_json(folder / MODEL_JSON, meta)


def copy_model(src: Path, dst: Path) -> None:
    """Copy a model folder's files (weights + JSON) to ``dst``, each atomically."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in (WEIGHTS, MODEL_JSON, TEMPLATE_FILE, HEAD_ATLAS_FILE):
        if name == HEAD_ATLAS_FILE and not (src / name).is_file():
            continue
        copy_file(src / name, dst / name)
