"""`fit` under torchrun: two gloo processes on the CPU end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO
from safetensors.torch import load_file


def test_two_gloo_ranks_hold_identical_weights(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("VAE_ANOMALY_ROOT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(REPO / "tests" / "ddp_worker.py"), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys()
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert info[0]["world_size"] == 2 and info[0]["changed"]
    assert info[0]["val"] == info[1]["val"]  # validation reduced over both ranks' shares
    assert round(info[0]["volumes"][0]) == 8  # each epoch covers the cohort once, not twice
