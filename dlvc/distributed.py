"""Multi-process training with ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node=N train.py ...`` starts N processes and tells each its
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` through the environment. Each process
trains on its own share of the batches; DistributedDataParallel averages the
gradients, the metrics sum their confusion matrices across processes, and only
rank 0 writes checkpoints, logs and plots. Without ``torchrun`` everything here
falls back to a single process.
"""

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_environment(device: torch.device) -> ProcessInfo:
    """Join the process group that ``torchrun`` set up, if any.

    NCCL on CUDA devices, gloo on the CPU. Each process uses GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessInfo()
    info = ProcessInfo(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), world_size)
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def device_for(info: ProcessInfo, device: torch.device) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` in a multi-GPU run, ``device`` otherwise."""
    if device.type == "cuda" and info.distributed:
        return torch.device("cuda", info.local_rank)
    return device


def shutdown() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> ProcessInfo:
    """The rank and world size of the initialised process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return ProcessInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_world_size())
    return ProcessInfo()


def sum_across_processes(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all processes (``values`` itself alone)."""
    if current().distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def mean_across_processes(total: torch.Tensor, count: int) -> float:
    """``total / count`` with both summed over all processes; NaN when no process counted anything.

    Args:
        total: a 0-d tensor, this process's sum (of the losses of its samples, say).
        count: how many things this process added up in ``total``.
    """
    totals = sum_across_processes(torch.stack([total.float(), torch.tensor(float(count), device=total.device)]))
    return (totals[0] / totals[1]).item() if totals[1] > 0 else math.nan


def wrap(model: nn.Module, device: torch.device, info: ProcessInfo) -> nn.Module:
    """``model`` in DistributedDataParallel when this process is one of several, ``model`` itself otherwise.

    DistributedDataParallel averages the gradients over the processes in the backward
    pass; its forward is the model's, (B, 3, H, W) images -> (B, K, H, W) logits.
    """
    if not info.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank`` on, in order: each sample exactly once overall.

    For validation, where torch's ``DistributedSampler`` would repeat samples to even
    out the shards and so count them twice in the metric.
    """

    def __init__(self, length: int, info: ProcessInfo):
        self.length = length
        self.info = info

    def __iter__(self):
        return iter(range(self.info.rank, self.length, self.info.world_size))

    def __len__(self) -> int:
        return len(range(self.info.rank, self.length, self.info.world_size))
