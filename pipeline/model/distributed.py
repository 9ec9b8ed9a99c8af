"""Data-parallel training under ``torchrun``: process group, ranks, reductions.

``vae-anomaly train`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``); without it, it is a single process and every helper here is a no-op.
NCCL is used between GPUs, gloo on CPUs.

Example:
    $ torchrun --nproc_per_node=4 -m pipeline.cli train
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE_PROCESS = World()


def from_env() -> World:
    """The world torchrun describes, or a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE_PROCESS
    return World(rank=int(os.environ["RANK"]), size=size,
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, else gloo); pin this rank's GPU."""
    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(world: World, device: torch.device) -> torch.device:
    """This rank's device: ``cuda:<local_rank>`` on GPUs."""
    return torch.device("cuda", world.local_rank) if device.type == "cuda" else device


def all_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over all ranks (returns it unchanged in a single process)."""
    if not world.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()

