"""Registered versions: immutable, calibrated, champion rule; the fast registry read."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty embedded MLflow store in ``tmp_path`` (experiment ``test``, whose id is
    returned) and a stand-in model folder ``tmp_path / "m"``."""
    from pipeline.modelstore import tracking

    monkeypatch.setenv("VAE_ANOMALY_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text("{}")
    return str(tracking.setup("test"))


def test_versions_are_immutable_and_champion_moves_only_on_a_better_elbo(
        tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from pipeline.modelstore import tracking
    from pipeline.modelstore.folder import (
        CALIBRATION_JSON_SHA_TAG,
        CALIBRATION_SHA_TAG,
        MODEL_JSON_SHA_TAG,
        WEIGHTS_SHA_TAG,
    )

    exp = store
    client = MlflowClient()

    def new_run() -> str:
        with mlflow.start_run(experiment_id=exp) as run:
            return str(run.info.run_id)

    def register(run_id: str, elbo: float, calibration: str = "c" * 64, key: str = "val-a",
                 thresholds: str = "t") -> tracking.Registration:
        (tmp_path / "m" / "calibration.json").write_text(thresholds)
        tags = {tracking.VAL_ELBO_TAG: f"{elbo:.6f}", WEIGHTS_SHA_TAG: run_id,
                CALIBRATION_SHA_TAG: calibration, CALIBRATION_JSON_SHA_TAG: thresholds,
                MODEL_JSON_SHA_TAG: "j"}
        return tracking.register_calibrated(run_id, "m", tmp_path / "m", "test model", tags, key)

    def snapshot(version: str) -> tuple[dict[str, str], str, str, str]:
        mv = client.get_model_version("m", version)
        files = Path(mlflow.artifacts.download_artifacts(mv.source, dst_path=str(
            tmp_path / "dl" / version)))
        return dict(mv.tags), mv.source, mv.description, (files / "calibration.json").read_text()

    first_run = new_run()
    first = register(first_run, -100.0)
    assert first.champion and first.version == "1"  # first version
    before = snapshot(first.version)
    again = register(first_run, -100.0)  # the same files again: that version, nothing new
    assert (again.version, again.champion) == (first.version, True)
    assert "already registered" in again.reason
    recal = register(first_run, -100.0, calibration="d" * 64)  # recalibration: a new version
    assert recal.version != first.version and recal.champion and "recalibration" in recal.reason
    assert client.get_model_version("m", recal.version).tags["recalibrates"] == first.version
    # new thresholds from the same statistics: a version of its own, in a folder of its own
    rethreshold = register(first_run, -100.0, calibration="d" * 64, thresholds="u")
    assert rethreshold.version not in (first.version, recal.version)
    assert snapshot(rethreshold.version)[3] == "u" and snapshot(recal.version)[3] == "t"
    worse = register(new_run(), -90.0)
    assert not worse.champion and "does not beat" in worse.reason
    assert not register(new_run(), -100.0000004).champion  # rounding is no win
    assert register(new_run(), -120.0).champion  # better: the alias moves
    other = register(new_run(), -50.0, key="val-b")  # other validation scans: not comparable
    assert other.champion and "not comparable" in other.reason
    assert str(client.get_model_version_by_alias("m", "champion").version) == other.version
    assert client.get_model_version("m", worse.version).tags["val_negative_elbo"] == "-90.000000"
    assert snapshot(first.version) == before  # nothing of a registered version changed
    assert snapshot(first.version)[1] != snapshot(recal.version)[1]  # its own artifact folder
    assert tracking.find_run(exp, {"no_such_tag": "x"}) is None

    # the fast registry read (sqlite3, no MLflow) pins the same version with the same tags
    # and finds the same files as MLflow's client; what it cannot be sure of goes to MLflow
    from pipeline.modelstore import registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for text in ("models:/m@champion", f"models:/m/{worse.version}", "models:/m/1"):
        fast, slow = registry.fetch_local(uri, text), registry.fetch_with_mlflow(text)
        assert fast is not None, text
        assert (fast.pinned, fast.tags, fast.run_id) == (slow.pinned, slow.tags, slow.run_id)
        assert sorted(p.name for p in fast.folder.iterdir()) == ["calibration.json",
                                                                 "model.json"]
        assert (fast.folder / "model.json").read_bytes() == (slow.folder / "model.json"
                                                             ).read_bytes()
    assert registry.fetch_local(uri, "models:/m@champion").pinned == f"models:/m/{other.version}"
    for text in ("models:/m@nosuchalias", "models:/nosuchmodel/1", "models:/m/latest",
                 "runs:/abc/model"):
        assert registry.fetch_local(uri, text) is None, text
    assert registry.fetch_local("http://127.0.0.1:5000", "models:/m/1") is None
    for var, value in (("MLFLOW_WORKSPACE", "team-b"), ("MLFLOW_REGISTRY_URI", "sqlite:///x")):
        with monkeypatch.context() as env:
            env.setenv(var, value)
            assert registry.fetch_local(uri, "models:/m@champion") is None, var
    client.delete_model_version("m", "1")
    assert registry.fetch_local(uri, "models:/m/1") is None


def test_the_fast_read_follows_only_the_tested_schema(tmp_path: Path, store: str) -> None:
    """The installed MLflow's schema head is the tested revision; a database that reports
    another revision is left to MLflow's client."""
    import importlib.resources
    import sqlite3

    import mlflow
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from mlflow.store import db_migrations

    from pipeline.modelstore import registry, tracking
    from pipeline.modelstore.folder import VERSION_FILES

    db = tmp_path / "mlflow.db"
    migrations = Config()  # MLflow's migration scripts, as its own alembic config names them
    migrations.set_main_option("script_location",
                               str(importlib.resources.files(db_migrations)))
    heads = ScriptDirectory.from_config(migrations).get_heads()
    assert set(heads) <= registry.TESTED_SCHEMA_REVISIONS
    with mlflow.start_run(experiment_id=store) as run:
        pass
    tags = {tracking.VAL_ELBO_TAG: "1.0", **{tag: tag for tag in VERSION_FILES}}
    tracking.register_calibrated(run.info.run_id, "m", tmp_path / "m", "d", tags, "k")
    uri = f"sqlite:///{db}"
    assert registry.fetch_local(uri, "models:/m@champion") is not None
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'f00dfeed0000'")
    assert registry.fetch_local(uri, "models:/m@champion") is None
    assert registry.fetch("models:/m@champion").pinned == "models:/m/1"  # MLflow's client
