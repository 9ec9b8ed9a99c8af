"""Where and how training runs: device, mixed precision, seeds, the in-memory cohort cache.

Example:
    >>> import torch
    >>> ctx, dtype = autocast(torch.device("cpu"), enabled=False)
    >>> dtype
    torch.float32
    >>> autocast(torch.device("cpu"), enabled=True)[1] == (
    ...     torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    True
"""

from __future__ import annotations

import functools
import logging
import random
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


class NoDeviceError(RuntimeError):
    """The device asked for is not there."""


def pick_device(choice: str, what: str = "train.device") -> torch.device:
    """``auto``: the GPU when there is one; ``cuda`` without a GPU is an error naming
    ``what`` asked for it."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise NoDeviceError(f"{what} cuda requested but no CUDA device is available")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool) -> tuple[torch.autocast, torch.dtype]:
    """The training autocast context and its compute dtype: bf16 on GPUs that support it,
    fp16 (which needs a gradient scaler) on older GPUs, bf16 on CPUs with native bf16
    instructions (2.5x faster per step there), float32 on other CPUs."""
    dtype = score_dtype("auto", device) if enabled else torch.float32
    return autocast_to(device, dtype), dtype


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # x86 flags in /proc/cpuinfo


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), read from the kernel's
    CPU flags; elsewhere (other CPUs, other systems) bf16 is emulated and slower than
    float32. oneDNN's own check cannot tell: it also says yes on plain AVX512 CPUs."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = {f for line in text.splitlines() if line.startswith("flags")
             for f in line.split(":", 1)[1].split()}
    return bool(flags & NATIVE_BF16_FLAGS) and torch.backends.mkldnn.is_available()


def score_dtype(precision: str, device: torch.device) -> torch.dtype:
    """Compute dtype of a scoring pass (``scoring.precision``): ``auto`` is bf16 on GPUs that
    support it, fp16 on older GPUs, bf16 on CPUs that have native bf16 instructions (faster
    than float32 there: docs/results, performance) and float32 on other CPUs."""
    if precision == "auto":
        if device.type != "cuda":
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return HALF.get(precision, torch.float32)


def follow_calibration(precision: str, calibrated: str, device: torch.device) -> str:
    """The scoring precision of a model calibrated in ``calibrated`` (a dtype name): ``auto``
    becomes the calibration's own precision where ``device`` runs it natively, so healthy
    statistics and maps come from the same arithmetic; elsewhere it stays ``auto``.

    Example:
        >>> follow_calibration("auto", "float32", torch.device("cpu"))
        'fp32'
    """
    name = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(calibrated)
    if precision != "auto" or name is None:
        return precision
    if name == "fp32" or HALF[name] == score_dtype("auto", device):
        return name
    log.warning("the model was calibrated in %s, which this %s does not run natively: "
                "scoring in %s (maps may differ from a %s pass by a few hundredths of a z)",
                calibrated, device.type, dtype_name(score_dtype("auto", device)), calibrated)
    return precision


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


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
