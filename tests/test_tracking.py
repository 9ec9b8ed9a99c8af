"""The champion alias moves only to a version with a better validation ELBO."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_champion_moves_only_on_a_better_validation_elbo(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from pipeline import tracking

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
