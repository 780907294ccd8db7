"""``preact_resnet_hein``: the ``resnet_small`` network of Hein et al. (CVPR 2019), W3's ``models.py``.

A pre-activation CIFAR ResNet-20-style network, re-implemented from relu_networks_overconfident ``models.py``
(TensorFlow): conv3×3(C→16, no bias) → 3 stages × 3 residual units with 16/32/64 filters (strides 1/2/2) → BN →
ReLU → global average pool → FC(64→K, bias).

Residual unit: ``BN → ReLU → conv3×3(stride) → BN → ReLU → conv3×3``. The first unit of every stage uses the
activated input ``ReLU(BN(x))`` as its shortcut (the original's ``activate_before_residual`` is always True
there), the other units use the raw input. When the channel count changes the shortcut is option A:
average pooling (kernel = stride = s) followed by zero channel padding split evenly on both sides.
TensorFlow details kept: ``SAME`` padding (for a stride-2 conv on an even input TensorFlow pads one pixel at the
bottom/right only; :class:`Conv2dSame` does the same), BN momentum 0.99 in TF terms (PyTorch ``momentum=0.01``),
eps 1e-5, conv init truncated normal with std ``sqrt(2/fan_in)``, FC init normal with std ``sqrt(2/n_in)``,
bias 0. W3 feeds raw [0, 1] pixels, so the default Normalize layer is the identity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.models.base import Classifier, Normalize
from rulab.models.lenet import hein_init_
from rulab.models.spec import input_shape, resolve_stats
from rulab.registry import MODELS

__all__ = ["Conv2dSame", "HeinResidualUnit", "PreActResNetHein", "preact_resnet_hein"]

BN_MOMENTUM = 0.01  # TensorFlow decay 0.99
BN_EPS = 1e-5


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow ``SAME`` padding: output side ``⌈H/s⌉``, extra padding at the bottom/right.

    Construct it without ``padding``; the padding is computed from the input size in :meth:`forward`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, H, W]`` → ``[B, C_out, ⌈H/s⌉, ⌈W/s⌉]``."""
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class HeinResidualUnit(nn.Module):
    """One residual unit of ``resnet_small`` (``_residual`` in the original).

    Args:
        c_in: input channels.
        c_out: output channels (``c_out − c_in`` must be even: the zero padding is split evenly).
        stride: stride of the first conv and of the average-pool shortcut.
        activate_before_residual: use ``ReLU(BN(x))`` instead of ``x`` as the shortcut.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool) -> None:
        super().__init__()
        if (c_out - c_in) % 2:
            raise ConfigError(f"preact_resnet_hein shortcut needs an even channel increase, got {c_in}→{c_out}")
        self.bn1 = nn.BatchNorm2d(c_in, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv1 = Conv2dSame(c_in, c_out, kernel_size=3, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.conv2 = Conv2dSame(c_out, c_out, kernel_size=3, stride=1, bias=False)
        self.stride = stride
        self.pad_channels = (c_out - c_in) // 2
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, c_in, H, W]`` → ``[B, c_out, ⌈H/s⌉, ⌈W/s⌉]``."""
        act = F.relu(self.bn1(x))
        skip = act if self.activate_before_residual else x
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        if self.pad_channels:
            # option A, as in the original only when the channel count changes; ceil_mode keeps odd sides aligned
            # with the SAME conv (identical to TF's VALID pooling on even sides, where the original is defined)
            if self.stride > 1:
                skip = F.avg_pool2d(skip, self.stride, self.stride, ceil_mode=True)
            skip = F.pad(skip, (0, 0, 0, 0, self.pad_channels, self.pad_channels))
        return out + skip


class PreActResNetHein(Classifier):
    """Hein et al.'s ``resnet_small``; ``features(x)`` is the pooled ``[B, 4·width]`` vector (64 by default).

    Args:
        num_classes: K.
        in_channels: C.
        width: filters of the stem and the first stage (16); stages have width, 2·width, 4·width.
        units_per_stage: residual units per stage (3).
        mean: Normalize mean, [0, 1] pixel units.
        std: Normalize standard deviation.

    Feature layers: the three stages ``stage1``, ``stage2``, ``stage3`` (``stage3`` before the final BN and ReLU).
    """

    feature_layers = ("stage1", "stage2", "stage3")

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: int,
        units_per_stage: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if width < 1 or units_per_stage < 1:
            raise ConfigError(
                f"preact_resnet_hein needs width >= 1 and units_per_stage >= 1, got {width}, {units_per_stage}"
            )
        filters = [width, width, 2 * width, 4 * width]
        self.normalize = Normalize(mean, std)
        self.conv1 = Conv2dSame(in_channels, filters[0], kernel_size=3, stride=1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2), start=1):
            units = [HeinResidualUnit(filters[i - 1], filters[i], stride, activate_before_residual=True)]
            units += [
                HeinResidualUnit(filters[i], filters[i], 1, activate_before_residual=False)
                for _ in range(units_per_stage - 1)
            ]
            stages.append(nn.Sequential(*units))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(filters[3], eps=BN_EPS, momentum=BN_MOMENTUM)
        self.feature_dim = filters[3]
        self.num_classes = num_classes
        self.fc = nn.Linear(filters[3], num_classes)
        hein_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, H, W]`` → pooled ``[B, 4·width]``."""
        z = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        return F.relu(self.bn(z)).mean(dim=(2, 3))


@MODELS.register("preact_resnet_hein")
@input_shape(3, 32, 32)
def preact_resnet_hein(
    num_classes: int = 10,
    in_channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    width: int = 16,
    units_per_stage: int = 3,
) -> PreActResNetHein:
    """Hein et al.'s ``resnet_small`` for SVHN / CIFAR (W3's ``models.py``); default normalisation: none
    (mean 0, std 1), since W3 trains on raw [0, 1] pixels."""
    m, s = resolve_stats(mean, std, in_channels, (0.0,), (1.0,), "preact_resnet_hein")
    return PreActResNetHein(num_classes, in_channels, width, units_per_stage, m, s)
