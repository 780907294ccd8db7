"""ASH: activation shaping (Djurisic, Bozanic, Ashok & Liu, ICLR 2023, "Extremely simple activation shaping for
out-of-distribution detection", arXiv:2209.09858).

ASH changes a late activation of each image on the fly and scores the energy of the logits the rest of the network
computes from it (the activation-shaping method of the paper and its three variants):

1. **prune**: keep the ``k = D − round(D · p / 100)`` largest entries of the image's activation ``a ∈ R^D`` (the
   p-th percentile of that image's own values is the cut, no training statistics) and set the others to 0;
2. **shape** the kept entries:

   * ASH-P: leave them as they are;
   * ASH-B: set every kept entry to ``s₁ / k``, with ``s₁ = Σ_j a_j`` the sum before pruning (binarised, same sum);
   * ASH-S: multiply the pruned activation by ``exp(s₁ / s₂)``, ``s₂`` its sum after pruning (sharpened);

3. score ``logsumexp(W a' + b)`` (the energy score, Liu et al. 2020), ``a'`` the shaped activation.

Where: the authors apply ASH after the network's last global average pool, to the penultimate features that the
linear head reads (their code ``ash.py`` and the ``avgpool`` → ``apply_ash`` → ``fc`` order of their ResNet and
DenseNet models), so here ``a`` is the cached penultimate feature vector ``h`` and no second forward pass is needed.
For a network whose features are a flattened map (``fastcnn``) the vector is that map, as a ``[D, 1, 1]`` activation
is in the authors' code. The functions also shape any ``[B, ...]`` activation (each image's entries flattened).

Defaults follow the paper's CIFAR settings (the authors' configurations: ASH-P and ASH-B at p = 90, ASH-S at
p = 95; ImageNet uses 60, 65 and 90); the tuning grid is the percentile sweep 65…95 that OpenOOD runs for ASH.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.energy import energy_score
from rulab.errors import InputError
from rulab.registry import DETECTORS

__all__ = ["ash_keep", "ash_p", "ash_b", "ash_s", "ash_score", "ASH_VARIANTS", "ASHP", "ASHB", "ASHS"]

ASH_GRID: tuple[float, ...] = (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)
"""The percentiles tuned over (OpenOOD's sweep for ASH)."""


def ash_keep(activation: torch.Tensor, percentile: float) -> int:
    """``k = D − round(D · p / 100)``: how many entries of each image's ``D`` activations ASH keeps (the authors'
    rounding, Python's round-half-to-even as ``np.round``)."""
    if not 0 <= percentile < 100:
        raise InputError(f"ASH prunes a percentile p in [0, 100), got {percentile}")
    d = activation[0].numel() if activation.shape[0] else int(torch.tensor(activation.shape[1:]).prod())
    return max(1, d - int(round(d * percentile / 100.0)))


def _pruned(activation: torch.Tensor, percentile: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(flat, values, index, k)``: the ``[B, D]`` view and the ``k`` largest entries of each row."""
    flat = activation.reshape(activation.shape[0], -1)
    k = ash_keep(activation, percentile)
    values, index = flat.topk(k, dim=1)
    return flat, values, index, k


def ash_p(activation: torch.Tensor, percentile: float = 90.0) -> torch.Tensor:
    """ASH-P: the ``k`` largest entries of each image kept, the rest set to 0.

    Args:
        activation: ``[B, ...]`` (penultimate features ``[B, D]`` or a map ``[B, C, H, W]``).
        percentile: p in [0, 100).

    Returns:
        A new tensor of the same shape and dtype.
    """
    flat, values, index, _ = _pruned(activation, percentile)
    return torch.zeros_like(flat).scatter_(1, index, values).view_as(activation)


def ash_b(activation: torch.Tensor, percentile: float = 90.0) -> torch.Tensor:
    """ASH-B: each image's ``k`` largest positions set to ``s₁ / k`` (``s₁`` its sum before pruning), the rest 0."""
    flat, values, index, k = _pruned(activation, percentile)
    fill = (flat.sum(dim=1, keepdim=True) / k).expand_as(values)
    return torch.zeros_like(flat).scatter_(1, index, fill).view_as(activation)


def ash_s(activation: torch.Tensor, percentile: float = 95.0) -> torch.Tensor:
    """ASH-S: :func:`ash_p` multiplied by ``exp(s₁ / s₂)``, ``s₁`` and ``s₂`` the image's sums before and after
    pruning. An image whose kept entries sum to 0 (all-zero activations) is left at 0."""
    flat, values, index, _ = _pruned(activation, percentile)
    s1 = flat.sum(dim=1)
    s2 = values.sum(dim=1)
    ratio = torch.where(s2 != 0, s1 / torch.where(s2 != 0, s2, torch.ones_like(s2)), torch.zeros_like(s2))
    pruned = torch.zeros_like(flat).scatter_(1, index, values)
    return (pruned * torch.exp(ratio).unsqueeze(1)).view_as(activation)


ASH_VARIANTS = {"p": ash_p, "b": ash_b, "s": ash_s}
"""The shaping functions by variant letter."""


def ash_score(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    percentile: float,
    variant: str = "s",
    t: float = 1.0,
) -> torch.Tensor:
    """``T · logsumexp((W · shape(h) + b) / T)``: the energy of the head applied to shaped penultimate features.

    Args:
        features: ``[B, D]`` penultimate features ``h``.
        weight: ``[K, D]`` head weight ``W``.
        bias: ``[K]`` head bias or None.
        percentile: p in [0, 100).
        variant: ``"p"``, ``"b"`` or ``"s"``.
        t: energy temperature (paper: 1).

    Returns:
        ``[B]`` in the features' dtype; higher = more in-distribution.
    """
    if variant not in ASH_VARIANTS:
        raise InputError(f"ASH variant must be one of {', '.join(ASH_VARIANTS)}, got '{variant}'")
    dtype = features.dtype if features.is_floating_point() else torch.float32
    z = ASH_VARIANTS[variant](features.to(dtype), percentile)
    logits = z @ weight.to(device=z.device, dtype=dtype).T
    if bias is not None:
        logits = logits + bias.to(device=z.device, dtype=dtype)
    return energy_score(logits, t)


class _ASH(Detector):
    """Shared body of the three ASH variants (the subclasses fix :attr:`variant` and the default percentile)."""

    variant: ClassVar[str] = "s"
    requires = frozenset({"features", "head"})
    paper = "Djurisic et al. 2023, ICLR, arXiv:2209.09858"
    grid = {"percentile": ASH_GRID}

    def __init__(self, percentile: float = 90.0, t: float = 1.0) -> None:
        if not 0 <= percentile < 100 or not t > 0:
            raise InputError(f"ASH needs 0 <= percentile < 100 and t > 0, got percentile={percentile}, t={t}")
        self.percentile = float(percentile)
        self.t = float(t)

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        z = need(ex, "features", self.name)
        return ash_score(z, need(ex, "head_weight", self.name), ex.head_bias, self.percentile, self.variant, self.t)


@DETECTORS.register("ash_p")
class ASHP(_ASH):
    """ASH-P (Djurisic et al. 2023, ICLR, arXiv:2209.09858, method section): prune each image's penultimate features
    below their own p-th percentile, then score the energy of the head.

    Args:
        percentile: p (paper, CIFAR: 90); tuned over :attr:`grid` on validation data when the evaluator tunes.
        t: energy temperature (paper: 1).
    """

    variant = "p"
    formula = "`logsumexp(W · prune_p(h) + b)`, `prune_p`: the image's entries below its p-th percentile set to 0"

    def __init__(self, percentile: float = 90.0, t: float = 1.0) -> None:
        super().__init__(percentile, t)


@DETECTORS.register("ash_b")
class ASHB(_ASH):
    """ASH-B (Djurisic et al. 2023, ICLR, arXiv:2209.09858, method section): prune as ASH-P, set the kept entries to
    ``s₁ / k`` (the image's feature sum spread evenly over them), score the energy of the head.

    Args:
        percentile: p (paper, CIFAR: 90).
        t: energy temperature (paper: 1).
    """

    variant = "b"
    formula = "`logsumexp(W · a + b)`, `a`: `s₁/k` on the image's k largest entries of `h`, 0 elsewhere, `s₁ = Σ h`"

    def __init__(self, percentile: float = 90.0, t: float = 1.0) -> None:
        super().__init__(percentile, t)


@DETECTORS.register("ash_s")
class ASHS(_ASH):
    """ASH-S (Djurisic et al. 2023, ICLR, arXiv:2209.09858, method section): prune as ASH-P and multiply the kept
    entries by ``exp(s₁ / s₂)`` (sums before and after pruning), score the energy of the head.

    Args:
        percentile: p (paper, CIFAR: 95).
        t: energy temperature (paper: 1).
    """

    variant = "s"
    formula = "`logsumexp(W · prune_p(h) · exp(s₁/s₂) + b)`, `s₁`, `s₂`: the sums of `h` before and after pruning"

    def __init__(self, percentile: float = 95.0, t: float = 1.0) -> None:
        super().__init__(percentile, t)
