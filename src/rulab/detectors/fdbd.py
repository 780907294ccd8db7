"""fDBD: fast decision-boundary distance (Liu & Qin, ICML 2024, "Fast decision boundary based out-of-distribution
detector", arXiv:2312.11536).

The paper's method section: for a linear head the distance in feature space from ``h`` to the decision boundary between
the predicted class ``ŷ`` and another class ``c`` has a closed form, ``|z_ŷ − z_c| / ‖w_ŷ − w_c‖`` (``z = W h + b``). ID
images lie farther from the boundaries than OOD images at the same distance from the ID mean, so the score is the mean
boundary distance, regularised by the distance to the mean training feature ``μ``:

    s(x) = (1 / (K − 1)) Σ_{c ≠ ŷ} |z_ŷ − z_c| / ‖w_ŷ − w_c‖  /  ‖h − μ‖.

The authors' code (``e2e_timing.py``) sums over the classes without the ``1/(K − 1)``, a constant that changes no
ranking. ``normalizer="norm"`` divides by ``‖h‖`` instead of ``‖h − μ‖``: OpenOOD's ``fdbd_postprocessor.py``
variant (``distance_as_normalizer=False``), which that file describes as a departure from the paper, chosen there on
validation data. No tuned hyperparameters.
"""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["boundary_distances", "fdbd_score", "FDBD"]


def boundary_distances(logits: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``|z_ŷ − z_c| / ‖w_ŷ − w_c‖`` for every class c (0 for c = ŷ): ``[B, K]``.

    Args:
        logits: ``[B, K]`` the head's output ``z = W h + b``.
        weight: ``[K, D]`` head weight.
    """
    dtype = logits.dtype if logits.is_floating_point() else torch.float32
    z = logits.to(dtype)
    w = weight.to(device=z.device, dtype=dtype)
    pred = z.argmax(dim=1)
    norms = torch.cdist(w.unsqueeze(0), w.unsqueeze(0)).squeeze(0)  # [K, K] ‖w_p − w_c‖
    norms = norms.fill_diagonal_(1.0)
    gap = (z.gather(1, pred.unsqueeze(1)) - z).abs()
    return gap / norms[pred]


def fdbd_score(
    features: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor, center: torch.Tensor | None
) -> torch.Tensor:
    """Mean distance to the other classes' decision boundaries over ``‖h − μ‖`` (``center=None``: over ``‖h‖``).

    Args:
        features: ``[B, D]``.
        logits: ``[B, K]``.
        weight: ``[K, D]`` head weight.
        center: ``[D]`` mean training feature μ, or None.

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    dtype = features.dtype if features.is_floating_point() else torch.float32
    z = features.to(dtype)
    d = boundary_distances(logits.to(device=z.device, dtype=dtype), weight).sum(dim=1) / max(logits.shape[1] - 1, 1)
    ref = z if center is None else z - center.to(device=z.device, dtype=dtype)
    return d / ref.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)


@DETECTORS.register("fdbd")
class FDBD(Detector):
    """Mean feature-space distance to the decision boundaries of the other classes, over the distance to the mean
    training feature (Liu & Qin 2024, ICML, arXiv:2312.11536, method section).

    Args:
        normalizer: ``"mean"`` (divide by ``‖h − μ‖``, the paper's score) or ``"norm"`` (divide by ``‖h‖``, OpenOOD's
            variant).
    """

    requires = frozenset({"logits", "features", "head"})
    formula = "`mean_{c≠ŷ} |z_ŷ − z_c| / ‖w_ŷ − w_c‖ / ‖h − μ‖`, μ the mean training feature"
    fits_on = "training features (their mean)"
    paper = "Liu & Qin 2024, ICML, arXiv:2312.11536"

    def __init__(self, normalizer: str = "mean") -> None:
        if normalizer not in ("mean", "norm"):
            raise InputError(f"fDBD's normalizer must be 'mean' or 'norm', got '{normalizer}'")
        self.normalizer = normalizer
        self.center: torch.Tensor | None = None

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> FDBD:
        self.center = need(train, "features", self.name).to(torch.float64).mean(dim=0)
        return self

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        if self.center is None:
            raise RulabError("detector 'fdbd' is not fitted; call fit(train) on the training split first")
        z = need(ex, "features", self.name)
        return fdbd_score(
            z, ex.logits, need(ex, "head_weight", self.name), self.center if self.normalizer == "mean" else None
        )
