"""Maximum logit (Hendrycks et al. 2022, ICML, "Scaling out-of-distribution detection for real-world settings",
arXiv:1911.11132)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.registry import DETECTORS

__all__ = ["maxlogit_score", "MaxLogit"]


def maxlogit_score(logits: torch.Tensor) -> torch.Tensor:
    """``max_k f_k(x)``.

    Args:
        logits: ``[B, K]``.

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    return logits.amax(dim=1)


@DETECTORS.register("maxlogit")
class MaxLogit(Detector):
    """The largest unnormalised logit (Hendrycks et al. 2022, ICML, arXiv:1911.11132)."""

    requires = frozenset({"logits"})
    formula = "`max_k z_k`"
    paper = "Hendrycks et al. 2022, ICML, arXiv:1911.11132"

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        return maxlogit_score(ex.logits)
