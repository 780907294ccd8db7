"""The method contract: a training method is an objective, not a trainer.

``method(model, batch) -> {"loss": scalar, ...logs}``; the one training loop (rulab.train.loop) builds the batch the
method declares in ``batch_spec``:

* ``"id"``: ``{"x": [B, C, H, W] in [0, 1], "y": [B]}`` (ERM, MixUp, CEDA/ACET — which make their noise from x —,
  adversarial training);
* ``"id+outliers"``: also ``"x_out": [B_out, C, H, W]`` drawn from the OOD set named by ``method.outliers``
  (Outlier Exposure);
* ``"two_views"``: also ``"x2"``, a second independently augmented view of the same images (Barlow Twins).

Every batch also carries ``"generator"``: a ``torch.Generator`` seeded from (run seed, step), the only source of
randomness a method may use, so that runs are reproducible and resume exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["Method", "BATCH_SPECS"]

BATCH_SPECS = ("id", "id+outliers", "two_views")


class Method:
    """Base class of training objectives.

    Class attributes:
        batch_spec: one of :data:`BATCH_SPECS`.
        supervised: whether the objective uses labels (the loop then reports training accuracy).
        outliers: for ``"id+outliers"``, the registered OOD set to draw outliers from.
        outlier_pool: how many outlier images to generate or load for the pool.
        outlier_batch_ratio: outlier batch size as a multiple of the ID batch size.
    """

    batch_spec: ClassVar[str] = "id"
    supervised: ClassVar[bool] = True
    outliers: str = ""
    outlier_pool: int = 20000
    outlier_batch_ratio: float = 1.0

    def setup(self, model: nn.Module, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        """Build any state the objective needs before training (default: nothing)."""

    def passes_per_image(self) -> float:
        """Forward-pass equivalents one training image costs, for cost estimates (``rulab show``): a forward and a
        backward pass count as 3 forward passes; methods that run more (PGD, a second view, outliers) override it."""
        return 3.0

    def modules(self) -> dict[str, nn.Module]:
        """Extra trainable modules (e.g. a projector): optimised with the model and saved in training state."""
        return {}

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and not isinstance(v, nn.Module)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
