"""Data-parallel training across processes started by `torchrun` (gloo on CPU, nccl on GPU).

Gradients are averaged with one all_reduce per model after each backward, which is what DDP does;
doing it explicitly keeps R1's double backward and the shared fake batch simple. Each rank's loss is
a mean over its B samples, so the average over ranks equals the gradient of the global-batch mean.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from umed_common.device import resolve_device


@dataclass
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistContext(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def finish_distributed(ctx: DistContext) -> None:
    """Wait for every rank, then leave the process group; exiting with gloo's threads still
    running aborted a rank now and then ("terminate called without an active exception")."""
    if ctx.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(module: nn.Module, ctx: DistContext) -> None:
    """All-reduce the gradients of `module` (flattened into one buffer) and divide by the world size."""
    if ctx.world_size <= 1:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        count = p.grad.numel()
        p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
        offset += count


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if ctx.world_size <= 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when `flag` is true on at least one (stop requests, time budget)."""
    if ctx.world_size <= 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def average_metrics(metrics: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Mean of each logged number over ranks, so the log of a data-parallel run reads as one process."""
    if ctx.world_size <= 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return {k: v / ctx.world_size for k, v in zip(keys, values.tolist())}
