"""Heads that sit on a classifier's ``features(x)``: the Barlow Twins projector (Zbontar et al. 2021; W2 report §4.3).

facebookresearch/barlowtwins ``main.py``: ``Linear(2048→8192, no bias)–BN–ReLU–Linear(8192→8192, no bias)–BN–ReLU–
Linear(8192→8192, no bias)`` on ResNet-50 features. The dimensions are arguments, so the same projector runs at CPU
scale (e.g. ``BarlowTwinsProjector(864, hidden=(512, 512), out=512)`` on ``fastcnn``). The final
``BatchNorm1d(out, affine=False)`` of the loss belongs to the Barlow Twins objective, not to this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rulab.errors import ConfigError

__all__ = ["BarlowTwinsProjector"]


class BarlowTwinsProjector(nn.Module):
    """MLP projector: for each hidden width h, ``Linear(no bias) → BatchNorm1d(h) → ReLU``; then ``Linear(no bias)``.

    Args:
        in_dim: feature dimension D of the backbone (2048 for ResNet-50).
        hidden: hidden widths (8192, 8192 in the paper).
        out: output dimension (8192 in the paper).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (8192, 8192), out: int = 8192) -> None:
        super().__init__()
        widths = [int(in_dim), *(int(h) for h in hidden), int(out)]
        if min(widths) < 1:
            raise ConfigError(
                f"BarlowTwinsProjector needs positive dimensions, got in_dim={in_dim}, hidden={list(hidden)}, out={out}"
            )
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-2], widths[1:-1]):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-2], widths[-1], bias=False))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = widths[0], widths[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, in_dim]`` → projections ``[B, out]``."""
        return self.layers(z)
