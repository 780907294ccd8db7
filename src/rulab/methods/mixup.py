"""MixUp (Zhang et al., ICLR 2018, "mixup: Beyond Empirical Risk Minimization"), as W2 used it (report §4.1;
α = 0.3 in ``jeffwiroj/ece228``'s configurations).

Per batch, one ``λ ~ Beta(α, α)`` and one permutation ``π`` of the batch::

    x̃ = λ·x + (1 − λ)·x[π]
    L  = λ·CE(f(x̃), y) + (1 − λ)·CE(f(x̃), y[π])

(the soft-target cross-entropy of the official mixup-cifar10 recipe; W2 uses α = 0.3 in every MixUp run).

``torch.distributions.Beta`` cannot take a ``torch.Generator``, so :func:`sample_beta` draws λ from two Gamma variates
(Marsaglia & Tsang 2000, with the ``U^{1/a}`` boost for shape ``a < 1``) generated from the batch's generator, and
combines them in log space: ``λ = G₁ / (G₁ + G₂) = sigmoid(log G₁ − log G₂)``, stable even for tiny α.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rulab.errors import ConfigError
from rulab.methods.base import Method
from rulab.registry import METHODS

__all__ = ["MixUp", "mixup_loss", "sample_beta"]

_CANDIDATES = 16  # Marsaglia–Tsang proposals per round (acceptance ≥ 95%, so one round almost always suffices)


def _log_gamma_variate(shape: float, generator: torch.Generator) -> float:
    """``log G`` for one ``G ~ Gamma(shape, 1)`` drawn from ``generator`` (Marsaglia & Tsang 2000)."""
    boost = 0.0
    if shape < 1.0:  # G(a) = G(a + 1)·U^{1/a}
        u = 1.0 - torch.rand((), generator=generator, device=generator.device, dtype=torch.float64).item()
        boost = math.log(u) / shape
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        z = torch.randn(_CANDIDATES, generator=generator, device=generator.device, dtype=torch.float64).cpu()
        u = torch.rand(_CANDIDATES, generator=generator, device=generator.device, dtype=torch.float64).cpu()
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (u.log() < 0.5 * z**2 + d - d * v + d * v.clamp_min(1e-300).log())
        if bool(ok.any()):
            i = int(ok.nonzero()[0])
            return math.log(d) + math.log(float(v[i])) + boost


def sample_beta(a: float, b: float, generator: torch.Generator) -> float:
    """One draw of ``Beta(a, b)`` from ``generator`` (reproducible, unlike ``torch.distributions.Beta``).

    Args:
        a: first positive shape parameter.
        b: second positive shape parameter.
        generator: source of randomness (its device is used for the draws).

    Returns:
        λ in [0, 1] as a Python float.
    """
    if not (a > 0 and b > 0):
        raise ConfigError(f"Beta shape parameters must be positive, got a={a}, b={b}")
    return 1.0 / (1.0 + math.exp(min(_log_gamma_variate(b, generator) - _log_gamma_variate(a, generator), 700.0)))


def mixup_loss(logits: torch.Tensor, y: torch.Tensor, y_perm: torch.Tensor, lam: float) -> torch.Tensor:
    """``λ·CE(logits, y) + (1 − λ)·CE(logits, y_perm)`` (mean over the batch).

    Args:
        logits: ``[B, K]`` of the mixed batch.
        y: ``[B]`` labels of the first mixed images.
        y_perm: ``[B]`` labels of the second mixed images.
        lam: mixing weight λ of ``y``.
    """
    return lam * F.cross_entropy(logits, y) + (1.0 - lam) * F.cross_entropy(logits, y_perm)


@METHODS.register("mixup")
class MixUp(Method):
    """MixUp with soft-target cross-entropy (W2 report §4.1).

    Args:
        alpha: α of ``Beta(α, α)`` (W2: 0.3); 0 disables mixing (λ = 1).
        parity: W2's quirk (register of convention 5, docs/conventions.md): a clean forward pass in train mode before the mixed one, so BatchNorm running
            statistics are updated twice per step; its logits give the training accuracy against the true labels.
            Off by default: no extra pass, and the training accuracy is measured on the mixed images against their
            dominant label (``y`` where λ ≥ ½, else ``y[π]``: the argmax of the mixed target ``λ·e_y + (1 − λ)·e_y[π]``,
            ties going to ``y``), returned as ``acc_target`` beside the mixed batch's logits.
    """

    batch_spec = "id"

    def __init__(self, alpha: float = 0.3, parity: bool = False) -> None:
        if not alpha >= 0:
            raise ConfigError(f"method parameter 'alpha' must be >= 0, got {alpha}")
        self.alpha = alpha
        self.parity = parity

    def passes_per_image(self) -> float:
        """One forward and backward pass of the mixed batch (3), plus the clean forward pass under ``parity``."""
        return 4.0 if self.parity else 3.0

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x, y, g = batch["x"], batch["y"], batch["generator"]
        out: dict[str, torch.Tensor] = {}
        if self.parity:
            with torch.no_grad():
                out["logits"] = model(x)
        lam = sample_beta(self.alpha, self.alpha, g) if self.alpha > 0 else 1.0
        perm = torch.randperm(len(x), generator=g, device=g.device).to(x.device)
        logits = model(lam * x + (1.0 - lam) * x[perm])
        out["loss"] = mixup_loss(logits, y, y[perm], lam)
        out["lam"] = torch.tensor(lam)
        if not self.parity:  # training accuracy on the mixed images, against the dominant label
            out["logits"] = logits.detach()
            out["acc_target"] = y if lam >= 0.5 else y[perm]
        return out
