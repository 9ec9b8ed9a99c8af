"""The MLflow model of a calibrated vae-anomaly model: ``mlflow.pyfunc`` loads it anywhere.

Every registered version is an MLflow model (an ``MLmodel`` file, a signature, this module as
its code, the package under ``code/`` and the vae-anomaly model folder as its artifact
``vae_model``). ``predict`` takes NIfTI paths and writes what ``vae-anomaly score`` writes
(heatmap, mask, JSON summary, report, manifest) into the folder given by the ``out`` param; it
returns one row per scan with the verdict and the path of its JSON summary::

    import mlflow
    model = mlflow.pyfunc.load_model("models:/vae-anomaly-demo@champion")
    model.predict({"scan": ["sub-01_T1.nii.gz"]}, params={"out": "results"})

    $ mlflow models predict -m models:/vae-anomaly-demo@champion --env-manager local \\
        -i scans.json -o predictions.json     # scans.json: {"inputs": {"scan": [...]}}

The file is also MLflow's "model from code": loading runs it and takes the model it sets, so
nothing is unpickled. ``vae-anomaly score`` keeps its own fast path (no MLflow import).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import ModelSignature, set_model
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from pipeline.modelstore.folder import PYFUNC_ARTIFACT as ARTIFACT

DISTRIBUTION = "vae-anomaly"
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


class VaeAnomalyModel(PythonModel):
    """Scores NIfTI scans with the calibrated model of the ``vae_model`` artifact."""

    def load_context(self, context: Any) -> None:
        self.folder = Path(context.artifacts[ARTIFACT])
        self.loaded: dict[str, Any] = {}

    def _model(self, device: str) -> Any:
        """The verified model on ``device`` (loaded once per device)."""
        from pipeline.modelstore.loading import load_for_command

        if device not in self.loaded:
            self.loaded[device] = load_for_command(str(self.folder), device)
        return self.loaded[device]

    def predict(self, context, model_input, params=None):
        """Score the scans of ``model_input`` (a column ``scan``, optionally ``brain_mask``)
        into ``params["out"]``; one row per scan, in input order. (No type hints: MLflow
        would take them for a schema.)"""
        import pandas as pd

        from pipeline.commands.score import score_loaded
        from pipeline.io.atomic import check_writable_dir
        from pipeline.model.distributed import SINGLE_PROCESS
        from pipeline.scoring.batch import MANIFEST

        p = {spec.name: spec.default for spec in PARAMS.params} | dict(params or {})
        frame = _frame(model_input)
        scans = [Path(str(s)) for s in frame["scan"]]
        given = frame["brain_mask"] if "brain_mask" in frame else [None] * len(scans)
        masks = [Path(str(m)) if isinstance(m, str) and m else None for m in given]
        out = Path(str(p["out"]))
        args = argparse.Namespace(scans=scans, out=out, no_report=not p["report"],
                                  force=bool(p["force"]), workers=None, convention=None,
                                  debug=False)
        check_writable_dir(out)
        score_loaded(args, self._model(str(p["device"])), SINGLE_PROCESS, scans, masks)
        manifest = json.loads((out / MANIFEST).read_text())
        return pd.DataFrame([_row(e) for e in manifest["inputs"]], columns=OUTPUTS.input_names())


def _frame(model_input: Any) -> Any:
    """The input as one row per scan: MLflow hands a mapping of lists (``{"scan": [...]}``,
    or ``mlflow models predict``'s ``{"inputs": ...}``) over as a single row of lists."""
    import pandas as pd

    frame = pd.DataFrame(model_input)
    listed = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, list | tuple))
              .any()]
    return frame.explode(listed, ignore_index=True) if listed else frame


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry as a prediction row (the summary's figures where it was scored)."""
    summary_path = entry.get("outputs", {}).get("json")
    # missing text is "" rather than NaN in MLflow's JSON output; a failed scan's figures are NaN
    row = {"scan": entry["input"], "status": entry["status"],
           "verdict": entry.get("verdict") or "", "summary": summary_path or "",
           "error": entry.get("error") or "", "scan_score": None, "flagged_volume_ml": None}
    if summary_path and Path(summary_path).is_file():
        summary = json.loads(Path(summary_path).read_text())
        row.update(scan_score=summary.get("scan_score"),
                   flagged_volume_ml=summary.get("flagged_volume_ml"))
    return row


def requirements() -> list[str]:
    """The package's own declared dependencies (its metadata, not a second list)."""
    declared = importlib.metadata.requires(DISTRIBUTION) or []
    return [r for r in declared if "extra ==" not in r]


def save(model_folder: Path, dst: Path, metadata: dict[str, str]) -> None:
    """Write the MLflow model of ``model_folder`` (a calibrated model folder) to ``dst``: the
    folder as artifact ``vae_model``, this package as its code, a signature, the package's
    declared requirements."""
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
            path=str(dst), python_model=str(Path(__file__).resolve()),
            artifacts={ARTIFACT: str(folder)}, code_paths=[str(code)],
            signature=SIGNATURE, pip_requirements=requirements(), metadata=metadata)


set_model(VaeAnomalyModel())
