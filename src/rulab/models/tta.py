"""Flip test-time augmentation (TTA) as a classifier: the model applied to an image and its horizontal mirror.

``FlipTTA(model)(x) = ½ (model(x) + model(flip(x)))``: the logits are the mean of the two views' logits, computed as
two forward passes of ``B`` images (one pass of ``2B`` would double the activations held at once, and on a CPU it is
slower per image once they spill out of the caches: measured 14,300 img/s at batch 1,000 and 11,900 at 2,000 for the
inference copy of ``fastcnn``). ``features(x)`` is the mean of the two views' features, and ``head`` maps it to
the same averaged logits (exactly so for a linear head, where ``W·½(z₁ + z₂) + b = ½(Wz₁ + b + Wz₂ + b)``; for a
wrapped network whose features come from a named layer or a function, the head returns the averaged logits of the
pass that produced those features). Every detector and metric downstream reads the averaged outputs consistently.

It is an evaluation option (``eval.flip_tta``): a result obtained with it says so (``table.meta["flip_tta"]``) and
its cache entries are keyed apart from the plain model's, because the accuracy it reports is the accuracy of the
two-view predictor, which costs two forward passes per image. Gradient-based evaluations (ODIN, PGD) differentiate
through both views, so they perturb and attack the predictor that is actually evaluated. Only meaningful where a
horizontal flip preserves the label (Fashion-MNIST clothes, CIFAR, natural images; not digits or text).

Intermediate layers (:meth:`FlipTTA.layer_outputs`) are the wrapped model's, averaged over the two views with the
mirrored view's maps flipped back so that positions align; :meth:`FlipTTA.forward_with` applies the edit to each
view's pass and averages the two edited logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rulab.models.base import Classifier, LayerEdit, WrapsInner

__all__ = ["FlipTTA"]


def _mirror(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` → the horizontal mirror images (last axis reversed), in ``x``'s memory format."""
    return x.flip(-1)


class FlipTTA(WrapsInner, Classifier):
    """A classifier's outputs averaged over the image and its horizontal mirror (module docstring).

    Args:
        model: a :class:`~rulab.models.base.Classifier` (a rulab model or a wrapped network) taking [0, 1] pixels.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.num_classes = getattr(model, "num_classes", 0)
        self.feature_dim = getattr(model, "feature_dim", 0)

    @property
    def feature_layers(self) -> tuple[str, ...]:  # type: ignore[override]
        """The wrapped model's feature layers."""
        return tuple(getattr(self.inner, "feature_layers", ()))

    def layer_outputs(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The mean over the two views of the logits and of each layer's output (4-D maps of the mirrored view flipped
        back first)."""
        la, outs_a = self.inner.layer_outputs(x, layers)
        lb, outs_b = self.inner.layer_outputs(_mirror(x), layers)
        back = {n: _mirror(t) if t.ndim == 4 else t for n, t in outs_b.items()}
        return (la + lb) * 0.5, {n: (outs_a[n] + back[n]) * 0.5 for n in outs_a}

    def forward_with(self, x: torch.Tensor, edits: Mapping[str, LayerEdit]) -> torch.Tensor:
        """The mean of the edited logits of ``x`` and of its mirror image."""
        return (self.inner.forward_with(x, edits) + self.inner.forward_with(_mirror(x), edits)) * 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → ``[B, K]``: the mean of the logits of ``x`` and ``x.flip(-1)``."""
        return (self.inner(x) + self.inner(_mirror(x))) * 0.5

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → ``[B, D]``: the mean of the features of ``x`` and ``x.flip(-1)``."""
        linear = isinstance(self.fc, nn.Linear)
        za = self.inner.features(x)
        la = None if linear else self.inner.head(za)  # a named layer or a function: the logits of this very pass
        zb = self.inner.features(_mirror(x))
        z = (za + zb) * 0.5
        if la is not None:
            self.__dict__["_stashed"] = (z, (la + self.inner.head(zb)) * 0.5)
        return z

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` (from :meth:`features`) → logits ``[B, K]``, the mean of the two views' logits."""
        stashed = self.__dict__.pop("_stashed", None)
        if stashed is not None and stashed[0] is z:
            return stashed[1]
        return self.inner.head(z)

    def reset_head(self, num_classes: int) -> None:
        """Replace the wrapped model's head (see its ``reset_head``)."""
        self.inner.reset_head(num_classes)
        self.num_classes = num_classes
