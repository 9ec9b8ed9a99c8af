"""MLflow tracking and registry: one run per training, one model version per trained model.

Artifacts stay in ``mlruns/`` beside the embedded ``mlflow.db`` (or wherever the remote
server set by ``MLFLOW_TRACKING_URI`` keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import paths
from pipeline.io.atomic import sha256

MODEL_ARTIFACT = "model"
CHAMPION = "champion"
VAL_ELBO_TAG = "val_negative_elbo"
VALIDATION_KEY_TAG = "validation_set"


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


@dataclass(frozen=True)
class Registration:
    version: str
    champion: bool   # whether alias ``champion`` now points at this version
    reason: str


def register_version(run_id: str, name: str, description: str, tags: dict[str, str],
                     val_negative_elbo: float, validation_key: str) -> Registration:
    """Create a model version from the run's ``model`` artifacts; move ``champion`` to it
    only when its validation -ELBO beats the champion's on the same validation set.

    ``validation_key`` identifies the validation scans and the space they are in: ELBOs of
    models validated on other scans (or another template crop) are not comparable, and then
    the newer model becomes champion (the reason is recorded on the version).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="3D convolutional VAE for unsupervised brain MRI anomaly maps")
    stored = f"{val_negative_elbo:.6f}"
    val_negative_elbo = float(stored)  # compare at the precision the tags keep: a re-registered
    version = str(client.create_model_version(  # model must not "beat" itself by rounding
        name, source=f"runs:/{run_id}/{MODEL_ARTIFACT}", run_id=run_id,
        description=description,
        tags={**tags, VAL_ELBO_TAG: stored, VALIDATION_KEY_TAG: validation_key}).version)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    moved, reason = True, "first version"
    if current is not None:
        old = current.tags.get(VAL_ELBO_TAG)
        if current.tags.get(VALIDATION_KEY_TAG) != validation_key or old is None:
            reason = f"version {current.version} was validated on other scans: not comparable"
        elif val_negative_elbo < float(old):
            reason = (f"validation -ELBO {val_negative_elbo:.1f} beats version "
                      f"{current.version}'s {float(old):.1f} nats/volume")
        else:
            moved = False
            reason = (f"validation -ELBO {val_negative_elbo:.1f} does not beat version "
                      f"{current.version}'s {float(old):.1f} nats/volume: champion stays")
    if moved:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "champion_decision", reason)
    return Registration(version=version, champion=moved, reason=reason)


def add_to_version(run_id: str, name: str, version: str, files: list[Path],
                   tags: dict[str, str]) -> None:
    """Attach files (e.g. calibration) to a version's model artifacts and tag it."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path=MODEL_ARTIFACT)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def log_evaluation(run_id: str, metrics: dict[str, float]) -> None:
    """The test metrics of the evaluated model version, on its training run (``test_*``)."""
    import math
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    now = int(time.time() * 1000)
    rows = [Metric(f"test_{k}", float(v), now, 0) for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)]
    client.log_batch(run_id, metrics=rows)


def run_exists(run_id: str) -> bool:
    """Whether the tracking store still has this run (a resumed training logs into it)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def provenance_tags(root: Path) -> dict[str, str]:
    """What a run was made from, as tags: the project's git commit (``unknown`` outside a git
    checkout) and the SHA-256 of its ``dvc.lock`` when the run started."""
    lock = root / "dvc.lock"
    return {"git_commit": git_commit(root),
            "dvc_lock_sha256_at_start": sha256(lock) if lock.is_file() else "none"}


def git_commit(root: Path) -> str:
    """The commit checked out in ``root`` read from ``.git`` (no git process is started:
    nothing here ever runs a shell), or ``unknown``."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head                       # a detached HEAD holds the commit itself
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        pass
    return "unknown"
