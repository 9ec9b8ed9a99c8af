"""Packaging a calibrated model folder as an MLflow model: signature, requirements, ``save``.

``calibrate`` imports this module only (not the scoring code), so its DVC dependencies stop
at what writing the MLflow model needs; the model's behaviour is
:mod:`pipeline.serving.mlflow_model`, which :func:`save` names as the "model from code" and
copies, with the whole package, into the model. A registered version therefore carries the
package's code as it was when it was registered.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from pipeline.modelstore.folder import PYFUNC_ARTIFACT as ARTIFACT

DISTRIBUTION = "vae-anomaly"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # the "model from code"
INPUTS = Schema([ColSpec("string", "scan"), ColSpec("string", "brain_mask", required=False)])
OUTPUTS = Schema([ColSpec("string", "scan"), ColSpec("string", "status"),
                  ColSpec("string", "verdict", required=False),
                  ColSpec("double", "scan_score", required=False),
                  ColSpec("double", "flagged_volume_ml", required=False),
                  ColSpec("string", "summary", required=False),
                  ColSpec("string", "error", required=False)])
PARAMS = ParamSchema([
    ParamSpec("out", "string", "vae-anomaly-results"),   # the output folder
    ParamSpec("report", "boolean", True),                 # write the HTML reports
    ParamSpec("force", "boolean", False),                 # re-score up-to-date outputs
    ParamSpec("device", "string", "auto")])               # auto | cpu | cuda
SIGNATURE = ModelSignature(inputs=INPUTS, outputs=OUTPUTS, params=PARAMS)


def requirements() -> list[str]:
    """The package's own declared dependencies (its metadata, not a second list)."""
    declared = importlib.metadata.requires(DISTRIBUTION) or []
    return [r for r in declared if "extra ==" not in r]


def save(model_folder: Path, dst: Path, metadata: dict[str, str]) -> None:
    """Write the MLflow model of ``model_folder`` (a calibrated model folder) to ``dst``: the
    folder as artifact ``vae_model``, this package as its code, a signature, the package's
    declared requirements."""
    import mlflow

    import pipeline

    package = Path(pipeline.__file__).parent
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr: errors
    with tempfile.TemporaryDirectory(prefix="vae-anomaly-mlflow-") as tmp, \
            warnings.catch_warnings():
        # MLflow's advice on type hints and input examples: the signature is explicit
        warnings.simplefilter("ignore", UserWarning)
        code, folder = Path(tmp) / package.name, Path(tmp) / ARTIFACT
        shutil.copytree(package, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(model_folder, folder)
        mlflow.pyfunc.save_model(
            path=str(dst), python_model=str(MODEL_CODE),
            artifacts={ARTIFACT: str(folder)}, code_paths=[str(code)],
            signature=SIGNATURE, pip_requirements=requirements(), metadata=metadata)
