"""What changes over a training run: the KL weight per epoch, the learning rate per step,
and the per-epoch figures that pick the weights to keep.

Example:
    >>> import torch
    >>> from pipeline.config.examples import train_params
    >>> tp = train_params()
    >>> opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=tp.learning_rate)
    >>> sched = lr_scheduler(opt, tp, total_steps=100)
    >>> type(sched).__name__ in ("OneCycleLR", "CosineAnnealingLR", "ConstantLR")
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pipeline.config.model_schema import TrainParams


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_reconstruction: float
    train_kl: float
    val_negative_elbo: float
    val_reconstruction: float
    val_kl: float
    val_iwae_nll: float | None
    val_mae: float                # posterior-mean reconstruction, mean |x - x_hat| in the brain
    val_mean_image_mae: float     # the same for the training scans' voxel-wise mean image
    beta: float
    learning_rate: float
    seconds: float
    volumes_per_s: float          # whole-crop equivalents (voxels trained on / crop voxels)
    skipped_steps: int
    active_channels: int
    gpu_peak_mem_gb: float | None
    kl_channels: list[float] = field(default_factory=list)

    @property
    def val_mae_ratio(self) -> float:
        """Reconstruction error relative to the mean image's (1: the latent carries nothing)."""
        return self.val_mae / max(self.val_mean_image_mae, 1e-12)


def kl_weight(epoch: int, tp: TrainParams) -> float:
    """β at ``epoch`` (1-based) under the configured KL schedule."""
    if tp.kl_schedule == "constant" or tp.kl_warmup_epochs <= 0:
        return tp.beta
    step = epoch - 1 if tp.kl_schedule == "linear" else (epoch - 1) % max(tp.kl_cycle_epochs, 1)
    return tp.beta * min(1.0, (step + 1) / tp.kl_warmup_epochs)


def lr_scheduler(opt: torch.optim.Optimizer, tp: TrainParams, total_steps: int
                 ) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate per optimiser step: one-cycle (warm-up to ``learning_rate`` over
    ``warmup_fraction`` of the steps, then cosine annealing, torch's default start and end
    factors), cosine to 0, or constant."""
    if tp.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tp.learning_rate,
                                                   total_steps=max(total_steps, 1),
                                                   pct_start=tp.warmup_fraction)
    if tp.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.ConstantLR(opt, 1.0)


def selection_value(s: EpochStats, beta: float) -> float:
    """Validation objective that picks the best epoch: reconstruction + β·KL, which is the
    -ELBO for β = 1 and the reconstruction error of a plain autoencoder for β = 0."""
    return s.val_reconstruction + beta * s.val_kl


def best_epoch(history: list[EpochStats], beta: float = 1.0) -> EpochStats:
    """The epoch whose weights :func:`pipeline.model.training.fit` returns."""
    return min(history, key=lambda s: selection_value(s, beta))
