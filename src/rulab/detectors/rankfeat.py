"""RankFeat: rank-1 feature removal (Song, Sebe & Wang, NeurIPS 2022, "RankFeat: Rank-1 feature removal for
out-of-distribution detection", arXiv:2209.08590).

The paper's method section: the feature map of a late block, as a matrix ``X ∈ R^{C × HW}`` per image, has a
dominant singular value that is much larger for OOD images; removing the rank-1 part,

    X' = X − s₁ u₁ v₁ᵀ     (s₁, u₁, v₁: the largest singular value and its singular vectors),

and running the rest of the network on ``X'`` gives logits whose energy ``T · logsumexp(f'(x) / T)`` separates ID from
OOD better. The paper's main score fuses two blocks at the logit level, ``f' = (f'_{block 3} + f'_{block 4}) / 2``,
each removal in its own pass (the authors' ``test_ood_resnetv2.py``, ``iterate_data_rankfeat``); T = 1.

rulab takes the blocks from the model contract: the default ``layers`` are the model's last two feature layers
(:attr:`rulab.models.base.Classifier.feature_layers`, the counterparts of blocks 3 and 4), and each pass is
:meth:`~rulab.models.base.Classifier.forward_with` with the rank-1 removal as the edit. The SVD is exact
(``torch.linalg.svd``), as in the authors' default (they offer power iteration as a faster approximation). A layer
must output 4-D maps ``[B, C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rulab.detectors.base import Detector, Extracted, eval_mode, image_batches, need
from rulab.detectors.energy import energy_score
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["remove_rank1", "rankfeat_logits", "rankfeat_score", "RankFeat"]


def remove_rank1(maps: torch.Tensor) -> torch.Tensor:
    """``X − s₁ u₁ v₁ᵀ`` for each image's ``[C, H·W]`` matrix.

    Args:
        maps: ``[B, C, H, W]``.

    Returns:
        ``[B, C, H, W]``, the same dtype.

    Raises:
        InputError: ``maps`` is not 4-D.
    """
    if maps.ndim != 4:
        raise InputError(
            f"RankFeat removes the rank-1 part of [C, H·W] feature maps, but the layer outputs shape "
            f"{tuple(maps.shape)}; choose convolutional layers (RankFeat(layers=...))"
        )
    b, c, h, w = maps.shape
    m = maps.reshape(b, c, h * w)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    rank1 = s[:, :1, None] * (u[:, :, :1] @ vh[:, :1, :])
    return (m - rank1).reshape(b, c, h, w)


def rankfeat_logits(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> torch.Tensor:
    """The mean over ``layers`` of the logits with that layer's rank-1 part removed (one pass per layer).

    Args:
        model: a :class:`~rulab.models.base.Classifier` (its ``forward_with``), in the mode it should run in.
        x: images in [0, 1], ``[B, C, H, W]``.
        layers: feature-layer names.

    Returns:
        ``[B, K]``.
    """
    if not layers:
        raise InputError("RankFeat needs at least one layer")
    logits = [model.forward_with(x, {name: remove_rank1}) for name in layers]
    return torch.stack(logits).mean(dim=0)


def rankfeat_score(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], t: float = 1.0, batch_size: int = 256
) -> torch.Tensor:
    """RankFeat scores of images: ``T · logsumexp(mean_l f'_l(x) / T)``, in eval mode, batched.

    Args:
        model: a classifier with feature layers.
        x: ``uint8 [N, C, H, W]`` or float in [0, 1].
        layers: the feature layers to edit (e.g. the model's last two).
        t: energy temperature (paper: 1).
        batch_size: images per pass.

    Returns:
        ``[N]`` float32 on the CPU; higher = more in-distribution.
    """
    out = []
    with eval_mode(model):
        for xb in image_batches(model, x, batch_size):
            out.append(energy_score(rankfeat_logits(model, xb, layers).float(), t).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _layers(model: nn.Module, layers: Sequence[str] | None) -> tuple[str, ...]:
    if layers:
        return tuple(layers)
    names = tuple(getattr(model, "feature_layers", ()))
    if not names:
        raise RulabError(
            f"RankFeat edits the model's feature layers, but {type(model).__name__} names none; set "
            "model.feature_layers (see rulab.models.base.Classifier) or pass RankFeat(layers=...)"
        )
    return names[-2:]


@DETECTORS.register("rankfeat")
class RankFeat(Detector):
    """Energy of the logits after removing the rank-1 part of late feature maps, two blocks fused at the logit level
    (Song et al. 2022, NeurIPS, arXiv:2209.08590, method section). Goes back to the model.

    Args:
        layers: feature-layer names to edit, each in its own pass (default: the model's last two feature layers, the
            paper's blocks 3 and 4).
        t: energy temperature (paper: 1).
        batch_size: images per pass.
    """

    requires = frozenset({"logits", "model"})
    formula = "`logsumexp(mean_l f(x; X_l − s₁u₁v₁ᵀ))`, rank-1 part of the last two blocks' maps removed"
    paper = "Song et al. 2022, NeurIPS, arXiv:2209.08590"

    def __init__(self, layers: Sequence[str] | None = None, t: float = 1.0, batch_size: int = 256) -> None:
        if not t > 0 or batch_size < 1:
            raise InputError(f"RankFeat needs t > 0 and batch_size >= 1, got t={t}, batch_size={batch_size}")
        self.layers = tuple(layers) if layers else None
        self.t = float(t)
        self.batch_size = int(batch_size)

    def score(self, ex: Extracted, model: nn.Module | None = None) -> torch.Tensor:
        if model is None:
            raise RulabError(
                "detector 'rankfeat' edits feature maps inside the network and needs the model; "
                "call score(ex, model=model)"
            )
        s = rankfeat_score(model, need(ex, "x", self.name), _layers(model, self.layers), self.t, self.batch_size)
        return s.to(ex.logits.device)
