"""``fastcnn``: the default CPU-scale classifier (three conv–maxpool–BN–ReLU stages and a linear head).

Built for the embedded Fashion-MNIST study (docs/conventions.md "Scales"): with ``width=16`` it has 57k parameters; the
``fmnist-fast`` preset (batch 256, SGD Nesterov, one-cycle lr peaking at 0.4, label smoothing 0.1, flip augmentation
and flip test-time augmentation, ``channels_last`` memory format) trains it to 92% Fashion-MNIST test accuracy in
under a minute on 2 CPU cores (docs/benchmarks.md).

Each stage pools *before* its BatchNorm and ReLU (``pool_first=True``, the default after rulab 0.1.0): BatchNorm and
ReLU, forward and backward, then run on a quarter of the values. On 2 CPU cores this makes a training step 1.41×
faster (``benchmarks/fastcnn_throughput.py``) at the same or better test accuracy (docs/performance.md).
``pool_first=False`` builds rulab 0.1's layout (conv–BN–ReLU–maxpool); :func:`rulab.checkpoint.load_model`
picks it for checkpoints saved in that layout.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import nn

from rulab.errors import ConfigError, InputError
from rulab.models.base import Classifier, Normalize
from rulab.models.spec import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    input_shape,
    resolve_stats,
)
from rulab.registry import MODELS

__all__ = ["FastCNN", "fastcnn"]


def _stage(c_in: int, c_out: int, pool_first: bool) -> nn.Sequential:
    """conv3×3 → maxpool2 → BN → ReLU (``pool_first``), or rulab 0.1's conv3×3 → BN → ReLU → maxpool2."""
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
    if pool_first:
        return nn.Sequential(conv, nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2))


class FastCNN(Classifier):
    """conv3×3(C→w) → maxpool2 → BN+ReLU → conv3×3(w→3w) → maxpool2 → BN+ReLU → conv3×3(3w→6w) → maxpool2 →
    BN+ReLU → flatten → Linear(6w·s², K), with ``s = ⌊⌊⌊H/2⌋/2⌋/2⌋`` (3 for 28×28, 4 for 32×32).

    Convolutions have no bias (each is followed by BN). ``features(x)`` is the flattened output of the last
    stage, ``[B, 6w·s²]`` (864 for ``width=16`` at 28×28). Feature layers: the three stages ``stages.0``,
    ``stages.1``, ``stages.2`` (``[B, w, H/2, W/2]``, ``[B, 3w, H/4, W/4]``, ``[B, 6w, s, s]``).

    Args:
        num_classes: K.
        in_channels: C.
        input_size: side H = W of the square input images the head is sized for.
        width: channels of the first stage w (stages have w, 3w, 6w channels).
        mean: per-channel mean of the Normalize layer, [0, 1] pixel units.
        std: per-channel standard deviation.
        pool_first: pool before BN and ReLU (default); ``False`` builds rulab 0.1's conv–BN–ReLU–maxpool stages.
        dropout: drop probability p of an ``nn.Dropout`` on the features, in the head (``head(z) = fc(dropout(z))``,
            active in training only; with p > 0 MC dropout, :mod:`rulab.models.mc_dropout`, can sample it while the
            features are computed once). 0 (the default) builds no dropout layer.
    """

    feature_layers = ("stages.0", "stages.1", "stages.2")

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        input_size: int,
        width: int,
        mean: Sequence[float],
        std: Sequence[float],
        pool_first: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        side = input_size // 8
        if side < 1 or width < 1:
            raise ConfigError(
                f"fastcnn needs input_size >= 8 and width >= 1, got input_size={input_size}, width={width}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"fastcnn needs 0 <= dropout < 1, got {dropout}")
        self.normalize = Normalize(mean, std)
        c1, c2, c3 = width, 3 * width, 6 * width
        self.stages = nn.Sequential(
            _stage(in_channels, c1, pool_first),
            _stage(c1, c2, pool_first),
            _stage(c2, c3, pool_first),
        )
        self.input_size = input_size
        self.feature_dim = c3 * side * side
        self.num_classes = num_classes
        self.fc = nn.Linear(self.feature_dim, num_classes)
        self.drop = nn.Dropout(dropout) if dropout > 0 else None  # no state: the state_dict keys do not change

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → logits ``[B, K]``: ``fc(dropout(z))`` (the dropout acts in training mode only)."""
        return self.fc(z if self.drop is None else self.drop(z))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, H, W]`` → flattened last-stage activations ``[B, 6w·s²]``."""
        z = self.stages(x)
        if z.shape[-1] * z.shape[-2] * z.shape[1] != self.feature_dim:
            raise InputError(
                f"fastcnn was built for {self.input_size}×{self.input_size} inputs but got "
                f"{x.shape[-2]}×{x.shape[-1]}; build it with input_size={x.shape[-1]}"
            )
        return z.flatten(1)


@MODELS.register("fastcnn")
@input_shape(1, 28, 28)
def fastcnn(
    num_classes: int = 10,
    in_channels: int = 1,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int = 28,
    width: int = 16,
    pool_first: bool = True,
    dropout: float = 0.0,
) -> FastCNN:
    """The default fast CNN for 28×28 grey (or 32×32 colour) images.

    Default normalisation: Fashion-MNIST (0.2860, 0.3530) for one channel, CIFAR-10
    (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) for three. ``pool_first=False``: rulab 0.1's stage layout
    (module docstring). ``dropout``: dropout on the features before the head (the ``fmnist-dropout`` preset).
    """
    grey = in_channels == 1
    m, s = resolve_stats(
        mean,
        std,
        in_channels,
        FASHION_MNIST_MEAN if grey else CIFAR10_MEAN,
        FASHION_MNIST_STD if grey else CIFAR10_STD,
        "fastcnn",
    )
    return FastCNN(num_classes, in_channels, input_size, width, m, s, pool_first, dropout)


def _layout_kwargs(state_keys: Collection[str]) -> dict[str, Any]:
    """``{"pool_first": False}`` for a state dict saved in rulab 0.1's layout (BatchNorm at index 1 of each stage),
    else ``{}``: what :func:`rulab.checkpoint.load_model` adds to a checkpoint's stored arguments."""
    return {"pool_first": False} if "stages.0.1.running_mean" in state_keys else {}


fastcnn.kwargs_from_state = _layout_kwargs  # type: ignore[attr-defined]
