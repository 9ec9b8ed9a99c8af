"""The training loop: best weights, seeding, resume after a kill, early stopping, NaN guard."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.config.params import load_raw, params_from_dict
from pipeline.config.schema import Params
from pipeline.model import checkpoint
from pipeline.model.network import build_vae
from pipeline.model.objective import Likelihood
from pipeline.model.runtime import seed_everything
from pipeline.model.training import best_epoch, fit, kl_weight
from pipeline.model.validation import validate


def _params(architecture: str = "patch", **train: object) -> Params:
    raw = load_raw()
    raw["template"] = {"resolution_mm": 6.0, "crop_shape": [16, 16, 16]}
    raw["model"].update({"architecture": architecture, "channels": [4, 8], "blocks": [1, 1],
                         "strides": [2, 2], "latent_channels": 2})
    raw["train"].update({"epochs": 4, "batch_size": 2, "kl_warmup_epochs": 2,
                         "iwae_samples": 2, "iwae_every": 2, "checkpoint_every": 1,
                         "patch_size": 8 if architecture == "patch" else 0,
                         "lr_schedule": "onecycle"})
    raw["train"]["augment"].update({"rotation_deg": 3.0, "intensity_scale": 0.05})
    raw["train"].update(train)
    return params_from_dict(raw)


def _data(seed: int, n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, 16, generator=g)


BRAIN = torch.ones(6, 1, 16, 16, 16, dtype=torch.bool)


def _weights(params: Params, **kwargs: object) -> tuple[dict[str, torch.Tensor], object]:
    seed_everything(params.seed)
    vae = build_vae(params.model, params.template.crop_shape)
    result = fit(vae, _data(0), _data(1), BRAIN, params, **kwargs)  # type: ignore[arg-type]
    return vae.state_dict(), result


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_fit_keeps_the_best_validation_weights() -> None:
    params = _params()
    seed_everything(params.seed)
    vae = build_vae(params.model, params.template.crop_shape)
    result = fit(vae, _data(0), _data(1), BRAIN, params)
    assert len(result.history) == params.train.epochs
    v = validate(vae, _data(1), BRAIN, Likelihood("gaussian", params.model.recon_sigma),
                 params.seed, 2)
    assert v.negative_elbo == pytest.approx(best_epoch(result.history).val_negative_elbo,
                                            rel=1e-5)
    assert len(result.history[0].kl_channels) == 2
    iwae = [s.val_iwae_nll for s in result.history]
    assert iwae[0] is None and iwae[1] is not None and iwae[3] is not None  # every 2nd + last
    assert all(s.val_iwae_nll <= s.val_negative_elbo + 1e-3 for s in result.history
               if s.val_iwae_nll is not None)


@pytest.mark.parametrize("architecture", ["patch", "classic"])
def test_same_seed_same_weights(architecture: str) -> None:
    params = _params(architecture)
    _assert_same(_weights(params)[0], _weights(params)[0])


def test_resume_after_a_kill_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    params = _params()
    reference, _ = _weights(params, checkpoint_dir=tmp_path / "a", fingerprint="f")

    def killed(stats: object) -> None:
        if stats.epoch == 3:  # after epoch 2's checkpoint, before epoch 3's
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _weights(params, checkpoint_dir=tmp_path / "b", fingerprint="f", on_epoch=killed)
    (tmp_path / "b" / ".epoch_0003.tmp").mkdir()  # the debris a kill mid-write leaves
    start = checkpoint.load_latest(tmp_path / "b", "f")
    assert start is not None and start.epoch == 2 and not start.finished
    assert checkpoint.load_latest(tmp_path / "b", "other settings") is None
    resumed, result = _weights(params, checkpoint_dir=tmp_path / "b", fingerprint="f",
                               start=start)
    _assert_same(reference, resumed)
    assert result.resumed_from == 2  # type: ignore[attr-defined]
    assert [s.epoch for s in result.history] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    done = checkpoint.load_latest(tmp_path / "b", "f")
    assert done is not None and done.finished and done.epoch == 4
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch_*")) == [
        "epoch_0003", "epoch_0004"]


def test_early_stopping_keeps_the_best_epoch() -> None:
    params = _params(learning_rate=0.0, early_stopping_patience=1, epochs=10,
                     kl_schedule="constant")
    _, result = _weights(params)
    assert result.stopped_early and len(result.history) == 2  # type: ignore[attr-defined]
    assert result.best_epoch == 1  # type: ignore[attr-defined]


def test_non_finite_batches_are_skipped_not_learned(caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.model.batches as batches

    calls = []

    def corrupt_second_batch(x: torch.Tensor, ap: object, gen: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return x * float("nan") if len(calls) == 2 else x

    monkeypatch.setattr(batches, "augment", corrupt_second_batch)
    params = _params(epochs=1)
    seed_everything(params.seed)
    vae = build_vae(params.model, params.template.crop_shape)
    result = fit(vae, _data(0), _data(1), BRAIN, params)
    assert result.history[0].skipped_steps == 1
    assert "step skipped" in caplog.text
    assert all(torch.isfinite(v).all() for v in vae.state_dict().values())
    assert math.isfinite(result.history[0].val_negative_elbo)


def test_kl_schedules() -> None:
    lin = _params(kl_schedule="linear", kl_warmup_epochs=4, beta=0.5)
    assert [kl_weight(e, lin.train) for e in (1, 2, 4, 9)] == [0.125, 0.25, 0.5, 0.5]
    cyc = _params(kl_schedule="cyclical", kl_warmup_epochs=2, kl_cycle_epochs=3)
    assert [kl_weight(e, cyc.train) for e in range(1, 7)] == [0.5, 1.0, 1.0, 0.5, 1.0, 1.0]
    assert kl_weight(1, _params(kl_schedule="constant").train) == 1.0


def test_gradient_scaler_path_skips_non_finite_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fp16 path (older GPUs): loss scaling, unscaling before clipping, skipped steps.
    Emulated on the CPU with CPU autocast and an enabled CPU gradient scaler."""
    import pipeline.model.training as training

    monkeypatch.setattr(training, "autocast", lambda device, enabled: (
        torch.autocast("cpu", dtype=torch.bfloat16), torch.float16))
    calls = []

    def corrupt_third_batch(x: torch.Tensor, ap: object, gen: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return x * float("inf") if len(calls) == 3 else x

    import pipeline.model.batches as batches

    monkeypatch.setattr(batches, "augment", corrupt_third_batch)
    params = _params(epochs=2, grad_clip_norm=1.0)
    seed_everything(params.seed)
    vae = build_vae(params.model, params.template.crop_shape)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    result = fit(vae, _data(0), _data(1), BRAIN, params)
    assert sum(s.skipped_steps for s in result.history) == 1
    after = vae.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_autoencoder_variant_trains_without_kl_or_sampling(tmp_path: Path) -> None:
    from conftest import make_project

    from pipeline.config.params import load_params
    from pipeline.stages.train import run, variant

    params = load_params(make_project(tmp_path, {"evaluate": {"autoencoder_baseline": False}}))
    ae, where = variant(params, autoencoder=True)
    assert ae.train.beta == 0.0 and ae.train.free_bits == 0.0
    assert ae.mlflow.registered_model.endswith("-autoencoder")
    assert where.model_dir.name == "autoencoder" and where.checkpoints.name.endswith("autoencoder")
    assert variant(params, autoencoder=False)[0] is params
    run(params, autoencoder=True)  # disabled: a note instead of a model, nothing trained
    assert (where.model_dir / "DISABLED.txt").is_file()
    assert not (where.model_dir / "model.json").exists()
    # β = 0 never samples the posterior: the validation value is deterministic in the seed
    torch.manual_seed(0)
    ae = _params(beta=0.0)
    vae = build_vae(ae.model, ae.template.crop_shape).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    brain = torch.ones_like(x, dtype=torch.bool)
    a = validate(vae, x, brain, Likelihood("gaussian", 0.1), seed=1, batch_size=2, sample=False)
    b = validate(vae, x, brain, Likelihood("gaussian", 0.1), seed=2, batch_size=2, sample=False)
    assert a.reconstruction == b.reconstruction
