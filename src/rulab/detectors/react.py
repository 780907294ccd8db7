"""ReAct: rectified activations (Sun, Guo & Li, NeurIPS 2021, "ReAct: Out-of-distribution detection with rectified
activations", arXiv:2111.12797)."""

from __future__ import annotations

import torch

from rulab.detectors.base import Detector, Extracted, need
from rulab.detectors.energy import energy_score
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["feature_percentiles", "react_score", "ReAct"]

_QUANTILE_LIMIT = 1 << 24
"""``torch.quantile`` accepts at most 2^24 values; larger feature sets are subsampled by rows (seeded)."""


def feature_percentiles(features: torch.Tensor, percentiles: tuple[float, ...], seed: int = 0) -> dict[float, float]:
    """Percentiles (in %, linear interpolation as ``np.percentile``) of ALL entries of ``features: [N, D]``.

    When ``N·D`` exceeds 2^24 a seeded random subset of rows is used (about 2^24 values: the estimate's error is far
    below the spacing of the percentile grid).

    Returns:
        ``{p: value}``.
    """
    z = features
    if z.numel() > _QUANTILE_LIMIT:
        rows = max(1, _QUANTILE_LIMIT // z.shape[1])
        g = torch.Generator().manual_seed(seed)
        z = z[torch.randperm(z.shape[0], generator=g)[:rows].to(z.device)]
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=torch.float64, device=z.device)
    values = torch.quantile(z.reshape(-1).to(torch.float64), q)
    return dict(zip(percentiles, values.tolist()))


def react_score(
    features: torch.Tensor, threshold: float, weight: torch.Tensor, bias: torch.Tensor | None, t: float = 1.0
) -> torch.Tensor:
    """Energy of the head applied to features clipped at ``threshold``: ``T · logsumexp(W min(z, c) + b) / T``.

    Args:
        features: ``[B, D]`` penultimate features.
        threshold: the clip value c (a percentile of the training features).
        weight: ``[K, D]`` head weight.
        bias: ``[K]`` head bias or None.
        t: energy temperature (paper: 1).

    Returns:
        ``[B]``; higher = more in-distribution.
    """
    z = features.clamp(max=threshold)
    logits = z @ weight.to(z).T
    if bias is not None:
        logits = logits + bias.to(z)
    return energy_score(logits, t)


@DETECTORS.register("react")
class ReAct(Detector):
    """Clip penultimate activations at the p-th percentile of the training features, then score the energy of the
    model's linear head (Sun et al. 2021, NeurIPS, arXiv:2111.12797).

    Args:
        percentile: p in (0, 100] (paper: 90); tuned over :attr:`grid` on validation data when the evaluator tunes.
        t: energy temperature (paper: 1).
        seed: seeds the row subset used for very large training feature sets.
    """

    requires = frozenset({"features", "head"})
    formula = "`logsumexp(W · min(h, c) + b)`, `c` a percentile of the training features"
    fits_on = "training features"
    paper = "Sun et al. 2021, NeurIPS, arXiv:2111.12797"
    grid = {"percentile": (85.0, 90.0, 95.0, 99.0)}

    def __init__(self, percentile: float = 90.0, t: float = 1.0, seed: int = 0) -> None:
        if not 0 < percentile <= 100 or not t > 0:
            raise InputError(f"ReAct needs 0 < percentile <= 100 and t > 0, got percentile={percentile}, t={t}")
        self.percentile = float(percentile)
        self.t = float(t)
        self.seed = int(seed)
        self.thresholds: dict[float, float] = {}

    def fit(self, train: Extracted, val_id: Extracted | None = None, val_ood: object = None) -> ReAct:
        z = need(train, "features", self.name)
        ps = tuple(sorted({self.percentile, *self.grid["percentile"]}))
        self.thresholds = feature_percentiles(z, ps, self.seed)
        return self

    @property
    def threshold(self) -> float:
        """The clip value of the current percentile."""
        if self.percentile not in self.thresholds:
            raise RulabError(
                f"detector 'react' was not fitted for percentile {self.percentile}; call fit(train) after setting it"
            )
        return self.thresholds[self.percentile]

    def score(self, ex: Extracted, model: torch.nn.Module | None = None) -> torch.Tensor:
        z = need(ex, "features", self.name)
        w = need(ex, "head_weight", self.name)
        return react_score(z, self.threshold, w, ex.head_bias, self.t)

    def hparams(self) -> dict[str, float]:
        return {"percentile": self.percentile, "threshold": self.thresholds.get(self.percentile, float("nan"))}
