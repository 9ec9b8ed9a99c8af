"""The MLflow model of a calibrated vae-anomaly model: ``mlflow.pyfunc`` loads it anywhere.

Every registered version is an MLflow model (an ``MLmodel`` file, a signature, this module as
its code, the package under ``code/`` and the vae-anomaly model folder as its artifact
``vae_model``; written by :func:`pipeline.serving.packaging.save`). ``predict`` takes NIfTI
paths and scores them with the scoring service (:class:`~pipeline.inference.scorer.Scorer`),
writing what ``vae-anomaly score`` writes (heatmap, mask, JSON summary, report, manifest)
into the folder given by the ``out`` param; it returns one row per scan, built from the
service's results, with the verdict and the path of its JSON summary::

    import mlflow
    model = mlflow.pyfunc.load_model("models:/vae-anomaly-demo@champion")
    model.predict({"scan": ["sub-01_T1.nii.gz"]}, params={"out": "results"})

    $ mlflow models predict -m models:/vae-anomaly-demo@champion --env-manager local \\
        -i scans.json -o predictions.json     # scans.json: {"inputs": {"scan": [...]}}

The file is also MLflow's "model from code": loading runs it and takes the model it sets, so
nothing is unpickled. ``vae-anomaly score`` keeps its own fast path (no MLflow import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from pipeline.serving.packaging import ARTIFACT, OUTPUTS, PARAMS


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

        from pipeline.commands.score import Progress
        from pipeline.inference.options import ScoreOptions
        from pipeline.inference.scorer import Scorer
        from pipeline.io.atomic import check_writable_dir
        from pipeline.reporting.scan_report import render_result

        p = {spec.name: spec.default for spec in PARAMS.params} | dict(params or {})
        frame = _frame(model_input)
        scans = [Path(str(s)) for s in frame["scan"]]
        given = frame["brain_mask"] if "brain_mask" in frame else [None] * len(scans)
        masks = [Path(str(m)) if isinstance(m, str) and m else None for m in given]
        options = ScoreOptions(out=Path(str(p["out"])), report=bool(p["report"]),
                               force=bool(p["force"]))
        check_writable_dir(options.out)
        run = Scorer(self._model(str(p["device"])), render=render_result).score_files(
            scans, masks, options, Progress(len(scans)).done)
        return pd.DataFrame([_row(o) for o in run.outcomes], columns=OUTPUTS.input_names())


def _frame(model_input: Any) -> Any:
    """The input as one row per scan: MLflow hands a mapping of lists (``{"scan": [...]}``,
    or ``mlflow models predict``'s ``{"inputs": ...}``) over as a single row of lists."""
    import pandas as pd

    frame = pd.DataFrame(model_input)
    listed = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, list | tuple))
              .any()]
    return frame.explode(listed, ignore_index=True) if listed else frame


def _row(outcome: Any) -> dict[str, Any]:
    """One input's outcome as a prediction row (the summary's figures where it has one)."""
    record = {} if outcome.summary is None else outcome.summary.to_json()  # as its JSON
    json_path = outcome.outputs.get("json")
    # missing text is "" rather than NaN in MLflow's JSON output; a failed scan's figures are NaN
    return {"scan": str(outcome.input), "status": str(outcome.status),
            "verdict": outcome.verdict or "", "summary": str(json_path or ""),
            "error": outcome.error or "", "scan_score": record.get("scan_score"),
            "flagged_volume_ml": record.get("flagged_volume_ml")}


set_model(VaeAnomalyModel())
