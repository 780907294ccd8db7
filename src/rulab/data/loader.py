"""A tensor loader: shuffled, augmented batches from uint8 tensors, with no worker processes.

The dataset lives as ``uint8 [N, C, H, W]`` on the training device; a batch is one index gather, one
conversion to float in [0, 1] and batched augmentation (after airbench's ``CifarLoader``).

Randomness is a pure function of ``(seed, epoch, batch)``: the permutation of epoch ``e`` comes from a
generator seeded with ``(seed, e)`` and the augmentation of batch ``i`` from ``(seed, e, i)``. A resumed run
therefore sees exactly the batches an uninterrupted run would (:meth:`TensorLoader.set_position`), and under
``torch.distributed`` every rank draws the same global batch and keeps its own slice of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from rulab.config import AugmentCfg
from rulab.data.augment import augment_batch
from rulab.errors import InputError

__all__ = ["TensorLoader", "derive_seed", "make_generator"]

_MASK = (1 << 63) - 1


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived deterministically from integers (SplitMix64-style mixing)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & _MASK
        h = (h * 0xBF58476D1CE4E5B9) & _MASK
        h ^= h >> 31
    return h & _MASK


def make_generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``parts``."""
    dev = torch.device(device)
    g = torch.Generator(device=dev if dev.type == "cuda" else "cpu")
    g.manual_seed(derive_seed(*parts))
    return g


class TensorLoader:
    """Iterate over shuffled, augmented float batches of a uint8 image tensor.

    Args:
        x: images ``uint8 [N, C, H, W]`` (kept on ``device``).
        y: labels ``int64 [N]``.
        batch_size: the GLOBAL batch size (split across ``world_size`` ranks).
        shuffle: draw a new permutation every epoch.
        drop_last: drop the last incomplete batch.
        augment: augmentation applied to every batch (``None`` = none).
        seed: base seed of the permutation and augmentation streams.
        device: where batches are produced; ``None`` = where ``x`` is.
        rank, world_size: this process's share under ``torch.distributed``.
        channels_last: return batches in channels-last memory format.
        two_views: also yield ``x2``, a second, independently augmented view (Barlow Twins).

    Yields:
        dicts with ``x: float32 [b, C, H, W]`` in [0, 1], ``y: int64 [b]`` (and ``x2``), where
        ``b = batch_size / world_size``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        augment: AugmentCfg | None = None,
        seed: int = 0,
        device: torch.device | str | None = None,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        two_views: bool = False,
    ) -> None:
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise InputError(
                f"TensorLoader needs uint8 images [N, C, H, W], got {x.dtype} {tuple(x.shape)}; "
                "add the channel axis of grey images with x.unsqueeze(1) and store pixels as uint8 0..255"
            )
        if y.shape != (len(x),):
            raise InputError(
                f"TensorLoader needs one label per image ({len(x)}), got labels of shape {tuple(y.shape)}; pass y: int64 [N]"
            )
        if len(x) == 0:
            raise InputError(
                "TensorLoader got an empty dataset; check the dataset, its class filter and its subset size"
            )
        if batch_size < 1 or batch_size % world_size:
            raise InputError(
                f"batch size {batch_size} must be a positive multiple of the number of processes ({world_size})"
            )
        self.device = torch.device(device) if device is not None else x.device
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last and len(x) >= batch_size
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.channels_last = channels_last
        self.two_views = two_views
        self.epoch = 0
        self._start = 0  # first batch index of the next iteration (for resuming mid-epoch)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_position(self, epoch: int, batch: int = 0) -> None:
        """Make the next ``iter()`` start at batch ``batch`` of epoch ``epoch``."""
        self.epoch, self._start = epoch, batch

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.x), device=self.device)
        g = make_generator(self.seed, 0x5EED, epoch)
        return torch.randperm(len(self.x), generator=g).to(self.device)

    def _prepare(self, xb: torch.Tensor, epoch: int, i: int, view: int) -> torch.Tensor:
        xf = xb.float().div_(255)
        if self.augment is not None:
            xf = augment_batch(xf, self.augment, make_generator(self.seed, 0xA06, epoch, i, view, device=self.device))
        if self.world_size > 1:
            per = len(xf) // self.world_size
            xf = xf[self.rank * per : (self.rank + 1) * per]
        if self.channels_last:
            xf = xf.contiguous(memory_format=torch.channels_last)
        return xf

    def batch(self, epoch: int, i: int) -> dict[str, torch.Tensor]:
        """Batch ``i`` of epoch ``epoch`` (a pure function of seed, epoch and i)."""
        if getattr(self, "_order_epoch", None) != epoch:
            self._order_cache, self._order_epoch = self._order(epoch), epoch
        idx = self._order_cache[i * self.batch_size : (i + 1) * self.batch_size]
        if self.world_size > 1 and len(idx) % self.world_size:
            idx = idx[: len(idx) - len(idx) % self.world_size]
        xb, yb = self.x[idx], self.y[idx]
        out = {"x": self._prepare(xb, epoch, i, 0), "y": yb}
        if self.world_size > 1:
            per = len(yb) // self.world_size
            out["y"] = yb[self.rank * per : (self.rank + 1) * per]
        if self.two_views:
            out["x2"] = self._prepare(xb, epoch, i, 1)
        return out

    def batch_at(self, n: int) -> dict[str, torch.Tensor]:
        """The ``n``-th batch of an endless stream of epochs (for an outlier pool cycled alongside training)."""
        return self.batch(*divmod(n, len(self)))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch, start = self.epoch, self._start
        for i in range(start, len(self)):
            yield self.batch(epoch, i)
        self.epoch, self._start = epoch + 1, 0
