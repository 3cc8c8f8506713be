"""Distributed set-up for ``torchrun``: ranks, the process group, DDP and each rank's batches.

``torchrun --nproc_per_node=K -m nslib train ...`` starts K processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment. Each joins one process group
(nccl on CUDA, gloo on the CPU), wraps the model in DistributedDataParallel and trains
on its share of every epoch (a ``DistributedSampler``, ``batch_size // K`` per process,
so the global batch stays ``batch_size``). Without torchrun every function here is the
plain single-process path: rank 0 of 1, the model as it is, ``nslib.data.make_loader``.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import make_loader
from .utils import default_device

__all__ = ["torchrun_env", "start_process_group", "train_device", "wrap_model", "epoch_loader", "barrier"]


def torchrun_env() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment, ``(0, 0, 1)`` without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def start_process_group(world: int, device=None) -> None:
    """Join torchrun's process group (once): nccl when training on CUDA (see :func:`train_device`), else gloo."""
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if train_device(device, 0, world).type == "cuda" else "gloo"  # also for torch.device("cpu")
        torch.distributed.init_process_group(backend)


def train_device(device, local_rank: int, world: int) -> torch.device:
    """``device``, or by default this process's GPU under torchrun, else ``nslib.utils.default_device()``."""
    if device is None:
        device = torch.device(f"cuda:{local_rank}") if world > 1 and torch.cuda.is_available() else default_device()
    device = torch.device(device)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)  # "cuda" under torchrun: this process's own GPU
    return device


def wrap_model(net: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``net`` in DistributedDataParallel when ``world > 1`` (gradients averaged across processes), else ``net``."""
    if world <= 1:
        return net
    return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def epoch_loader(dataset: Dataset, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                 world: int = 1) -> DataLoader:
    """The shuffled batches of epoch ``epoch`` (from 0) for this process.

    One process: ``make_loader`` seeded ``seed * 1000 + epoch``. Under torchrun: this
    rank's share from a ``DistributedSampler(seed=seed)`` set to ``epoch``, in batches of
    ``max(1, batch_size // world)``.
    """
    if world <= 1:
        return make_loader(dataset, batch_size, shuffle=True, seed=seed * 1000 + epoch)
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=max(1, batch_size // world), sampler=sampler)


def barrier(world: int) -> None:
    """Wait for every process of the group (no-op in one process)."""
    if world > 1:
        torch.distributed.barrier()
