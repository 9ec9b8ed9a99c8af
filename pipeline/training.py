"""The VAE training loop: in-memory data, AMP on GPU, KL warm-up, checkpoints.

Example:
    >>> history = fit(vae, train_images, val_images, params, on_epoch=print)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import Params
from pipeline.model import ConvVAE, elbo

log = logging.getLogger(__name__)


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_reconstruction: float
    train_kl: float
    val_negative_elbo: float
    val_reconstruction: float
    val_kl: float
    beta: float
    seconds: float
    volumes_per_s: float


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _augment(x: torch.Tensor, params: Params, gen: torch.Generator) -> torch.Tensor:
    tp = params.train
    if tp.augment_flip:
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1, 1).to(x.device), x.flip(2), x)
    if tp.augment_intensity > 0:
        scale = 1.0 + (torch.rand(x.shape[0], generator=gen) * 2 - 1) * tp.augment_intensity
        x = x * scale.view(-1, 1, 1, 1, 1).to(x.device)
    return x


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    dtype = torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype,
                          enabled=enabled and device.type == "cuda")


def evaluate_elbo(vae: ConvVAE, data: torch.Tensor, params: Params, device: torch.device
                  ) -> tuple[float, float]:
    """Mean (reconstruction, KL) in nats per volume, posterior sampled once."""
    vae.eval()
    rec = kl = 0.0
    gen = torch.Generator(device="cpu").manual_seed(params.seed)
    with torch.no_grad():
        for i in range(0, len(data), params.train.batch_size):
            x = data[i: i + params.train.batch_size].to(device)
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
            with _autocast(device, params.train.amp):
                out = vae(x, sample=True)
            terms = elbo(out, x, params.model.recon_sigma, 1.0)
            rec += float(terms.reconstruction) * len(x)
            kl += float(terms.kl) * len(x)
    return rec / max(len(data), 1), kl / max(len(data), 1)


def fit(vae: ConvVAE, train: torch.Tensor, val: torch.Tensor, params: Params,
        checkpoint_dir: Path | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None) -> list[EpochStats]:
    """Train ``vae`` on ``train`` (N, 1, D, H, W); return with the best validation-ELBO weights.

    The validation set is the healthy calibration split: an unsupervised model-selection
    criterion that never sees a lesion or a test scan.
    """
    tp = params.train
    device = pick_device(tp.device)
    vae.init_mean_image(train)
    vae.to(device)
    if device.type == "cuda":  # the whole cohort fits on the GPU: no data loader stalls
        train, val = train.to(device), val.to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=tp.learning_rate, weight_decay=tp.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(tp.epochs, 1))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda" and tp.amp
                                  and not torch.cuda.is_bf16_supported())
    gen = torch.Generator(device="cpu").manual_seed(params.seed)
    history: list[EpochStats] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, tp.epochs + 1):
        vae.train()
        beta = tp.beta * min(1.0, epoch / max(tp.kl_warmup_epochs, 1))
        t0 = time.perf_counter()
        sums = np.zeros(3)
        perm = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train), tp.batch_size):
            x = _augment(train[perm[i: i + tp.batch_size].to(train.device)], params, gen)
            with _autocast(device, tp.amp):
                out = vae(x)
            terms = elbo(out, x, params.model.recon_sigma, beta)
            if not torch.isfinite(terms.loss):
                log.warning("epoch %d: non-finite loss, step skipped", epoch)
                opt.zero_grad(set_to_none=True)
                continue
            opt.zero_grad(set_to_none=True)
            scaler.scale(terms.loss).backward()
            scaler.step(opt)
            scaler.update()
            sums += np.array([terms.loss.item(), terms.reconstruction.item(),
                              terms.kl.item()]) * len(x)
        sched.step()
        seconds = time.perf_counter() - t0
        sums /= len(train)
        v_rec, v_kl = evaluate_elbo(vae, val, params, device)
        stats = EpochStats(epoch=epoch, train_loss=float(sums[0]),
                           train_reconstruction=float(sums[1]), train_kl=float(sums[2]),
                           val_negative_elbo=v_rec + v_kl, val_reconstruction=v_rec, val_kl=v_kl,
                           beta=beta, seconds=seconds, volumes_per_s=len(train) / seconds)
        history.append(stats)
        if best is None or stats.val_negative_elbo < best[0]:
            state = {k: v.detach().clone() for k, v in vae.state_dict().items()}
            best = (stats.val_negative_elbo, epoch, state)
        if on_epoch:
            on_epoch(stats)
        if checkpoint_dir and (epoch % tp.checkpoint_every == 0 or epoch == tp.epochs):
            save_checkpoint(checkpoint_dir, vae, opt, epoch)
    if best is not None:  # keep the weights of the best validation ELBO
        vae.load_state_dict(best[2])
        log.info("best validation -ELBO %.1f at epoch %d", best[0], best[1])
    vae.to("cpu").eval()
    return history


def best_epoch(history: list[EpochStats]) -> EpochStats:
    """The epoch whose weights :func:`fit` returns (lowest validation -ELBO)."""
    return min(history, key=lambda s: s.val_negative_elbo)


def save_checkpoint(folder: Path, vae: ConvVAE, opt: torch.optim.Optimizer, epoch: int) -> None:
    """Weights as safetensors; optimizer state loadable with ``weights_only=True``."""
    from safetensors.torch import save_file

    from pipeline.nifti import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    atomic_write(folder / "last.safetensors", lambda p: save_file(state, str(p),
                                                                 {"epoch": str(epoch)}))
    atomic_write(folder / "last_optimizer.pt",
                 lambda p: torch.save({"epoch": epoch, "optimizer": opt.state_dict()}, p))
