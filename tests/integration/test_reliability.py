"""Crashes and restarts (SIGKILL in a subprocess), restartable batches, untrusted model files
(no unpickling, registry checksums), no network at run time, half-precision fallback."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO

from pipeline.cli import main

# Runs ``vae-anomaly ARGS`` and SIGKILLs the process at the ``NTH`` atomic rename onto a
# path whose name ends with ``SUFFIX``: the temp file is written, the rename never happens,
# exactly as if the machine had killed the job mid-write.
KILLER = """
import os, signal, sys
from pathlib import Path
suffix, nth = sys.argv[1], int(sys.argv[2])
real, seen = os.replace, [0]
def dying_replace(src, dst, *args, **kwargs):
    if Path(dst).name.endswith(suffix):
        seen[0] += 1
        if seen[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.replace = dying_replace
from pipeline.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _run(args: list[str], root: Path, kill_at: tuple[str, int] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAE_ANOMALY_ROOT": str(root),  # this checkout's package, always
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": ""}  # CPU: the bit-for-bit comparisons hold there
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-c", KILLER, *map(str, kill_at), *args] if kill_at else [
        sys.executable, "-m", "pipeline.cli", *args]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def _scans(project: Path, n: int) -> list[Path]:
    split = json.loads((project / "data" / "prepared" / "split.json").read_text())
    cases = split["test_healthy"] + split["test_lesion"]
    return [Path(c["image"]) for c in cases[:n]]


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _same_outputs(a: Path, b: Path, stem: str) -> None:
    for suffix in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz"):
        ia, ib = nib.load(a / f"{stem}{suffix}"), nib.load(b / f"{stem}{suffix}")
        assert np.array_equal(np.asarray(ia.dataobj), np.asarray(ib.dataobj)), suffix
        assert np.array_equal(ia.affine, ib.affine)
    ja, jb = (json.loads((d / f"{stem}.json").read_text()) for d in (a, b))
    for j in (ja, jb):
        for volatile in ("created", "timings_s"):
            j.pop(volatile)
        j["provenance"].pop("outputs")  # gzip headers carry the write time
    assert ja == jb


def test_killed_score_leaves_no_partial_file_and_rerun_finishes_only_the_rest(
        in_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scans = _scans(in_project, 3)
    stems = [p.name.removesuffix(".nii.gz") for p in scans]
    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    assert main(["score", *map(str, scans), "--out", str(ref), "--device", "cpu"]) == 0
    killed = _run(["score", *map(str, scans), "--out", str(out)], in_project,
                  kill_at=("_anomaly.nii.gz", 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    first = [f"{stems[0]}{s}" for s in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz", ".json",
                                        ".html")]
    assert _visible(out) == sorted(first)  # the finished scan only: nothing truncated
    assert any(p.name.startswith(".") for p in out.iterdir())  # the kill's temp debris
    for name in first:
        if name.endswith(".nii.gz"):
            np.asarray(nib.load(out / name).dataobj)  # reads to the end
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["score", *map(str, scans), "--out", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("up to date:") == 1
    assert all((out / n).stat().st_mtime_ns == before[n] for n in first)  # not redone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # debris cleaned
    assert _visible(out) == _visible(ref)
    for stem in stems:
        _same_outputs(ref, out, stem)


def test_batch_score_redoes_exactly_what_changed(in_project: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    scans = [Path(shutil.copy(p, tmp_path / p.name)) for p in _scans(in_project, 2)]
    out = tmp_path / "out"
    args = ["score", *map(str, scans), "--out", str(out), "--no-report"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("up to date:") == 2
    heat = out / f"{scans[0].name.removesuffix('.nii.gz')}_anomaly.nii.gz"
    heat.write_bytes(heat.read_bytes()[:100])  # a damaged output: redone
    img = nib.load(scans[1])  # a changed input (same name): redone
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * 1.01, img.affine, img.header), scans[1])
    assert main(args) == 0
    assert "up to date:" not in capsys.readouterr().out
    np.asarray(nib.load(heat).dataobj)
    assert main([*args, "--force"]) == 0
    assert "up to date:" not in capsys.readouterr().out
    assert main(["score", *map(str, scans), "--out", str(out)]) == 0  # a report now: redone
    assert "up to date:" not in capsys.readouterr().out


def _project_copy(src: Path, dst: Path) -> Path:
    for part in ("configs", "data/prepared"):
        shutil.copytree(src / part, dst / part, symlinks=True)
    return dst


def test_killed_training_resumes_to_the_uninterrupted_weights(tiny_project: Path,
                                                              tmp_path: Path) -> None:
    from safetensors.torch import load_file

    params = ["--params", "configs/params.yaml"]
    whole = _project_copy(tiny_project, tmp_path / "whole")
    done = _run(["train", *params], whole)
    assert done.returncode == 0, done.stderr
    cut = _project_copy(tiny_project, tmp_path / "cut")
    killed = _run(["train", "--resume", *params], cut, kill_at=("epoch_0002", 1))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpts = cut / "models" / "checkpoints"
    assert json.loads((ckpts / "latest.json").read_text())["epoch"] == 1
    assert not (cut / "models" / "trained" / "weights.safetensors").exists()
    resumed = _run(["train", "--resume", *params], cut)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    a = load_file(str(whole / "models" / "trained" / "weights.safetensors"))
    b = load_file(str(cut / "models" / "trained" / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(ckpts.glob(".epoch_*"))  # the killed write's folder was cleaned up


class _Payload:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_payloads_are_never_executed(in_project: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.io.atomic import sha256
    from pipeline.model import checkpoint
    from pipeline.modelstore.loading import load_model
    from pipeline.modelstore.types import ModelError

    marker = tmp_path / "PWNED"
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(in_project / "models" / "checkpoints", ckpts)
    latest = json.loads((ckpts / "latest.json").read_text())
    torch.save({"state": _Payload(marker)}, ckpts / latest["checkpoint"] / "state.pt")
    assert checkpoint.load_latest(ckpts, latest["fingerprint"]) is None  # refused, not run

    folder = tmp_path / "model"
    shutil.copytree(in_project / "models" / "vae", folder)
    for name in ("model.pkl", "python_model.pkl", "model.pt"):  # what other loaders unpickle
        torch.save(_Payload(marker), folder / name)
    load_model(folder)
    torch.save({"w": _Payload(marker)}, folder / "weights.safetensors")
    meta = json.loads((folder / "model.json").read_text())
    meta["weights_sha256"] = sha256(folder / "weights.safetensors")  # a consistent forgery
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="weights is not a valid file"):
        load_model(folder)
    scan = _scans(in_project, 1)[0]
    assert main(["score", str(scan), "--model", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model: ")
    assert not marker.exists()


def test_model_version_checksums_are_verified(in_project: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.config.params import load_params
    from pipeline.modelstore.folder import WEIGHTS_SHA_TAG
    from pipeline.modelstore.loading import load_model
    from pipeline.modelstore.types import ModelError

    name = load_params().mlflow.registered_model
    client = MlflowClient()
    version = client.get_model_version_by_alias(name, "champion")
    recorded = version.tags[WEIGHTS_SHA_TAG]
    assert recorded == json.loads((in_project / "models" / "vae" / "model.json").read_text()
                                  )["weights_sha256"]
    assert load_model(f"models:/{name}@champion").calibration is not None
    client.set_model_version_tag(name, version.version, WEIGHTS_SHA_TAG, "0" * 64)
    try:
        with pytest.raises(ModelError, match="registry"):
            load_model(f"models:/{name}/{version.version}")
    finally:
        client.set_model_version_tag(name, version.version, WEIGHTS_SHA_TAG, recorded)


def test_scoring_needs_no_network(in_project: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access at run time")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert main(["score", str(_scans(in_project, 1)[0]), "--out", str(tmp_path)]) == 0


def test_no_shell_is_ever_built_from_file_names() -> None:
    root = REPO / "pipeline"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for needle in ("shell=True", "os.system(", "os.popen(", "import subprocess"):
            assert needle not in text, f"{path.name}: {needle}"


def _overflowing(loaded: Any) -> Any:
    """The model with the layer after its latent scaled so that its activations overflow in
    fp16 (|x| > 65504) where float32, whose next normalisation rescales them, does not."""
    import copy

    vae = copy.deepcopy(loaded.vae)
    with torch.no_grad():
        vae.from_latent[0].weight.mul_(1e6)
    return dataclasses.replace(loaded, vae=vae)


def test_half_precision_overflow_is_rescored_in_float32(in_project: Path) -> None:
    from pipeline.io.errors import ScanError
    from pipeline.io.nifti import load_scan
    from pipeline.modelstore.loading import command_model_uri, load_model
    from pipeline.scoring.maps import score_maps

    def score_prepared(model: Any, prepared: Any) -> Any:
        return score_maps(model, prepared, [])[model.calibrated().primary]

    loaded = load_model(command_model_uri(None))
    scan = load_scan(_scans(in_project, 1)[0])
    prepared = loaded.preprocessor.prepare_scan(scan, None)
    fp32 = score_prepared(loaded, prepared)
    assert fp32.warnings == []

    def at(precision: str, model: Any) -> Any:
        sp = dataclasses.replace(model.params.scoring, precision=precision)
        return dataclasses.replace(model, params=dataclasses.replace(model.params, scoring=sp))

    bf16 = score_prepared(at("bf16", loaded), prepared)
    assert bf16.warnings == [] and np.isfinite(bf16.heatmap).all()
    assert np.corrcoef(bf16.heatmap.ravel(), fp32.heatmap.ravel())[0, 1] > 0.9
    broken = _overflowing(loaded)
    rescued = score_prepared(at("fp16", broken), prepared)
    assert len(rescued.warnings) == 1 and "re-scored in float32" in rescued.warnings[0]
    assert np.array_equal(rescued.heatmap, score_prepared(at("fp32", broken), prepared).heatmap)
    nan_model = _overflowing(loaded)
    with torch.no_grad():
        next(iter(nan_model.vae.parameters())).fill_(float("nan"))
    with pytest.raises(ScanError, match="not finite"):
        score_prepared(at("fp16", nan_model), prepared)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_maps_are_repeatable_and_close_to_the_cpu_maps(in_project: Path) -> None:
    """Same GPU: bit-identical (cuDNN deterministic); GPU (bf16/fp16 auto) vs CPU float32:
    within 0.1 z, three times the bf16 difference measured on IXI (README "Reliability")."""
    from pipeline.io.nifti import load_scan
    from pipeline.modelstore.loading import command_model_uri, load_for_command, load_model
    from pipeline.scoring.maps import score_maps

    def score_prepared(model: Any, prepared: Any) -> Any:
        return score_maps(model, prepared, [])[model.calibrated().primary]

    cpu = load_model(command_model_uri(None))
    gpu = load_for_command(command_model_uri(None), "cuda")
    scan = load_scan(_scans(in_project, 1)[0])
    prepared = cpu.preprocessor.prepare_scan(scan, None)
    a, b = score_prepared(gpu, prepared), score_prepared(gpu, prepared)
    assert np.array_equal(a.heatmap, b.heatmap)
    ref = score_prepared(cpu, prepared)
    assert float(np.abs(a.heatmap - ref.heatmap).max()) < 0.1
    assert abs(a.scan_score - ref.scan_score) < 0.1


def test_auto_precision_follows_the_calibration(in_project: Path, tmp_path: Path) -> None:
    """``calibrate`` records its precision; ``auto`` scores in it where the device runs it
    natively; format-1 calibrations without the record were made in float32, and a current
    one without it is refused."""
    from pipeline.model.runtime import cpu_has_native_bf16
    from pipeline.modelstore.loading import load_model
    from pipeline.modelstore.types import ModelError

    folder = tmp_path / "model"
    shutil.copytree(in_project / "models" / "vae", folder)
    calibration = folder / "calibration.json"
    info = json.loads(calibration.read_text())
    native = cpu_has_native_bf16()
    assert info["precision"] == ("bfloat16" if native else "float32")
    for recorded, used in (("float32", "fp32"), ("bfloat16", "bf16" if native else "auto")):
        info["precision"] = recorded
        calibration.write_text(json.dumps(info))
        assert load_model(folder).params.scoring.precision == used, recorded
    info.pop("precision")
    calibration.write_text(json.dumps(info))
    with pytest.raises(ModelError, match="precision"):
        load_model(folder)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "format": "vae-anomaly/1"}))
    assert load_model(folder).params.scoring.precision == "fp32"
