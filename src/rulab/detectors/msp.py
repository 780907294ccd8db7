"""Maximum softmax probability (Hendrycks & Gimpel 2017, arXiv:1610.02136): the baseline of W1, W3 and W4."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.registry import DETECTORS

__all__ = ["msp_score", "MSP"]


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """``max_k softmax(logits)_k``.

    Args:
        logits: ``[B, K]``.

    Returns:
        ``[B]`` in (0, 1]; higher = more in-distribution (Hendrycks & Gimpel 2017;
        the score of W1 and W3, and W4's baseline: ODIN at T = 1 without the input step).
    """
    return logits.softmax(dim=1).amax(dim=1)


@DETECTORS.register("msp")
class MSP(Detector):
    """Maximum softmax probability, ``max_k p_k(x)`` (Hendrycks & Gimpel 2017, arXiv:1610.02136, §3; the paper
    states the score in words and numbers no equation)."""

    requires = frozenset({"logits"})
    formula = "`max_k p_k`"
    paper = "Hendrycks & Gimpel 2017, arXiv:1610.02136"

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return msp_score(ex.logits)
