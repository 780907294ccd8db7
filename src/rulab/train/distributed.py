"""torch.distributed plumbing: process-group set-up from ``torchrun``'s environment, rank-0 guard, gathers.

rulab uses the standard engine (DDP launched by ``torchrun``), not a home-made scheduler. Under ``torchrun
--nproc_per_node=N -m rulab train ...`` every process builds the same model and loader; the loader hands each rank
its slice of the same global batch; DDP averages gradients; only rank 0 writes files. Backend: NCCL on CUDA,
gloo otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "is_main", "barrier", "gather_rows", "all_reduce_sum", "resolve_device"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU; under DDP on CUDA, the process's local GPU."""
    info = info or DistInfo()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and info.enabled:
        name = f"cuda:{info.local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from rulab.errors import ConfigError

        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or --device auto")
    return dev


def init_distributed(device_type: str | None = None) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment (``WORLD_SIZE`` > 1), else do nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = (device_type or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def is_main() -> bool:
    """True on rank 0 or when not distributed."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (identity when not distributed)."""
    if dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's ``[n_r, ...]`` tensor along dim 0 in rank order (sizes may differ)."""
    if not dist.is_initialized():
        return t
    world = dist.get_world_size()
    n = torch.tensor([len(t)], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - len(t), *t.shape[1:]), dtype=t.dtype, device=t.device)
    buf = [torch.empty((m, *t.shape[1:]), dtype=t.dtype, device=t.device) for _ in range(world)]
    dist.all_gather(buf, torch.cat([t, pad]))
    return torch.cat([b[: int(s.item())] for b, s in zip(buf, sizes)])


def shard_range(n: int, info: DistInfo) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` share of ``n`` items for this rank (evaluation sharding)."""
    per = -(-n // info.world_size)
    start = min(info.rank * per, n)
    return start, min(start + per, n)
