"""Flip test-time augmentation (TTA) as a classifier: the model applied to an image and its horizontal mirror.

``FlipTTA(model).features(x) = ½ (model.features(x) + model.features(flip(x)))`` and ``head`` is the model's head,
so with a linear head the logits are the mean of the two views' logits (up to float rounding) and every detector
and metric downstream reads the averaged outputs consistently. Both views run as one forward pass of ``2B`` images.

It is an evaluation option (``eval.flip_tta``, DESIGN.md "What a user sees"): a result obtained with it says so
(``table.meta["flip_tta"]``), because the accuracy it reports is the accuracy of the two-view predictor, which costs
two forward passes per image. Gradient-based evaluations (ODIN, PGD) differentiate through both views, so they
attack and perturb the predictor that is actually evaluated. Only meaningful where a horizontal flip preserves the
label (Fashion-MNIST clothes, CIFAR, natural images; not digits or text).
"""

from __future__ import annotations

import torch
from torch import nn

from rulab.models.base import Classifier

__all__ = ["FlipTTA"]


class FlipTTA(Classifier):
    """Average a classifier's penultimate features over the image and its horizontal mirror.

    Args:
        model: a :class:`~rulab.models.base.Classifier` (``features``/``head`` split, linear ``fc`` head).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.num_classes = getattr(model, "num_classes", 0)
        self.feature_dim = getattr(model, "feature_dim", 0)

    @property
    def fc(self) -> nn.Module:  # type: ignore[override]
        """The wrapped model's head (read by detectors that need the head's weights)."""
        return self.inner.fc

    @property
    def normalize(self) -> nn.Module:  # type: ignore[override]
        return self.inner.normalize

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → ``[B, D]``: the mean of the features of ``x`` and ``x.flip(-1)``."""
        z = self.inner.features(torch.cat([x, x.flip(-1)]))
        a, b = z.chunk(2)
        return (a + b) * 0.5

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → logits ``[B, K]`` (the wrapped model's head)."""
        return self.inner.head(z)

    def reset_head(self, num_classes: int) -> None:
        self.inner.reset_head(num_classes)
        self.num_classes = num_classes
