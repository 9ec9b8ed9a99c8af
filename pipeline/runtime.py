"""Where and how training runs: device, mixed precision, seeds, the in-memory cohort cache.

Example:
    >>> import torch
    >>> ctx, dtype = autocast(torch.device("cpu"), enabled=True)
    >>> dtype                                    # CPU training stays in float32
    torch.float32
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def pick_device(choice: str) -> torch.device:
    """``auto``: the GPU when there is one; ``cuda`` without a GPU is an error."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool) -> tuple[torch.autocast, torch.dtype]:
    """The training autocast context and its compute dtype: bf16 on GPUs that support it,
    fp16 (which needs a gradient scaler) on older GPUs, float32 on the CPU."""
    if not enabled or device.type != "cuda":
        return autocast_to(device, torch.float32), torch.float32
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return autocast_to(device, dtype), dtype


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than float32."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def score_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Compute dtype of a scoring pass (``scoring.precision``): ``auto`` is bf16 on GPUs that
    support it, fp16 on older GPUs, bf16 on CPUs that have native bf16 instructions (twice
    as fast as float32 there: benchmarks/README.md) and float32 on other CPUs."""
    if precision == "auto":
        if device.type != "cuda":
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return HALF.get(precision, torch.float32)


def autocast_to(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Autocast to ``dtype`` (disabled for float32)."""
    half = dtype in (torch.bfloat16, torch.float16)
    return torch.autocast(device_type=device.type, dtype=dtype if half else torch.bfloat16,
                          enabled=half)


def cache_on_device(train: torch.Tensor, val: torch.Tensor, device: torch.device,
                    max_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the cohort on the GPU when it needs less than ``max_fraction`` of the free GPU
    memory, so no host-to-device copy or loader ever waits; else in pinned host memory."""
    if device.type != "cuda":
        return train, val
    need = (train.numel() + val.numel()) * train.element_size()
    free, _ = torch.cuda.mem_get_info(device)
    if need < max_fraction * free:
        log.info("cohort cached on %s (%.2f GB of %.1f GB free)", device, need / 1e9, free / 1e9)
        return train.to(device), val.to(device)
    log.info("cohort (%.2f GB) kept in pinned host memory", need / 1e9)
    return train.pin_memory(), val.pin_memory()
