"""Training checkpoints that survive a kill at any moment, and resume bit-for-bit.

A checkpoint is a folder ``epoch_NNNN/`` with

- ``weights.safetensors`` and ``best.safetensors``: the current and the best-validation
  weights (no pickle);
- ``state.pt``: optimizer, LR scheduler, gradient scaler, RNG states (torch CPU/CUDA and the
  training generator), epoch, early-stopping state, history and the run's fingerprint;
  plain tensors and numbers only, read back with ``torch.load(weights_only=True)``;

written to a temporary folder and renamed, then named in ``latest.json`` (replaced
atomically). A kill mid-write leaves the previous checkpoint intact.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> w = {"w": torch.zeros(2)}
    >>> _ = save(folder, Checkpoint(epoch=3, weights=w, best_weights=w, state={}, fingerprint="a"))
    >>> load_latest(folder, "a").epoch, load_latest(folder, "other run") is None
    (3, True)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.io.errors import one_line

log = logging.getLogger(__name__)

LATEST = "latest.json"
KEEP = 2  # checkpoints kept on disk (the newest ones)


@dataclass
class Checkpoint:
    """Everything :func:`pipeline.model.training.fit` needs to continue a run."""

    epoch: int
    weights: dict[str, torch.Tensor]
    best_weights: dict[str, torch.Tensor]
    state: dict[str, Any]             # optimizer, scheduler, scaler, rng, ...
    fingerprint: str
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the MLflow run id


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save(folder: Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` as ``folder/epoch_NNNN`` and point ``latest.json`` at it."""
    from safetensors.torch import save_file

    from pipeline.io.atomic import write_json

    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{ckpt.epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder))
    meta = {"epoch": str(ckpt.epoch), "fingerprint": ckpt.fingerprint}
    save_file(_cpu(ckpt.weights), str(tmp / "weights.safetensors"), meta)
    save_file(_cpu(ckpt.best_weights), str(tmp / "best.safetensors"), meta)
    torch.save({"epoch": ckpt.epoch, "fingerprint": ckpt.fingerprint, "state": ckpt.state,
                "history": ckpt.history, "finished": ckpt.finished, "extra": ckpt.extra},
               tmp / "state.pt")
    final = folder / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_json(folder / LATEST, {"checkpoint": name, "epoch": ckpt.epoch,
                                 "fingerprint": ckpt.fingerprint, "finished": ckpt.finished})
    for old in sorted(folder.glob("epoch_*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".epoch_*"):  # temporary folders of killed writes
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_latest(folder: Path, fingerprint: str) -> Checkpoint | None:
    """The newest checkpoint in ``folder`` made by a run with this ``fingerprint``, or None
    (with the reason logged) when there is none or it belongs to other settings/data."""
    from safetensors.torch import load_file

    pointer = folder / LATEST
    if not pointer.is_file():
        log.info("no checkpoint in %s: training from the start", folder)
        return None
    try:
        info = json.loads(pointer.read_text())
        path = folder / info["checkpoint"]
        body = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        weights = load_file(str(path / "weights.safetensors"))
        best = load_file(str(path / "best.safetensors"))
        same_run = body["fingerprint"] == fingerprint
    except Exception as exc:  # unreadable, corrupt, or an object weights_only=True refuses
        log.warning("checkpoint in %s is unreadable or unsafe (%s): training from the start",
                    folder, one_line(exc))  # nothing in it was executed
        return None
    if not same_run:
        log.info("checkpoint %s was made with other parameters, data or code: "
                 "training from the start", path)
        return None
    return Checkpoint(epoch=int(body["epoch"]), weights=weights, best_weights=best,
                      state=body["state"], fingerprint=body["fingerprint"],
                      history=list(body["history"]), finished=bool(body["finished"]),
                      extra=dict(body["extra"]))
