"""Loading a model: a folder or an MLflow URI → a verified :class:`LoadedModel`.

Every file is checked against its recorded SHA-256 (and, for a registered version, against
the registry's own record) before it is used; nothing is unpickled. Older folder formats are
migrated by :mod:`pipeline.modelstore.format`.

Example:
    >>> load_model("no/such/folder")
    Traceback (most recent call last):
    ...
    pipeline.modelstore.types.ModelError: no/such/folder: neither a model folder nor an MLflow ...
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.config import paths
from pipeline.config.params import model_config_from_dict
from pipeline.config.paths import HEAD_ATLAS_FILE
from pipeline.config.schema import ModelConfig, Params
from pipeline.io.errors import UsageError, one_line
from pipeline.model.distributed import SINGLE_PROCESS, World
from pipeline.model.network import build_vae
from pipeline.modelstore import format as fmt
from pipeline.modelstore.folder import (
    CALIBRATION,
    CALIBRATION_JSON,
    CALIBRATION_SHA_TAG,
    MODEL_JSON,
    PYFUNC_ARTIFACT,
    WEIGHTS,
    WEIGHTS_SHA_TAG,
    agrees,
    safely,
    verified,
)
from pipeline.modelstore.types import Calibration, LoadedModel, ModelError, Normative, Thresholds
from pipeline.preprocess.harmonise import NONE, StandardScale
from pipeline.preprocess.prepare import Preprocessor
from pipeline.space.template import TEMPLATE_FILE, read_template

if TYPE_CHECKING:
    from pipeline.preprocess.headatlas import HeadAtlas

log = logging.getLogger(__name__)
MLMODEL = "MLmodel"  # an MLflow model's description file
CALIBRATION_KEYS = ("score", "thresholds", "precision")  # required in calibration.json


def _read_meta(folder: Path, uri_text: str) -> tuple[dict[str, Any], ModelConfig]:
    """``model.json`` in the current format and the configuration it holds (strictly
    checked)."""
    try:
        meta = fmt.migrate_meta(json.loads((folder / MODEL_JSON).read_text()))
        return meta, model_config_from_dict(meta["params"])
    except ModelError as exc:
        raise ModelError(f"{uri_text}: {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{uri_text}: not a vae-anomaly model folder ({exc})") from exc


def load_model(uri: str | Path, device: str = "cpu", require_calibration: bool = True
               ) -> LoadedModel:
    """Load and verify a model folder or an MLflow model URI (``models:/``, ``runs:/``)."""
    from safetensors.torch import load_file

    folder, uri_text, registry, version = resolve(uri)
    meta, stored = _read_meta(folder, uri_text)
    meta["mlflow"] = {**meta.get("mlflow", {}), **version}
    if uri_text.startswith("models:/") and WEIGHTS_SHA_TAG not in registry:
        log.warning("%s: the registry records no weights checksum for this version (older "
                    "versions, or a URI without a version number or alias): checked against "
                    "model.json only", uri_text)
    agrees(registry, WEIGHTS_SHA_TAG, meta.get("weights_sha256"), uri_text, "weights")
    weights = verified(folder / WEIGHTS, meta.get("weights_sha256"), uri_text, "weights")
    template = safely(uri_text, "template", lambda: read_template(verified(
        folder / TEMPLATE_FILE, meta.get("template_sha256"), uri_text, "template")))
    vae = build_vae(stored.model, stored.template.crop_shape)
    # safetensors holds raw tensors only: nothing in the file is ever executed
    safely(uri_text, "weights", lambda: vae.load_state_dict(load_file(str(weights),
                                                                       device="cpu")))
    vae.to(device).eval()
    pre = Preprocessor.of(stored, template, _head_atlas(folder, meta, uri_text),
                          _scale(meta, uri_text))
    loaded = LoadedModel(vae=vae, params=stored, meta=meta, folder=folder, uri=uri_text,
                         preprocessor=pre)
    if (folder / CALIBRATION_JSON).is_file():
        _attach_calibration(loaded, registry)
    elif require_calibration:
        loaded.calibrated()  # refuses, with the reason
    return loaded


def _head_atlas(folder: Path, meta: dict[str, Any], uri_text: str) -> HeadAtlas | None:
    """The model's head atlas (verified), if it has one."""
    if not meta.get("head_atlas_sha256"):
        return None
    from pipeline.preprocess import headatlas

    return safely(uri_text, "head atlas", lambda: headatlas.read(verified(
        folder / HEAD_ATLAS_FILE, meta["head_atlas_sha256"], uri_text, "head atlas")))


def _scale(meta: dict[str, Any], uri_text: str) -> StandardScale:
    """The standard intensity scale ``prepare`` learned (none for older folders)."""
    if not meta.get("harmonisation"):
        return NONE
    return safely(uri_text, "harmonisation",
                  lambda: StandardScale.from_json(meta["harmonisation"]))


def _attach_calibration(loaded: LoadedModel, registry: dict[str, str]) -> None:
    """Read the calibration (verified) and score in the precision it was made with where the
    device runs that natively."""
    from pipeline.model.runtime import follow_calibration

    calib = safely(loaded.uri, "calibration", lambda: _load_calibration(loaded))
    agrees(registry, CALIBRATION_SHA_TAG, calib.info.get("statistics_sha256"), loaded.uri,
            "calibration")
    sp = loaded.params.scoring
    precision = follow_calibration(sp.precision, calib.info["precision"],
                                   next(loaded.vae.parameters()).device)
    loaded.calibration = calib
    loaded.params = replace(loaded.params, scoring=replace(sp, precision=precision))


def _load_calibration(loaded: LoadedModel) -> Calibration:
    from safetensors.numpy import load_file

    folder = loaded.folder
    info = json.loads((folder / CALIBRATION_JSON).read_text())
    verified(folder / CALIBRATION, info.get("statistics_sha256"), loaded.uri, "calibration")
    info = fmt.migrate_calibration(fmt.source_format(loaded.meta), info)
    missing = [k for k in CALIBRATION_KEYS if k not in info]
    if missing:
        raise ModelError(f"{loaded.uri}: calibration.json lacks {missing}")
    arrays = load_file(str(folder / CALIBRATION))
    arrays = {info.get("arrays", {}).get(k, k): v for k, v in arrays.items()}
    names = {k.rsplit(".", 1)[0] for k in arrays}
    stats = {n: Normative(arrays[f"{n}.mean"], arrays[f"{n}.std"]) for n in sorted(names)}
    thresholds = {k: Thresholds(**v) for k, v in info["thresholds"].items()}
    return Calibration(score=list(info["score"]), stats=stats, thresholds=thresholds, info=info,
                       domain=dict(info.get("domain", {})))


def champion_uri(params: Params) -> str:
    """The URI of the configured registered model's ``champion`` alias."""
    from pipeline.modelstore.tracking import CHAMPION

    return f"models:/{params.mlflow.registered_model}@{CHAMPION}"


def resolve(uri: str | Path) -> tuple[Path, str, dict[str, str], dict[str, str]]:
    """Turn a folder path or MLflow URI into a local model folder, the URI as given, the
    registry tags of the model version it names and that version (registered model, number,
    run; both empty for folders and ``runs:/``). An MLflow model (``MLmodel``) gives the model
    folder among its artifacts."""
    if Path(uri).is_dir():
        return _model_folder(Path(uri)), str(uri), {}, {}
    text = str(uri)
    if not text.startswith(("models:/", "runs:/")):
        raise ModelError(f"{text}: neither a model folder nor an MLflow model URI")
    if text.startswith("models:/"):
        _require_registry(text)
    from pipeline.modelstore.registry import fetch, parse

    try:
        got = fetch(text)
    except Exception as exc:
        raise ModelError(f"{text}: cannot load from MLflow ({one_line(exc)})") from exc
    version = {}
    if (pinned := parse(got.pinned)) is not None:
        version = {"registered_model": pinned[0], "version": pinned[2], "run_id": got.run_id}
    return _model_folder(got.folder), text, got.tags, version


def _model_folder(folder: Path) -> Path:
    """``folder``, or for an MLflow model the vae-anomaly model folder among its artifacts."""
    mlmodel = folder / MLMODEL
    if not mlmodel.is_file():
        return folder
    try:
        spec = yaml.safe_load(mlmodel.read_text())
        path = spec["flavors"]["python_function"]["artifacts"][PYFUNC_ARTIFACT]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ModelError(f"{folder}: an MLflow model without a vae-anomaly model folder "
                         f"({one_line(exc)})") from exc
    return folder / str(path)


def _require_registry(uri: str) -> None:
    """Refuse, before MLflow would create an empty database, a project store that does not
    exist yet."""
    tracking = paths.default_tracking_uri()
    if tracking.startswith("sqlite:///"):
        db = Path(tracking.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ModelError(f"{uri}: no model registry at {db} (nothing trained in this "
                             "project yet): run `dvc repro` first, or give --model <model "
                             "folder or MLflow URI>")


def load_for_command(uri: str, device_choice: str, require_calibration: bool = True,
                     world: World = SINGLE_PROCESS) -> LoadedModel:
    """The model a command asked for, on the device it asked for (under torchrun: this rank's
    GPU, ``cuda:LOCAL_RANK``); anything wrong is a :class:`UsageError` (exit 2)."""
    import torch

    from pipeline.model.runtime import NoDeviceError, pick_device

    try:
        device = pick_device(device_choice, "--device").type
    except NoDeviceError as exc:
        raise UsageError(str(exc)) from exc
    if device == "cuda":  # same scan, same GPU, same map (docs/explanation/reliability.md)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        if world.distributed:
            if world.local_rank >= torch.cuda.device_count():
                raise UsageError(f"local rank {world.local_rank} has no GPU of its own "
                                 f"({torch.cuda.device_count()} visible)")
            torch.cuda.set_device(world.local_rank)
            device = f"cuda:{world.local_rank}"
    try:
        return load_model(uri, device=device, require_calibration=require_calibration)
    except ModelError as exc:
        raise UsageError(f"model: {exc}") from exc


def command_model_uri(given: str | None) -> str:
    """``--model`` as given, or (not given) the champion of the project's registered model;
    a registry URI whose project store does not exist is refused here, before a command
    creates any file (MLflow would create an empty database)."""
    if given is None:
        from pipeline.config.params import load_params

        try:
            given = champion_uri(load_params())
        except Exception as exc:
            raise UsageError(f"model: no --model given and no project parameters ({exc})"
                             ) from exc
    if given.startswith("models:/"):
        try:
            _require_registry(given)
        except ModelError as exc:
            raise UsageError(f"model: {exc}") from exc
    return given


def model_for_command(given: str | None, device_choice: str, outs: tuple[Path, ...] = (),
                      require_calibration: bool = True, world: World = SINGLE_PROCESS
                      ) -> LoadedModel:
    """Every command's start: the model ``--model`` names (or the project's champion) is
    resolved before any file is created, each of the output folders ``outs`` is created and
    proved writable, and the model is loaded on the chosen device; anything wrong is a
    :class:`UsageError` (exit 2)."""
    from pipeline.io.atomic import check_writable_dir

    uri = command_model_uri(given)
    for out in outs:
        check_writable_dir(out)
    return load_for_command(uri, device_choice, require_calibration, world)
