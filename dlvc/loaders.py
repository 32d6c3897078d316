"""The trainer's data loaders: reproducible shuffling, and each process's share of the data.

Training shuffles with a generator that :func:`seed_epoch` seeds with ``seed + epoch``
before each epoch, so an epoch's batches depend on the seed and the epoch alone and a
resumed run sees the same batches as an uninterrupted one. Under ``torchrun`` each
process loads its own share: torch's ``DistributedSampler`` for training (it pads the
last share so that every process takes the same number of steps) and
:class:`~dlvc.distributed.ShardSampler` for validation (every sample exactly once,
so that the merged metric counts each sample once). The last incomplete training
batch is dropped, because a batch of one breaks BatchNorm, unless it is the only one.

Every batch is a pair: images (B, 3, H, W) float and targets (B, H, W) int64, on the
CPU (pinned when the device is a GPU).
"""

import math

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from .distributed import ProcessInfo, ShardSampler


def training_loader(dataset: Dataset, batch_size: int, *, seed: int, num_workers: int, device: torch.device, process: ProcessInfo) -> DataLoader:
    """Shuffled batches of this process's share of ``dataset``; call :func:`seed_epoch` before each epoch."""
    generator = torch.Generator().manual_seed(seed)
    if process.distributed:
        sampler = DistributedSampler(dataset, process.world_size, process.rank, shuffle=True, seed=seed)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=_drops_last(len(sampler), batch_size),
        persistent_workers=num_workers > 0,
        generator=generator,
    )


def validation_loader(dataset: Dataset, batch_size: int, *, num_workers: int, device: torch.device, process: ProcessInfo) -> DataLoader:
    """Batches of this process's share of ``dataset`` in order, the last one possibly smaller."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), process),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
    )


def seed_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make the shuffling of a :func:`training_loader` in epoch ``epoch`` a function of ``seed`` and ``epoch`` alone."""
    loader.generator.manual_seed(seed + epoch)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def batches_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Training batches per epoch and process, as :func:`training_loader` makes them.

    Each process gets ``ceil(num_samples / world_size)`` samples (torch's
    DistributedSampler pads the last share); the last incomplete batch is dropped,
    unless it is the only one. Per-step schedules need this number up front.
    """
    per_process = math.ceil(num_samples / world_size)
    return per_process // batch_size if _drops_last(per_process, batch_size) else math.ceil(per_process / batch_size)


def _drops_last(samples: int, batch_size: int) -> bool:
    """Drop the last incomplete batch (a batch of one breaks BatchNorm) unless it is the only one."""
    return samples > batch_size
