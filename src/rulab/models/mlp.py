"""``mlp``: the ReLU multilayer perceptron of Hein et al.'s two-moons toy (W3's ``toy2d.ipynb``).

Inputs are vectors ``[B, D]`` (points in ≈[0, 1]² for the toy), not images. Architecture D–100–100–K with ReLU,
weights N(0, 2/fan_in) (std ``sqrt(2/fan_in)``), zero biases. ``features(x)`` is the last hidden layer after
its ReLU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rulab.errors import ConfigError, InputError
from rulab.models.base import Classifier, Normalize
from rulab.models.spec import input_shape, resolve_stats
from rulab.registry import MODELS

__all__ = ["VectorNormalize", "MLP", "mlp"]


class VectorNormalize(Normalize):
    """:class:`Normalize` for vectors: ``(x − mean) / std`` per feature on ``[B, D]``.

    Same buffers (``mean``, ``std``) as the image version, so checkpoints and the ``Classifier.mean`` / ``std``
    properties work unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, D]`` → normalised ``[B, D]``."""
        if x.ndim != 2 or x.shape[1] != self.mean.numel():
            raise InputError(f"this model expects inputs of shape [B, {self.mean.numel()}], got {list(x.shape)}")
        return (x - self.mean.flatten()) / self.std.flatten()


class MLP(Classifier):
    """Fully connected ReLU network; ``features(x)`` is the last hidden layer ``[B, hidden[-1]]``.

    Args:
        in_features: input dimension D.
        hidden: widths of the hidden layers (at least one).
        num_classes: K.
        mean: per-feature mean of the VectorNormalize layer.
        std: per-feature standard deviation.

    Feature layers: the output of each hidden layer's ReLU, ``body.1``, ``body.3``, … (``[B, hidden[i]]``).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        widths = [int(h) for h in hidden]
        if in_features < 1 or not widths or min(widths) < 1:
            raise ConfigError(
                f"mlp needs in_features >= 1 and at least one hidden layer of width >= 1, got {in_features}, {list(hidden)}"
            )
        self.normalize = VectorNormalize(mean, std)
        layers: list[nn.Module] = []
        for a, b in zip([in_features, *widths[:-1]], widths):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.feature_layers = tuple(f"body.{2 * i + 1}" for i in range(len(widths)))
        self.in_features = in_features
        self.feature_dim = widths[-1]
        self.num_classes = num_classes
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.in_features))
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, D]`` → last hidden layer ``[B, hidden[-1]]``."""
        return self.body(x)


@MODELS.register("mlp")
@input_shape(2)
def mlp(
    num_classes: int = 2,
    in_features: int = 2,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    hidden: Sequence[int] = (100, 100),
) -> MLP:
    """Hein et al.'s two-moons MLP 2–100–100–2 (W3's ``toy2d.ipynb``); default normalisation: none (0 / 1)."""
    m, s = resolve_stats(mean, std, in_features, (0.0,), (1.0,), "mlp")
    return MLP(in_features, hidden, num_classes, m, s)
