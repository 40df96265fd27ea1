"""Running under ``torchrun``: which process this is, which device it uses, and summing
results over processes. Outside torchrun everything degrades to one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fcnxs.core.errors import FcnxsError

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    device: torch.device = CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise FcnxsError("`device` cuda: no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name != "cpu":
        raise FcnxsError(f"unknown device {name!r} (expected cpu, cuda or auto)")
    return CPU


def init(device: str = "auto") -> Context:
    """The process group of a torchrun launch (gloo on CPU, nccl on GPU), or one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world == 1:
        return Context(device=chosen)
    if not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), chosen)


def sum_over_processes(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all processes (itself in one process)."""
    if context.world == 1:
        return tensor
    reduced = tensor.clone().to(context.device if context.device.type == "cuda" else "cpu")
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
