"""The model contract every registered classifier follows.

A classifier takes images in [0, 1] (convention 1 in docs/conventions.md); its first layer is :class:`Normalize`, so ε
and corruption severities are pixel units everywhere. It exposes the split that OOD detectors and
fine-tuning need (as timm's ``forward_features`` / ``reset_classifier`` do):

* ``features(x) -> [B, D]``: the penultimate representation (after global pooling),
* ``head(z) -> [B, K]``: the classifier on top,
* ``reset_head(K)``: a fresh ``Linear(D, K)`` (PyTorch default init), for fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalize", "Classifier"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a layer; ``mean`` and ``std`` are buffers saved with the weights.

    Args:
        mean: per-channel mean in [0, 1] pixel units, length C (a single value is broadcast).
        std: per-channel standard deviation, length C.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, C, H, W]`` in [0, 1] → normalised ``[B, C, H, W]``."""
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Classifier(nn.Module):
    """Base class: ``forward(x) = head(features(x))`` with ``x`` in [0, 1].

    Subclasses build ``self.normalize`` (a :class:`Normalize`), a backbone used by :meth:`forward_features`
    and ``self.fc`` (the ``Linear(D, K)`` head), and set ``num_classes`` and ``feature_dim``.
    """

    num_classes: int
    feature_dim: int
    fc: nn.Linear
    normalize: Normalize

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input ``[B, C, H, W]`` → pooled features ``[B, D]``. Implemented by subclasses."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``[B, C, H, W]`` → penultimate features ``[B, D]``."""
        return self.forward_features(self.normalize(x))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → logits ``[B, K]``."""
        return self.fc(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``[B, C, H, W]`` → logits ``[B, K]``."""
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised ``Linear(D, num_classes)`` on the same device and dtype."""
        ref = self.fc.weight
        self.fc = nn.Linear(self.feature_dim, num_classes).to(device=ref.device, dtype=ref.dtype)
        self.num_classes = num_classes

    @property
    def mean(self) -> list[float]:
        return self.normalize.mean.flatten().tolist()

    @property
    def std(self) -> list[float]:
        return self.normalize.std.flatten().tolist()
