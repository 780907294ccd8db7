"""``lenet``: the MNIST network of Hein et al. (CVPR 2019), W3's ``models.py``.

conv5×5(32, bias)–ReLU–maxpool2 → conv5×5(64, bias)–ReLU–maxpool2 → FC 1024–ReLU → FC K; TensorFlow ``SAME``
padding, no batch norm, no dropout. Inputs are raw [0, 1] pixels in W3 (no normalisation), so the default
Normalize layer is the identity (mean 0, std 1).
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

__all__ = ["LeNet", "lenet", "hein_init_"]


def hein_init_(module: nn.Module) -> None:
    """Hein et al.'s initialisation (relu_networks_overconfident ``models.py``), in place.

    Conv weights: truncated normal (cut at ±2 std, as TensorFlow's ``truncated_normal_initializer``) with
    std ``sqrt(2 / fan_in)``, ``fan_in = k·k·C_in``. Linear weights: normal with std ``sqrt(2 / n_in)``.
    Biases 0; BN γ = 1, β = 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            std = math.sqrt(2.0 / fan_in)
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / m.in_features))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class LeNet(Classifier):
    """Hein et al.'s LeNet; ``features(x)`` is the 1024-d hidden layer after its ReLU.

    ``SAME`` padding: the 5×5 convolutions pad 2 on each side; the 2×2 max-pools round up
    (``ceil_mode=True``), so the spatial side after the two pools is ``⌈⌈H/2⌉/2⌉`` (7 for 28×28).

    Args:
        num_classes: K.
        in_channels: C.
        input_size: side H = W of the square input (sizes the first FC layer).
        hidden: width of the hidden FC layer (1024 in the paper).
        mean: Normalize mean, [0, 1] pixel units.
        std: Normalize standard deviation.

    Feature layers: the outputs of the two conv–ReLU–pool stages, ``conv.2`` ``[B, 32, ⌈H/2⌉, ⌈W/2⌉]`` and ``conv.5``
    ``[B, 64, s, s]``.
    """

    feature_layers = ("conv.2", "conv.5")

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int,
        hidden: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if input_size < 1 or hidden < 1:
            raise ConfigError(
                f"lenet needs input_size >= 1 and hidden >= 1, got input_size={input_size}, hidden={hidden}"
            )
        self.normalize = Normalize(mean, std)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=5, padding=2, bias=True),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, kernel_size=5, padding=2, bias=True),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        side = math.ceil(math.ceil(input_size / 2) / 2)
        self.input_size = input_size
        self.flat_dim = 64 * side * side
        self.fc1 = nn.Linear(self.flat_dim, hidden)
        self.feature_dim = hidden
        self.num_classes = num_classes
        self.fc = nn.Linear(hidden, num_classes)
        hein_init_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, H, W]`` → hidden FC activations ``[B, hidden]``."""
        z = self.conv(x).flatten(1)
        if z.shape[1] != self.flat_dim:
            raise InputError(
                f"lenet was built for {self.input_size}×{self.input_size} inputs but got "
                f"{x.shape[-2]}×{x.shape[-1]}; build it with input_size={x.shape[-1]}"
            )
        return torch.relu(self.fc1(z))


@MODELS.register("lenet")
@input_shape(1, 28, 28)
def lenet(
    num_classes: int = 10,
    in_channels: int = 1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int = 28,
    hidden: int = 1024,
) -> LeNet:
    """Hein et al.'s MNIST LeNet (W3's ``models.py``); default normalisation: none (mean 0, std 1)."""
    m, s = resolve_stats(mean, std, in_channels, (0.0,), (1.0,), "lenet")
    return LeNet(num_classes, in_channels, input_size, hidden, m, s)
