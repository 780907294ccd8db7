"""Wide residual networks as used by W1 (Hendrycks et al. 2019, ``uncertainty/CIFAR/models/wrn.py``) and
ODIN (``wideresnet.py``).

``wrn40_2`` is W1's CIFAR / Tiny ImageNet network (~2.24M parameters at K = 10), ``wrn28_10`` the network of
W1's adversarial-robustness part and of ODIN, ``wrn`` the general entry (any ``depth = 6n + 4`` and width).

Pre-activation BasicBlock (hendrycks/pre-training ``models/wrn.py``): when the block changes the channel count,
``x ← ReLU(BN1(x))`` is computed first and BOTH the residual path and the 1×1 strided shortcut conv consume it;
otherwise the residual path starts from ``ReLU(BN1(x))`` and the shortcut is the raw ``x``. Residual path:
conv3×3(stride s) → BN2 → ReLU → Dropout(p) → conv3×3 (``dropout_placement="before_conv2"``, W1). ODIN's
``wideresnet.py`` applies the dropout right after conv1, before BN2 (``dropout_placement="after_conv1"``).
Head: BN → ReLU → global average pool → Linear. Init: conv weights N(0, sqrt(2/(k·k·C_out))) (fan-out He),
BN γ = 1, β = 0, Linear bias 0 (Linear weight: PyTorch default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.models.base import Classifier, Normalize
from rulab.models.spec import input_shape, resolve_stats
from rulab.registry import MODELS

__all__ = ["WideBasicBlock", "WideResNet", "wrn", "wrn40_2", "wrn28_10", "DROPOUT_PLACEMENTS", "fan_out_init_"]

DROPOUT_PLACEMENTS = ("before_conv2", "after_conv1")


def fan_out_init_(module: nn.Module) -> None:
    """The initialisation of W1's and ODIN's WRN / DenseNet code (fan-out He normal), in place.

    Conv weights: normal with std ``sqrt(2 / fan_out)``, ``fan_out = k·k·C_out``; BN γ = 1, β = 0; Linear bias 0
    (Linear weight: PyTorch default). Used by :class:`WideResNet` and :class:`~rulab.models.densenet.DenseNetBC`.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


class WideBasicBlock(nn.Module):
    """One pre-activation block of a wide ResNet (see the module docstring for the data flow).

    Args:
        c_in: input channels.
        c_out: output channels; ``c_in != c_out`` makes this a projection block (1×1 strided shortcut conv).
        stride: stride of the first 3×3 conv and of the shortcut conv.
        dropout: dropout probability p inside the residual path (only active in training mode).
        dropout_placement: ``"before_conv2"`` (W1) or ``"after_conv1"`` (ODIN).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, dropout_placement: str) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.dropout_after_conv1 = dropout_placement == "after_conv1"
        # a module (no state: the state_dict keys are unchanged), so that MC dropout (rulab.models.mc_dropout) finds it
        self.drop = nn.Dropout(dropout) if dropout > 0 else None
        self.equal_in_out = c_in == c_out
        # attribute names follow hendrycks/pre-training models/wrn.py, so its state_dicts map key for key
        self.convShortcut = (
            None if self.equal_in_out else nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, c_in, H, W]`` → ``[B, c_out, H/s, W/s]``."""
        act = F.relu(self.bn1(x))
        out = self.conv1(act)
        if self.drop is not None and self.dropout_after_conv1:
            out = self.drop(out)
        out = F.relu(self.bn2(out))
        if self.drop is not None and not self.dropout_after_conv1:
            out = self.drop(out)
        out = self.conv2(out)
        skip = x if self.convShortcut is None else self.convShortcut(act)
        return skip + out


class _Stage(nn.Module):
    """A sequence of blocks stored as ``.layer`` (the original's ``NetworkBlock``, kept for its key names)."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layer = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(Classifier):
    """WRN-depth-widen: stem conv3×3(C→16) → 3 stages of n = (depth−4)/6 blocks with 16·w, 32·w, 64·w channels
    (strides 1, 2, 2) → BN → ReLU → global average pool → Linear(64·w, K).

    ``features(x)`` is the pooled ``[B, 64·w]`` vector. Any input side works (adaptive pooling: identical to
    W1's ``avg_pool2d(8)`` at 32×32 and ``avg_pool2d(16)`` at 64×64). Parameter names (``conv1``,
    ``block1.layer.0.bn1``, ``convShortcut``, ``bn1``, ``fc``) are those of W1's and ODIN's code, so their
    state_dicts load once converted to safetensors (plus this model's ``normalize.*`` buffers).

    Args:
        depth: total depth, ``6n + 4``.
        widen: widening factor w.
        num_classes: K.
        in_channels: C.
        dropout: dropout probability inside each block.
        dropout_placement: ``"before_conv2"`` (W1) or ``"after_conv1"`` (ODIN).
        mean: Normalize mean, [0, 1] pixel units.
        std: Normalize standard deviation.

    Feature layers: the three stages ``block1``, ``block2``, ``block3`` (``block3`` before the final BN and ReLU).
    """

    feature_layers = ("block1", "block2", "block3")

    def __init__(
        self,
        depth: int,
        widen: int,
        num_classes: int,
        in_channels: int,
        dropout: float,
        dropout_placement: str,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ConfigError(f"wrn needs depth = 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if widen < 1:
            raise ConfigError(f"wrn needs widen >= 1, got {widen}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"wrn needs 0 <= dropout < 1, got {dropout}")
        if dropout_placement not in DROPOUT_PLACEMENTS:
            raise ConfigError(
                f"wrn dropout_placement must be one of {', '.join(DROPOUT_PLACEMENTS)}, got '{dropout_placement}'"
            )
        n = (depth - 4) // 6
        channels = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, channels[0], kernel_size=3, stride=1, padding=1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [
                WideBasicBlock(
                    channels[i] if j == 0 else channels[i + 1],
                    channels[i + 1],
                    stride if j == 0 else 1,
                    dropout,
                    dropout_placement,
                )
                for j in range(n)
            ]
            stages.append(_Stage(blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.feature_dim = channels[3]
        self.num_classes = num_classes
        self.fc = nn.Linear(channels[3], num_classes)
        self.depth, self.widen = depth, widen
        fan_out_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, H, W]`` → pooled ``[B, 64·w]``."""
        z = self.block3(self.block2(self.block1(self.conv1(x))))
        z = F.relu(self.bn1(z))
        return F.adaptive_avg_pool2d(z, 1).flatten(1)


def _build(
    name: str,
    depth: int,
    widen: int,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    dropout: float,
    dropout_placement: str,
) -> WideResNet:
    m, s = resolve_stats(mean, std, in_channels, (0.5,), (0.5,), name)
    return WideResNet(depth, widen, num_classes, in_channels, dropout, dropout_placement, m, s)


@MODELS.register("wrn")
@input_shape(3, 32, 32)
def wrn(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    depth: int = 40,
    widen: int = 2,
    dropout: float = 0.3,
    dropout_placement: str = "before_conv2",
) -> WideResNet:
    """General wide ResNet (W1's ``wrn.py``); defaults are W1's WRN-40-2 baseline.

    Default normalisation: mean = std = 0.5 per channel (W1's uncertainty scripts: normalised space is exactly [−1, 1]).
    """
    return _build("wrn", depth, widen, num_classes, in_channels, mean, std, dropout, dropout_placement)


@MODELS.register("wrn40_2")
@input_shape(3, 32, 32)
def wrn40_2(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dropout: float = 0.3,
    dropout_placement: str = "before_conv2",
) -> WideResNet:
    """W1's WRN-40-2 (``uncertainty/CIFAR/models/wrn.py``): dropout 0.3 for the baseline; use ``dropout=0.0`` for ImageNet
    pre-training and fine-tuning (W1's ``downsampled_train/baseline.py``, ``tune.py``). Normalisation defaults to mean = std = 0.5."""
    return _build("wrn40_2", 40, 2, num_classes, in_channels, mean, std, dropout, dropout_placement)


@MODELS.register("wrn28_10")
@input_shape(3, 32, 32)
def wrn28_10(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dropout: float = 0.0,
    dropout_placement: str = "before_conv2",
) -> WideResNet:
    """WRN-28-10 (36.5M parameters, 640-d features).

    Defaults follow W1's adversarial-robustness part (``robustness/adversarial/``: ``--droprate 0.0``, the model sees ``x·2 − 1``, i.e.
    mean = std = 0.5). For ODIN's checkpoints (its ``wideresnet.py``) pass ``dropout_placement="after_conv1"`` and ODIN's CIFAR
    statistics ``mean=(125.3/255, 123.0/255, 113.9/255)``, ``std=(63.0/255, 62.1/255, 66.7/255)``.
    """
    return _build("wrn28_10", 28, 10, num_classes, in_channels, mean, std, dropout, dropout_placement)
