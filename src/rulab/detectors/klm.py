"""KL matching (Hendrycks et al. 2022, ICML, "Scaling out-of-distribution detection for real-world settings",
arXiv:1911.11132, §4)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["class_mean_softmax", "klm_score", "KLMatching"]


def class_mean_softmax(logits: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Templates ``d_k = mean softmax over the examples PREDICTED as class k`` (the paper's validation templates).

    Args:
        logits: ``[N, K]`` held-out ID logits.
        num_classes: K (default: ``logits.shape[1]``).

    Returns:
        ``float64 [K, K]``; row ``k`` is NaN when no example is predicted as ``k`` (such a class has no template).
    """
    k = num_classes or logits.shape[1]
    p = logits.to(torch.float64).softmax(dim=1)
    pred = p.argmax(dim=1)
    sums = torch.zeros(k, p.shape[1], dtype=torch.float64, device=p.device).index_add_(0, pred, p)
    counts = torch.bincount(pred, minlength=k).to(torch.float64)
    return sums / counts.unsqueeze(1)  # 0/0 = NaN for empty classes


def klm_score(logits: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """``-min_k KL(p(x) || d_k)`` with ``p = softmax(logits)`` and ``KL(p || d) = sum_j p_j log(p_j / d_j)``.

    Templates with NaN rows (classes never predicted) are ignored. Terms with ``p_j = 0`` contribute 0.

    Args:
        logits: ``[B, K]``.
        templates: ``[T, K]`` class templates (:func:`class_mean_softmax`).

    Returns:
        ``[B]`` (≤ 0), in the logits' dtype; higher = more in-distribution.
    """
    d = templates.to(device=logits.device, dtype=torch.float64)
    d = d[~torch.isnan(d).any(dim=1)]
    if d.numel() == 0:
        raise InputError("KL matching needs at least one class template; fit it on held-out ID data first")
    logp = logits.to(torch.float64).log_softmax(dim=1)
    p = logp.exp()
    neg_entropy = (p * logp).sum(dim=1)  # sum_j p_j log p_j
    cross = p @ d.clamp_min(torch.finfo(torch.float64).tiny).log().T  # [B, T]: sum_j p_j log d_kj
    kl = neg_entropy.unsqueeze(1) - cross
    return (-kl.amin(dim=1)).to(logits.dtype)


@DETECTORS.register("klm")
class KLMatching(Detector):
    """KL matching to class-conditional mean softmax templates (Hendrycks et al. 2022, ICML, arXiv:1911.11132).

    ``fit`` builds one template per class from the VALIDATION split's softmax outputs grouped by predicted class (the
    paper's choice); without a validation split it falls back to the training split.
    """

    requires = frozenset({"logits"})
    formula = "`−min_c KL(p ‖ d_c)`, `d_c` the mean softmax of validation images predicted as c"
    fits_on = "validation logits"
    paper = "Hendrycks et al. 2022, ICML, arXiv:1911.11132"
    fit_splits = frozenset({"val"})

    def __init__(self) -> None:
        self.templates: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> KLMatching:
        src = val_id if val_id is not None else train
        self.templates = class_mean_softmax(src.logits)
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.templates is None:
            raise RulabError("detector 'klm' is not fitted; call fit(train, val_id) first")
        return klm_score(ex.logits, self.templates)
