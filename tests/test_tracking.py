"""The champion alias moves only to a version with a better validation ELBO."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_champion_moves_only_on_a_better_validation_elbo(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from pipeline.modelstore import tracking

    monkeypatch.setenv("VAE_ANOMALY_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = tracking.setup("test")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text("{}")

    def register(elbo: float, key: str = "val-a") -> tracking.Registration:
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_artifacts(str(tmp_path / "m"), artifact_path=tracking.MODEL_ARTIFACT)
        return tracking.register_version(run.info.run_id, "m", "test model", {}, elbo, key)

    assert register(-100.0).champion  # first version
    assert not register(-100.0000004).champion  # the same model again: rounding is no win
    worse = register(-90.0)
    assert not worse.champion and "does not beat" in worse.reason
    assert register(-120.0).champion  # better: the alias moves
    other = register(-50.0, key="val-b")  # other validation scans: not comparable
    assert other.champion and "not comparable" in other.reason
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("m", "champion").version) == other.version
    assert client.get_model_version("m", worse.version).tags["val_negative_elbo"] == "-90.000000"

    # the fast registry read (sqlite3, no MLflow) pins the same version with the same tags
    # and finds the same files as MLflow's client; what it cannot be sure of goes to MLflow
    from pipeline.modelstore import registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for text in ("models:/m@champion", f"models:/m/{worse.version}", "models:/m/1"):
        fast, slow = registry.fetch_local(uri, text), registry.fetch_with_mlflow(text)
        assert fast is not None, text
        assert (fast.pinned, fast.tags) == (slow.pinned, slow.tags), text
        assert sorted(p.name for p in fast.folder.iterdir()) == ["model.json"]
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
