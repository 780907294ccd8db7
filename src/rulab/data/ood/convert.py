"""The one conversion rule of every OOD set (grey/colour, size, seeded subsets) and the helpers the sets share.

See :mod:`rulab.data.ood` ("Conversions") for the rule; :func:`to_shape` applies it to tensor sets.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rulab.data.tensors import TensorDataset, check_image_shape
from rulab.errors import ConfigError

__all__ = ["LUMA", "PathLike", "check_ood_shape", "subset_index", "to_shape", "ood_dataset"]

PathLike = str | os.PathLike[str]
LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights used to turn RGB into grey."""

check_ood_shape = functools.partial(check_image_shape, channels=(1, 3), what="OOD shape", error=ConfigError)
"""``(C, H, W)`` with C in {1, 3}: OOD images convert between grey and colour (:func:`to_shape`)."""


def subset_index(total: int, n: int | None, seed: int, name: str) -> torch.Tensor | None:
    """Seeded random subset of ``range(total)`` of size ``n`` (sorted), or ``None`` for all."""
    if n is None or n == total:
        return None
    if n < 1:
        raise ConfigError(f"n must be a positive number of images or None, got {n}")
    if n > total:
        raise ConfigError(
            f"OOD set '{name}' has {total} images but n={n} was asked for; ask for at most {total} (or n=None for all)"
        )
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values


def to_shape(x: torch.Tensor, shape: Sequence[int], chunk: int = 4096) -> torch.Tensor:
    """Convert images to ``shape`` (grey via ITU-R 601-2 luma, colour by replication, antialiased bilinear resize).

    Args:
        x: ``uint8 [N, C, H, W]`` with C in {1, 3}.
        shape: target ``(C', H', W')``.
        chunk: images converted at a time (bounds the float memory).

    Returns:
        ``uint8 [N, C', H', W']``; ``x`` itself when it already has that shape.
    """
    c, h, w = check_ood_shape(shape)
    if tuple(x.shape[1:]) == (c, h, w):
        return x
    out = torch.empty((len(x), c, h, w), dtype=torch.uint8)
    luma = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].float()
        if xb.shape[1] == 3 and c == 1:
            xb = (xb * luma).sum(1, keepdim=True)
        if tuple(xb.shape[2:]) != (h, w):
            xb = F.interpolate(xb, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + chunk] = xb.round_().clamp_(0, 255).to(torch.uint8)  # a grey source broadcasts to 3 channels
    return out


def ood_dataset(name: str, x: torch.Tensor, source: str, meta: dict[str, Any]) -> TensorDataset:
    """An OOD set: images ``x`` with every label ``-1``."""
    return TensorDataset(x, torch.full((len(x),), -1, dtype=torch.int64), [], name, source, meta)
