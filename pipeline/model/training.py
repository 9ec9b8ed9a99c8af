"""The VAE training loop: cached cohort, patches, AMP, KL schedule, early stopping,
checkpoints, DDP.

One function, :func:`fit`, trains on template-space volumes held in memory (on the GPU when
they fit): each epoch is ``train.steps_per_epoch`` optimiser steps on batches of
:func:`pipeline.model.batches.batches` (whole crops or random patches, optionally noised),
then a validation on the whole healthy calibration crops. It runs the same in one process
and under ``torchrun`` (DistributedDataParallel: every rank draws the same seeded order and
takes its share), resumes from a :class:`~pipeline.model.checkpoint.Checkpoint` exactly
where the killed run stopped, and returns the weights of the best validation objective.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.config.schema import Params
from pipeline.model import checkpoint as ckpt_io
from pipeline.model import distributed as dist
from pipeline.model.batches import Batch, batches
from pipeline.model.layers import VAE
from pipeline.model.objective import Likelihood, elbo_terms
from pipeline.model.runtime import autocast, cache_on_device, pick_device
from pipeline.model.schedules import (
    EpochStats,
    best_epoch,
    kl_weight,
    lr_scheduler,
    selection_value,
)
from pipeline.model.validation import Validation, brain_mae, validate

log = logging.getLogger(__name__)

ACTIVE_NATS_PER_UNIT = 0.01  # a latent channel carrying more KL per unit counts as active


@dataclass
class FitResult:
    history: list[EpochStats]
    best_epoch: int
    best_val_negative_elbo: float
    stopped_early: bool
    resumed_from: int  # epoch of the checkpoint the run continued from; 0 = fresh


def steps_per_epoch(n_scans: int, params: Params, world: dist.World) -> int:
    """``train.steps_per_epoch``, or (0) the steps of one pass over this rank's scans."""
    tp = params.train
    return tp.steps_per_epoch or max(1, -(-(n_scans // world.size) // tp.batch_size))


def _clone(vae: VAE) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


class _Trainer:
    """State of one run; :func:`fit` is its public face."""

    def __init__(self, vae: VAE, params: Params, world: dist.World, steps: int) -> None:
        tp = params.train
        self.vae, self.params, self.world, self.steps = vae, params, world, steps
        self.device = dist.device_for(world, pick_device(tp.device))
        self.opt = torch.optim.Adam(vae.parameters(), lr=tp.learning_rate,
                                    weight_decay=tp.weight_decay)
        self.sched = lr_scheduler(self.opt, tp, steps * tp.epochs)
        self.autocast, dtype = autocast(self.device, tp.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        self.gen = torch.Generator().manual_seed(params.seed)  # identical on every rank
        torch.manual_seed(params.seed + world.rank)  # posterior samples differ per rank
        self.likelihood = Likelihood.of(params.model)
        self.history: list[EpochStats] = []
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def restore(self, c: ckpt_io.Checkpoint) -> None:
        self.vae.load_state_dict(c.weights)
        self.opt.load_state_dict(c.state["optimizer"])
        self.sched.load_state_dict(c.state["scheduler"])
        self.scaler.load_state_dict(c.state["scaler"])
        ckpt_io.restore_rng(c.state["rng"], self.gen)
        self.history = [EpochStats(**h) for h in c.history]
        if self.history:
            b = best_epoch(self.history, self.params.train.beta)
            self.best = (selection_value(b, self.params.train.beta), b.epoch,
                         dict(c.best_weights))

    def checkpoint(self, epoch: int, fingerprint: str, finished: bool,
                   extra: dict[str, Any]) -> ckpt_io.Checkpoint:
        assert self.best is not None
        state = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": ckpt_io.rng_state(self.gen)}
        return ckpt_io.Checkpoint(epoch=epoch, weights=_clone(self.vae),
                                  best_weights=self.best[2], state=state,
                                  fingerprint=fingerprint,
                                  history=[asdict(h) for h in self.history],
                                  finished=finished, extra=extra)

    def step(self, model: torch.nn.Module, batch: Batch, beta: float) -> torch.Tensor | None:
        """One optimiser step; the logged (loss, reconstruction, KL), or None if skipped."""
        tp, world = self.params.train, self.world
        x = batch.inputs
        if tp.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with self.autocast:  # β = 0: a plain autoencoder, no posterior sampling
            out = model(x, sample=tp.beta > 0, origins=batch.origins)
        terms = elbo_terms(out, batch.target, self.likelihood, beta, tp.free_bits)
        self.opt.zero_grad(set_to_none=True)
        # one host sync per step for the logged terms; the finiteness decision must be the
        # same on every rank, or DDP would hang
        values = torch.stack([terms.loss, terms.reconstruction, terms.kl]).detach()
        values = values.double().cpu()
        bad = not bool(torch.isfinite(values).all())
        if world.distributed:
            bad = dist.all_sum(torch.tensor([float(bad)], device=self.device), world).item() > 0
        if bad:
            log.warning("non-finite loss: step skipped")
            return None
        self.scaler.scale(terms.loss).backward()
        self.scaler.unscale_(self.opt)
        norm = torch.nn.utils.clip_grad_norm_(
            self.vae.parameters(), tp.grad_clip_norm if tp.grad_clip_norm > 0 else math.inf)
        if not torch.isfinite(norm):  # gradients are all-reduced: same on every rank
            log.warning("non-finite gradient: step skipped")
            self.scaler.update()  # fp16: lowers the scale; bf16/fp32: no-op
            return None
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return values

    def train_epoch(self, model: torch.nn.Module, data: torch.Tensor, brain: torch.Tensor,
                    beta: float) -> tuple[torch.Tensor, int]:
        """This epoch's steps; returns (summed loss terms, volumes, voxels) and skipped."""
        model.train()
        sums = torch.zeros(5, dtype=torch.float64)
        skipped = 0
        for batch in batches(data, brain, self.params.train, self.steps, self.gen, self.world,
                             self.device):
            values = self.step(model, batch, beta)
            if values is None:
                skipped += 1
                continue
            n = len(batch.target)
            sums += torch.cat([values * n, torch.tensor([n, batch.target.numel()],
                                                        dtype=torch.float64)])
        return sums, skipped


def _wrapped(vae: VAE, t: _Trainer) -> torch.nn.Module:
    """The module the steps run through: DistributedDataParallel under torchrun, compiled
    when ``train.compile``."""
    tp = t.params.train
    vae.to(t.device)
    if tp.channels_last:
        vae.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    model: torch.nn.Module = vae
    if t.world.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            vae, device_ids=[t.device.index] if t.device.type == "cuda" else None)
    if tp.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


@dataclass
class _Data:
    train: torch.Tensor
    train_brain: torch.Tensor     # (D, H, W), on the host: where any training scan has brain
    val: torch.Tensor
    val_brain: torch.Tensor       # (N, 1, D, H, W) brain masks of the validation scans
    mean_image_mae: float


def _epoch(t: _Trainer, model: torch.nn.Module, d: _Data, epoch: int) -> EpochStats:
    """Train one epoch, validate, and return its figures (the same on every rank)."""
    tp, params = t.params.train, t.params
    beta = kl_weight(epoch, tp)
    lr = float(t.sched.get_last_lr()[0])
    t0 = time.perf_counter()
    sums, skipped = t.train_epoch(model, d.train, d.train_brain, beta)
    sums = dist.all_sum(sums.to(t.device if t.device.type == "cuda" else "cpu"), t.world).cpu()
    seconds = time.perf_counter() - t0
    iwae = tp.iwae_samples if (epoch % tp.iwae_every == 0 or epoch == tp.epochs) else 0
    v: Validation = validate(t.vae, d.val, d.val_brain, t.likelihood, params.seed,
                             tp.batch_size, iwae, t.world, t.autocast, sample=tp.beta > 0)
    count = max(float(sums[3]), 1.0)
    crop_voxels = d.train[0].numel()
    return EpochStats(
        epoch=epoch, train_loss=float(sums[0]) / count,
        train_reconstruction=float(sums[1]) / count, train_kl=float(sums[2]) / count,
        val_negative_elbo=v.negative_elbo, val_reconstruction=v.reconstruction,
        val_kl=v.kl, val_iwae_nll=v.iwae_nll, val_mae=v.reconstruction_mae,
        val_mean_image_mae=d.mean_image_mae, beta=beta, learning_rate=lr, seconds=seconds,
        volumes_per_s=float(sums[4]) / crop_voxels / max(seconds, 1e-9),
        skipped_steps=skipped,
        active_channels=sum(k / v.units_per_channel > ACTIVE_NATS_PER_UNIT
                            for k in v.kl_channels),
        gpu_peak_mem_gb=(torch.cuda.max_memory_allocated(t.device) / 1e9
                         if t.device.type == "cuda" else None),
        kl_channels=v.kl_channels)


def _keep_best(t: _Trainer, stats: EpochStats) -> bool:
    """Record the epoch, keep its weights if they are the best so far; return whether early
    stopping ends the run here."""
    tp = t.params.train
    t.history.append(stats)
    value = selection_value(stats, tp.beta)
    if t.best is None or value < t.best[0] - tp.early_stopping_min_delta:
        t.best = (value, stats.epoch, _clone(t.vae))
    stopped = (tp.early_stopping_patience > 0
               and stats.epoch - t.best[1] >= tp.early_stopping_patience)
    if stopped:
        log.info("early stopping at epoch %d: no better validation objective since epoch %d",
                 stats.epoch, t.best[1])
    return stopped


def _data(vae: VAE, train: torch.Tensor, val: torch.Tensor, val_brain: torch.Tensor,
          t: _Trainer, fresh: bool) -> _Data:
    """The cohort on the training device, the mean image (left-right symmetric when flips
    augment the scans, so a flipped scan still lines up with it) and its validation error."""
    mean = train.float().mean(0, keepdim=True)
    if fresh:
        flip = t.params.train.augment.flip
        vae.init_mean_image(torch.cat([mean, mean.flip(2)]) if flip else mean)
    mae = brain_mae(mean.expand_as(val), val, val_brain)
    train_brain = mean[0, 0] > 0  # read per patch draw: on the host, no device syncs
    train, val = cache_on_device(train, val, t.device, t.params.train.gpu_cache_fraction)
    return _Data(train, train_brain, val, val_brain.to(val.device), mae)


def fit(vae: VAE, train: torch.Tensor, val: torch.Tensor, val_brain: torch.Tensor,
        params: Params, *, checkpoint_dir: Path | None = None,
        start: ckpt_io.Checkpoint | None = None, fingerprint: str = "",
        extra: dict[str, Any] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        world: dist.World = dist.SINGLE_PROCESS) -> FitResult:
    """Train ``vae`` on ``train`` (N, 1, D, H, W); return with the best validation weights.

    The validation set (``val`` with its brain masks ``val_brain``) is the healthy
    calibration split: an unsupervised model-selection criterion that never sees a lesion or
    a test scan. ``start`` continues a checkpointed run (none: from the beginning);
    checkpoints (rank 0 only) go to ``checkpoint_dir`` (none: no checkpoints) every
    ``checkpoint_every`` epochs and at the end, tagged with ``fingerprint`` and carrying
    ``extra`` (e.g. the MLflow run id).
    """
    tp = params.train
    t = _Trainer(vae, params, world, steps_per_epoch(len(train), params, world))
    d = _data(vae, train, val, val_brain, t, fresh=start is None)
    if start is not None:
        t.restore(start)
    model = _wrapped(vae, t)
    first = start.epoch + 1 if start is not None else 1
    stopped = bool(start and start.finished)
    epoch = first - 1
    for epoch in range(first, tp.epochs + 1):
        if stopped:
            break
        stats = _epoch(t, model, d, epoch)
        stopped = _keep_best(t, stats)
        if on_epoch and world.is_main:
            on_epoch(stats)
        last = epoch == tp.epochs
        if checkpoint_dir and world.is_main and (epoch % tp.checkpoint_every == 0 or last
                                                 or stopped):
            ckpt_io.save(checkpoint_dir, t.checkpoint(epoch, fingerprint, last or stopped,
                                                      extra or {}))
        dist.barrier(world)
    if t.best is None:
        raise RuntimeError("training ran no epoch (checkpoint already at train.epochs?)")
    vae.load_state_dict(t.best[2])
    log.info("best validation objective %.1f at epoch %d", t.best[0], t.best[1])
    vae.to("cpu").eval()
    best = next(s for s in t.history if s.epoch == t.best[1])
    return FitResult(history=t.history, best_epoch=t.best[1],
                     best_val_negative_elbo=best.val_negative_elbo,
                     stopped_early=stopped and epoch < tp.epochs,
                     resumed_from=start.epoch if start else 0)
