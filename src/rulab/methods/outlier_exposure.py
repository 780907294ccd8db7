"""Outlier Exposure (Hendrycks, Mazeika, Dietterich, ICLR 2019, "Deep Anomaly Detection with Outlier Exposure",
arXiv:1812.04606; reference code hendrycks/outlier-exposure, the code W1 is forked from).

For an ID batch ``(x_i, y_i)``, ``i = 1..N`` and an outlier batch ``x̃_j``, ``j = 1..M``::

    L = (1/N) Σ_i CE(f(x_i), y_i) + λ · (1/M) Σ_j [ −(1/K) Σ_k log softmax(f(x̃_j))_k ]

the second term being the cross-entropy from ``softmax(f(x̃))`` to the uniform distribution over the K classes
(OE code: ``−(x.mean(1) − logsumexp(x, 1)).mean()``), λ = 0.5. One forward pass runs on the concatenated
``[ID; outliers]`` batch, as in the reference code, so BatchNorm sees both (separate passes hurt, OpenOOD issue #138).
The OE recipe draws outlier batches twice the ID batch size (``oe_batch_size`` 256 vs 128).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.methods.base import Method
from rulab.registry import METHODS, OOD_SETS

__all__ = ["OutlierExposure", "uniform_ce"]


def uniform_ce(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the uniform label, ``−(1/K) Σ_k log softmax(logits)_k``, per example: ``[M, K] → [M]``."""
    return torch.logsumexp(logits, 1) - logits.mean(1)


@METHODS.register("oe")
class OutlierExposure(Method):
    """Cross-entropy on ID data plus λ times the uniform cross-entropy on outliers (batch spec ``"id+outliers"``).

    Args:
        outliers: the registered OOD set or noise family the outlier pool is drawn from. Never one of the
            benchmark's test OOD sets; for Fashion-MNIST the default ``photos`` (natural-image crops) is disjoint
            from its test sets (digits, textures, and the noise families).
        lam: λ, the weight of the outlier term (OE: 0.5).
        outlier_pool: number of outlier images generated or loaded for the pool.
        outlier_batch_ratio: outlier batch size as a multiple of the ID batch size (OE: 2).
    """

    batch_spec = "id+outliers"

    def __init__(
        self, outliers: str = "photos", lam: float = 0.5, outlier_pool: int = 20000, outlier_batch_ratio: float = 2.0
    ) -> None:
        if outliers not in OOD_SETS:
            raise ConfigError(
                f"method parameter 'outliers' names unknown OOD set '{outliers}'; choose one of: {', '.join(OOD_SETS.list())}"
            )
        if not lam >= 0:
            raise ConfigError(f"method parameter 'lam' must be >= 0, got {lam}")
        if outlier_pool < 1 or not outlier_batch_ratio > 0:
            raise ConfigError(
                f"method parameters 'outlier_pool' and 'outlier_batch_ratio' must be positive, got {outlier_pool} and {outlier_batch_ratio}"
            )
        self.outliers = outliers
        self.lam = lam
        self.outlier_pool = outlier_pool
        self.outlier_batch_ratio = outlier_batch_ratio

    def passes_per_image(self) -> float:
        """A forward and backward pass of the ID image and of ``outlier_batch_ratio`` outliers."""
        return 3.0 * (1.0 + self.outlier_batch_ratio)

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, y, x_out = batch["x"], batch["y"], batch["x_out"]
        logits = model(torch.cat([x, x_out]))
        loss_id = F.cross_entropy(logits[: len(x)], y)
        loss_oe = uniform_ce(logits[len(x) :]).mean()
        return {
            "loss": loss_id + self.lam * loss_oe,
            "logits": logits[: len(x)],
            "loss_id": loss_id.detach(),
            "loss_oe": loss_oe.detach(),
        }
