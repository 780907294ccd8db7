"""Empirical risk minimisation: cross-entropy on the ID batch (the "plain"/"Normal" baseline of all four works)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.methods.base import Method
from rulab.registry import METHODS

__all__ = ["ERM"]


@METHODS.register("erm")
class ERM(Method):
    """Cross-entropy ``mean_i CE(f(x_i), y_i)`` with optional label smoothing.

    Args:
        label_smoothing: ε of label smoothing (0 = none), as ``torch.nn.functional.cross_entropy``.
    """

    batch_spec = "id"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"method parameter 'label_smoothing' must lie in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"], label_smoothing=self.label_smoothing)
        return {"loss": loss, "logits": logits}
