"""MLflow tracking and registry: one run per training, one model version per trained model.

Artifacts stay in ``mlruns/`` beside the embedded ``mlflow.db`` (or wherever the remote
server set by ``MLFLOW_TRACKING_URI`` keeps them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import paths
from pipeline.io.atomic import sha256
from pipeline.modelstore.folder import VERSION_FILES, WEIGHTS_SHA_TAG

MODEL_ARTIFACT = "model"             # artifact folders: model-<calibration digest> (registered)
TRAINED_ARTIFACT = "trained"         # the uncalibrated model folder of a training run
CHAMPION = "champion"
VAL_ELBO_TAG = "val_negative_elbo"
VALIDATION_KEY_TAG = "validation_set"
# the files a version consists of: equal digests = the same version; their digest names the
# version's artifact folder (the statistics alone do not: thresholds change without them)
CONTENT_TAGS = tuple(VERSION_FILES)


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


def find_run(experiment_id: str, tags: dict[str, str]) -> str | None:
    """The newest run of the experiment with all these tags (content digests link a model
    folder to its run: no run id is written into DVC outputs), or None."""
    from mlflow import MlflowClient

    query = " AND ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
    runs = MlflowClient().search_runs([experiment_id], filter_string=query, max_results=1,
                                      order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def training_run(experiment: str, weights_sha256: str) -> str | None:
    """The newest run of ``experiment`` that trained the weights with this digest, or None."""
    return find_run(setup(experiment), {WEIGHTS_SHA_TAG: weights_sha256})


def register_calibrated(run_id: str, name: str, mlflow_model: Path, description: str,
                        tags: dict[str, str], validation_key: str) -> Registration:
    """Register the calibrated MLflow model ``mlflow_model`` as a new, immutable version.

    Its files go to their own artifact folder of the training run, named by the digest of its
    files (:data:`CONTENT_TAGS`; an existing folder is never written into), and every tag is
    set when the version is created: nothing of a version changes afterwards. A second
    calibration of the same weights is a new version with the lineage tag ``recalibrates``;
    the same files registered again return the existing version.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="3D convolutional VAE for unsupervised brain MRI anomaly maps")
    same_run = client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
    for mv in same_run:
        if all(mv.tags.get(k) == tags[k] for k in CONTENT_TAGS):
            return Registration(str(mv.version), _alias_is(client, name, str(mv.version)),
                                f"already registered as version {mv.version}")
    tags = {**tags, VALIDATION_KEY_TAG: validation_key}
    if same_run:
        tags["recalibrates"] = str(max(int(mv.version) for mv in same_run))
    moved, reason = _champion_decision(client, name, run_id, tags)
    content = hashlib.sha256(" ".join(tags[k] for k in CONTENT_TAGS).encode()).hexdigest()
    artifact_path = f"{MODEL_ARTIFACT}-{content[:16]}"
    if client.list_artifacts(run_id, artifact_path):
        raise RuntimeError(f"run {run_id} already has an artifact folder {artifact_path}: "
                           "refusing to write into another version's files")
    client.log_artifacts(run_id, str(mlflow_model), artifact_path=artifact_path)
    version = str(client.create_model_version(
        name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, description=description,
        tags={**tags, "champion_decision": reason}).version)
    if moved:
        client.set_registered_model_alias(name, CHAMPION, version)
    return Registration(version=version, champion=moved, reason=reason)


def _alias_is(client: Any, name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version) == version
    except MlflowException:
        return False


def _champion_decision(client: Any, name: str, run_id: str, tags: dict[str, str]
                       ) -> tuple[bool, str]:
    """Whether ``champion`` moves to the new calibrated version, and why: it does when there is
    none yet, when the champion is an earlier calibration of the same training run, when the
    champion was validated on other scans (not comparable), or when the new validation -ELBO
    is lower; otherwise the champion stays."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return True, "first calibrated version"
    new, old = float(tags[VAL_ELBO_TAG]), current.tags.get(VAL_ELBO_TAG)
    if current.run_id == run_id:
        return True, f"recalibration of version {current.version}'s trained model"
    if current.tags.get(VALIDATION_KEY_TAG) != tags[VALIDATION_KEY_TAG] or old is None:
        return True, f"version {current.version} was validated on other scans: not comparable"
    if new < float(old):
        return True, (f"validation -ELBO {new:.1f} beats version {current.version}'s "
                      f"{float(old):.1f} nats/volume")
    return False, (f"validation -ELBO {new:.1f} does not beat version {current.version}'s "
                   f"{float(old):.1f} nats/volume: champion stays")


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
