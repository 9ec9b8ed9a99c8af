"""MLflow tracking and registry: one run per training, one model version per trained model.

Artifacts stay in ``mlruns/`` beside the embedded ``mlflow.db`` (or wherever the remote
server set by ``MLFLOW_TRACKING_URI`` keeps them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import paths

MODEL_ARTIFACT = "model"
CHAMPION = "champion"


def setup(experiment: str) -> Any:
    """Point MLflow at the project's store and return the experiment id."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(paths.default_tracking_uri())
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is not None:
        return existing.experiment_id
    location = None
    if paths.default_tracking_uri().startswith("sqlite:"):
        location = paths.artifact_root().resolve().as_uri()
    return mlflow.create_experiment(experiment, artifact_location=location)


def register_version(run_id: str, name: str, description: str, tags: dict[str, str]) -> str:
    """Create a model version from the run's ``model`` artifacts and make it champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="3D convolutional VAE for unsupervised brain MRI anomaly maps")
    version = client.create_model_version(
        name, source=f"runs:/{run_id}/{MODEL_ARTIFACT}", run_id=run_id,
        description=description, tags=tags)
    client.set_registered_model_alias(name, CHAMPION, version.version)
    return str(version.version)


def add_to_version(run_id: str, name: str, version: str, files: list[Path],
                   tags: dict[str, str]) -> None:
    """Attach files (e.g. calibration) to a version's model artifacts and tag it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path=MODEL_ARTIFACT)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
