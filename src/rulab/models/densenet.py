"""``densenet_bc100``: DenseNet-BC (depth 100, growth rate 12) as used by ODIN (Liang et al. 2018; its README's released models).

Re-implemented after ODIN's ``code/densenet.py`` (``DenseNet3(100, K, growth_rate=12, reduction=0.5,
bottleneck=True, dropRate=0)``): stem conv3×3(C→2k) → 3 dense blocks of n = (depth−4)/6 bottleneck layers
(BN–ReLU–conv1×1(→4k)–BN–ReLU–conv3×3(→k), output concatenated to the input) with transitions
(BN–ReLU–conv1×1(compress by 0.5)–avgpool2) between them → BN → ReLU → global average pool → Linear.
0.77M parameters for K = 10 (the paper's "0.8M"). Init as the original: conv weights N(0, sqrt(2/(k·k·C_out))),
BN γ = 1, β = 0, Linear bias 0. Parameter names follow the original, so converted checkpoints load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.models.base import Classifier, Normalize
from rulab.models.spec import ODIN_CIFAR_MEAN, ODIN_CIFAR_STD, input_shape, resolve_stats
from rulab.models.wrn import fan_out_init_
from rulab.registry import MODELS

__all__ = ["BottleneckLayer", "Transition", "DenseNetBC", "densenet_bc100"]


def _dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)`` (active in training mode only; a module, so that MC dropout finds it), or an identity for
    ``p = 0``. Neither has state: the state_dict keys are those of the original code."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class BottleneckLayer(nn.Module):
    """BN–ReLU–conv1×1(c_in→4k)–[dropout]–BN–ReLU–conv3×3(4k→k)–[dropout], concatenated to the input.

    Args:
        c_in: input channels.
        growth: growth rate k (output adds k channels).
        dropout: dropout probability after each conv (0 in ODIN).
    """

    def __init__(self, c_in: int, growth: int, dropout: float) -> None:
        super().__init__()
        inter = 4 * growth
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, inter, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout
        self.drop1, self.drop2 = _dropout(dropout), _dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, c_in, H, W]`` → ``[B, c_in + k, H, W]``."""
        out = self.drop1(self.conv1(F.relu(self.bn1(x))))
        out = self.drop2(self.conv2(F.relu(self.bn2(out))))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN–ReLU–conv1×1(c_in→c_out)–[dropout]–avgpool2 between dense blocks."""

    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)
        self.dropout = dropout
        self.drop = _dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, c_in, H, W]`` → ``[B, c_out, H/2, W/2]``."""
        return F.avg_pool2d(self.drop(self.conv1(F.relu(self.bn1(x)))), 2)


class _DenseBlock(nn.Module):
    """``n`` bottleneck layers stored as ``.layer`` (the original's key names)."""

    def __init__(self, n: int, c_in: int, growth: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[BottleneckLayer(c_in + i * growth, growth, dropout) for i in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class DenseNetBC(Classifier):
    """DenseNet-BC for 32×32 inputs; ``features(x)`` is the pooled ``[B, D]`` vector (D = 342 for depth 100, k 12).

    Args:
        depth: total depth, ``6n + 4`` (100 → n = 16 bottleneck layers per block).
        growth: growth rate k.
        compression: transition compression θ (0.5).
        dropout: dropout probability (0 in ODIN).
        num_classes: K.
        in_channels: C.
        mean: Normalize mean, [0, 1] pixel units.
        std: Normalize standard deviation.

    Feature layers: the two transitions ``trans1``, ``trans2`` and the last dense block ``block3`` (before the final
    BN and ReLU).
    """

    feature_layers = ("trans1", "trans2", "block3")

    def __init__(
        self,
        depth: int,
        growth: int,
        compression: float,
        dropout: float,
        num_classes: int,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(f"densenet_bc needs depth = 6n + 4 with n >= 1 (e.g. 40, 100, 190), got {depth}")
        if growth < 1 or not 0.0 < compression <= 1.0 or not 0.0 <= dropout < 1.0:
            raise ConfigError(
                f"densenet_bc needs growth >= 1, 0 < compression <= 1 and 0 <= dropout < 1, got {growth}, {compression}, {dropout}"
            )
        n = (depth - 4) // 6
        self.normalize = Normalize(mean, std)
        c = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, c, kernel_size=3, padding=1, bias=False)
        self.block1 = _DenseBlock(n, c, growth, dropout)
        c += n * growth
        self.trans1 = Transition(c, int(math.floor(c * compression)), dropout)
        c = int(math.floor(c * compression))
        self.block2 = _DenseBlock(n, c, growth, dropout)
        c += n * growth
        self.trans2 = Transition(c, int(math.floor(c * compression)), dropout)
        c = int(math.floor(c * compression))
        self.block3 = _DenseBlock(n, c, growth, dropout)
        c += n * growth
        self.bn1 = nn.BatchNorm2d(c)
        self.feature_dim = c
        self.num_classes = num_classes
        self.fc = nn.Linear(c, num_classes)
        fan_out_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, H, W]`` → pooled ``[B, D]``."""
        z = self.trans1(self.block1(self.conv1(x)))
        z = self.block3(self.trans2(self.block2(z)))
        return F.adaptive_avg_pool2d(F.relu(self.bn1(z)), 1).flatten(1)


@MODELS.register("densenet_bc100")
@input_shape(3, 32, 32)
def densenet_bc100(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    growth: int = 12,
    dropout: float = 0.0,
) -> DenseNetBC:
    """ODIN's DenseNet-BC-100 (k = 12, bottleneck, compression 0.5, dropout 0; ODIN's README).

    Default normalisation: ODIN's CIFAR statistics (125.3, 123.0, 113.9)/255 and (63.0, 62.1, 66.7)/255 (ODIN's ``code/calData.py``).
    """
    m, s = resolve_stats(mean, std, in_channels, ODIN_CIFAR_MEAN, ODIN_CIFAR_STD, "densenet_bc100")
    return DenseNetBC(100, growth, 0.5, dropout, num_classes, in_channels, m, s)
