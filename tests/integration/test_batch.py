"""Batch scoring at scale: torchrun shards (2 gloo ranks on the CPU), preparation workers,
and the manifest of every input."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from conftest import REPO

from pipeline.cli import main


def _scans(project: Path, n: int) -> list[Path]:
    split = json.loads((project / "data" / "prepared" / "split.json").read_text())
    cases = split["test_healthy"] + split["test_lesion"]
    return [Path(c["image"]) for c in cases[:n]]


def _statuses(manifest: dict) -> dict[str, int]:
    return dict(manifest["counts"]["status"])


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".nii")


def _maps(folder: Path, stem: str) -> list[np.ndarray]:
    return [np.asarray(nib.load(folder / f"{stem}{s}").dataobj)
            for s in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz")]


def _score(args: list[str], root: Path, ranks: int = 0) -> subprocess.CompletedProcess[str]:
    """``vae-anomaly score ARGS`` in a subprocess, under torchrun with ``ranks`` processes
    (0: a plain process); one CPU thread each, so both give the same arithmetic."""
    env = {**os.environ, "VAE_ANOMALY_ROOT": str(root), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              f"--nproc_per_node={ranks}", "-m"] if ranks else [sys.executable, "-m"]
    return subprocess.run([*launch, "pipeline.cli", "score", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_two_torchrun_ranks_share_a_batch_and_write_one_manifest(in_project: Path,
                                                                  tmp_path: Path) -> None:
    scans = _scans(in_project, 4)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not an image")
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(scans[0], twin / scans[0].name)  # same output name as the first input
    inputs = [scans[0], broken, *scans[1:], twin / scans[0].name]
    model = ["--model", str(in_project / "models" / "vae"), "--no-report"]
    out, ref = tmp_path / "sharded", tmp_path / "single"
    run = _score([*map(str, inputs), "--out", str(out), *model], in_project, ranks=2)
    assert run.returncode != 0, run.stderr[-3000:]  # two inputs fail: the run says so
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert [e["input"] for e in manifest["inputs"]] == [str(p) for p in inputs]
    assert [e["rank"] for e in manifest["inputs"]] == [i % 2 for i in range(len(inputs))]
    status = {e["input"]: e for e in manifest["inputs"]}
    assert status[str(broken)]["status"] == "failed" and status[str(broken)]["error"]
    assert "same output name" in status[str(twin / scans[0].name)]["error"]
    assert _statuses(manifest) == {"scored": 4, "up_to_date": 0, "failed": 2}
    for scan in scans:  # one rank scored it, into its own files
        entry = status[str(scan)]
        assert entry["status"] == "scored"
        assert sorted(Path(p).name for p in entry["outputs"].values()) == sorted(
            f"{_stem(scan)}{s}" for s in ("_anomaly.nii.gz", "_anomaly_mask.nii.gz", ".json"))
    assert sum(line.startswith("error: ") for line in run.stderr.splitlines()) == 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp debris
    # the same maps as one process scoring the whole batch
    single = _score([*map(str, scans), "--out", str(ref), *model, "--workers", "0"], in_project)
    assert single.returncode == 0, single.stderr[-3000:]
    for scan in scans:
        for a, b in zip(_maps(out, _stem(scan)), _maps(ref, _stem(scan)), strict=True):
            assert np.array_equal(a, b), scan
    # a rerun of the sharded command finds everything done, on whichever rank it lands
    again = _score([*map(str, scans), "--out", str(out), *model], in_project, ranks=2)
    assert again.returncode == 0, again.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert _statuses(manifest) == {"scored": 0, "up_to_date": 4, "failed": 0}
    assert sum(manifest["counts"]["verdict"].values()) == 4  # the kept verdicts


def test_preparation_workers_give_the_inline_results(in_project: Path, tmp_path: Path,
                                                     capsys) -> None:
    scans = _scans(in_project, 3)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b truncated")
    model = ["--model", str(in_project / "models" / "vae"), "--no-report"]
    codes = [main(["score", str(scans[0]), str(broken), *map(str, scans[1:]), "--out",
                   str(tmp_path / f"w{w}"), *model, "--workers", str(w)]) for w in (0, 2)]
    assert codes == [1, 1]
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 2 and err[0] == err[1] and str(broken) in err[0]
    for scan in scans:
        for a, b in zip(_maps(tmp_path / "w0", _stem(scan)), _maps(tmp_path / "w2", _stem(scan)),
                        strict=True):
            assert np.array_equal(a, b)
    manifest = json.loads((tmp_path / "w2" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["inputs"]] == ["scored", "failed", "scored", "scored"]
    assert main(["score", str(scans[0]), "--out", str(tmp_path), "--workers", "-1"]) == 2


def test_a_killed_worker_fails_only_the_scan_it_held(in_project: Path) -> None:
    from pipeline.inference.batch import Failed, Job, prepared_in_order
    from pipeline.modelstore.loading import load_model

    loaded = load_model(in_project / "models" / "vae")
    scans = _scans(in_project, 5)
    jobs = [Job(s, None, _stem(s), None) for s in scans]
    results = []
    for job, got in prepared_in_order(jobs, loaded.preprocessor, workers=1):
        if not results:  # the worker is busy with the next scans: kill it
            for child in multiprocessing.active_children():
                assert child.pid is not None
                os.kill(child.pid, signal.SIGKILL)
        results.append((job, got))
    assert [j.scan for j, _ in results] == scans  # every scan comes back, in order
    failed = [got for _, got in results if isinstance(got, Failed)]
    assert len(failed) == 1 and "worker died" in failed[0].reason  # the one it held
    assert not isinstance(results[-1][1], Failed)  # the rest go to a fresh pool


def test_an_input_named_like_the_manifest_is_refused(in_project: Path, tmp_path: Path,
                                                     capsys) -> None:
    named = tmp_path / "manifest.nii.gz"
    shutil.copy(_scans(in_project, 1)[0], named)
    assert main(["score", str(named), "--out", str(tmp_path / "o"), "--model",
                 str(in_project / "models" / "vae"), "--no-report"]) == 1
    assert "same output name 'manifest'" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["inputs"][0]["status"] == "failed"
