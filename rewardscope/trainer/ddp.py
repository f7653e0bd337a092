"""Our trainer on several processes: torchrun's environment, DistributedDataParallel, each rank's prompts.

Started by ``torchrun --nproc_per_node N -m rewardscope.cli train ...``, every process
runs ``train``: ``start`` joins the process group torchrun describes (gloo on CPU,
NCCL on CUDA, one GPU per local rank), ``wrap`` puts the trainable model in
DistributedDataParallel for the training forward (gradients averaged over ranks),
and ``local_prompts`` gives each rank its contiguous share of the step's prompts:
every rank draws the same global batch (same sampler, same seed) and keeps whole
groups, so the concatenation of the ranks' completions in rank order is the global
batch that RewardMonitor records on rank 0. Rank 0 alone writes checkpoints.

Usage::

    from rewardscope.trainer import ddp
    context = ddp.start("cpu")          # DistributedContext(rank=0, world_size=1) outside torchrun
    mine = context.local_prompts(list(range(8)))
    context.stop()
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run; world_size 1 when not started by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module initialised the process group, so it destroys it

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_prompts(self, prompts: Sequence[T]) -> list[T]:
        """This rank's contiguous share of the global batch's prompts, in rank order (sizes differ by at most one)."""
        bounds = np.linspace(0, len(prompts), self.world_size + 1).round().astype(int)
        return list(prompts[bounds[self.rank]:bounds[self.rank + 1]])

    def wrap(self, model: Any) -> Any:
        """The module to run the training forward through: DDP over ``model`` on several ranks, else ``model``."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def stop(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def start(device: str) -> DistributedContext:
    """Join the process group torchrun set up in the environment (WORLD_SIZE > 1); a single-process context otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        return DistributedContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        owns = True
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, owns)
