"""torch.distributed plumbing: process-group set-up from ``torchrun``'s environment, rank-0 guard, gathers.

rulab uses the standard engine (DDP launched by ``torchrun``), not a home-made scheduler. Under ``torchrun
--nproc_per_node=N -m rulab train ...`` every process builds the same model and loader; the loader hands each rank
its slice of the same global batch; DDP averages gradients; only rank 0 writes files (docs/distributed.md).
Backend: NCCL on CUDA (one GPU per process: ``cuda:LOCAL_RANK``), gloo otherwise.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rulab.errors import ConfigError

__all__ = [
    "DistInfo",
    "init_distributed",
    "dist_info",
    "is_main",
    "barrier",
    "gather_rows",
    "all_reduce_sum",
    "resolve_device",
    "shard_batches",
    "unwrap_model",
]


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
    """``auto`` → CUDA if available, else MPS, else CPU; under DDP on CUDA, the process's local GPU.

    Under ``torchrun`` every process drives one GPU, ``cuda:LOCAL_RANK``; a ``cuda:N`` index in the config is
    then ignored (select GPUs with ``CUDA_VISIBLE_DEVICES`` instead).
    """
    info = info or DistInfo()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.split(":")[0] == "cuda" and info.enabled:
        name = f"cuda:{info.local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or --device auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {dev} does not exist ({torch.cuda.device_count()} GPU(s) visible); start at most that many processes per node or pick another GPU"
        )
    return dev


def init_distributed(device_type: str | None = None) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment (``WORLD_SIZE`` > 1), else do nothing.

    On CUDA the process first binds to ``cuda:LOCAL_RANK`` and uses NCCL; otherwise gloo. A group created here is
    destroyed when the process exits.

    Args:
        device_type: ``"cuda"``, ``"cpu"``, ``"mps"`` or ``None`` (= CUDA when available).

    Raises:
        ConfigError: ``WORLD_SIZE`` is set without ``RANK`` (not started by ``torchrun``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if "RANK" not in os.environ:
        raise ConfigError(
            "WORLD_SIZE is set but RANK is not; start distributed runs with `torchrun --nproc_per_node=N -m rulab train ...`"
        )
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = (device_type or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
        if cuda:
            if local >= torch.cuda.device_count():
                raise ConfigError(
                    f"LOCAL_RANK {local} has no GPU ({torch.cuda.device_count()} visible); use --nproc_per_node <= the number of GPUs"
                )
            torch.cuda.set_device(local)
            dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local))
        else:
            dist.init_process_group(backend="gloo")
        atexit.register(_destroy)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def dist_info() -> DistInfo:
    """The :class:`DistInfo` of the current process group (rank 0 of 1 when none is initialised)."""
    if not dist.is_initialized():
        return DistInfo()
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def is_main() -> bool:
    """True on rank 0 or when not distributed."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (identity when not distributed). NCCL needs ``t`` on this rank's GPU."""
    if dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's ``[n_r, ...]`` tensor along dim 0 in rank order (sizes may differ, even be 0).

    Every rank receives the whole ``[sum n_r, ...]`` tensor. The trailing shape and dtype must agree across
    ranks. NCCL needs ``t`` on this rank's GPU; gloo takes CPU tensors.
    """
    if not dist.is_initialized():
        return t
    world = dist.get_world_size()
    n = torch.tensor([len(t)], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - len(t), *t.shape[1:]), dtype=t.dtype, device=t.device)
    buf = [torch.empty((m, *t.shape[1:]), dtype=t.dtype, device=t.device) for _ in range(world)]
    dist.all_gather(buf, torch.cat([t, pad]).contiguous())
    return torch.cat([b[: int(s.item())] for b, s in zip(buf, sizes)])


def shard_batches(n: int, batch_size: int, info: DistInfo) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` share of ``n`` items for this rank, cut at multiples of ``batch_size``.

    The ``ceil(n / batch_size)`` batches of a single-process pass are dealt out in order, ``⌊b/W⌋`` or ``⌈b/W⌉``
    per rank, so every rank runs exactly the batches a single process would (same shapes, same numerics) and
    the gathered result is in the original order. A rank may get nothing when there are fewer batches than ranks.
    """
    nb = -(-n // batch_size)
    b0 = info.rank * nb // info.world_size
    b1 = (info.rank + 1) * nb // info.world_size
    return min(b0 * batch_size, n), min(b1 * batch_size, n)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside (Distributed)DataParallel and ``torch.compile`` wrappers, in any nesting."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model
