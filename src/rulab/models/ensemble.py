"""Averaged predictives as classifiers: a deep ensemble of trained networks (Lakshminarayanan et al. 2017,
"Simple and scalable predictive uncertainty estimation using deep ensembles", arXiv:1612.01474, §2.4) and the base
class it shares with MC dropout (:mod:`rulab.models.mc_dropout`).

A :class:`MemberAverage` holds ``M`` members (networks, or one network under ``M`` dropout masks) whose predictive
distributions ``p_m = softmax(z_m)`` are averaged, ``p̄ = (1/M) Σ_m p_m`` (Lakshminarayanan et al. §2.4: a uniformly
weighted mixture). It is a :class:`~rulab.models.base.Classifier`, so the whole evaluation (detectors, calibration,
shift suite, far-away PGD) runs on it unchanged. Its **logits** are

    z̄(x) = log p̄(x) + (1/M) Σ_m logsumexp(z_m(x))        (:func:`average_logits`)

* ``softmax(z̄) = p̄`` exactly (the added term is the same for every class), so the maximum softmax probability is
  the maximum mean probability, the softmax entropy is the predictive entropy, temperature scaling and the
  calibration metrics act on the mean predictive, ODIN perturbs it and the far-away PGD attacks its confidence;
* ``logsumexp(z̄)`` is the members' mean ``logsumexp``, so the energy score of the ensemble is the mean of the
  members' energy scores (Liu et al. 2020) and MaxLogit is ``log max p̄`` shifted by it. With ``log p̄`` alone
  (the mean predictive's logit up to a per-image constant) the energy would be 0 for every image;
* with identical members, ``z̄ = z``: an ensemble of copies is the single model, logit for logit.

**Features** of a :class:`Ensemble` are the members' penultimate features concatenated (``[B, Σ_m D_m]``), and
:meth:`MemberAverage.head` maps such a vector back to ``z̄`` by giving each member its own slice. A feature
detector therefore sees every member (Mahalanobis on the concatenation is a Gaussian over the joint features; KNN
uses the joint normalised vector). There is no single linear head (``fc`` is ``None``), so detectors that read the
head's weights (ReAct, ViM, ASH, DICE, SCALE, fDBD, Residual: ``"head"`` in their ``requires``) do not apply.

The members' own logits are :meth:`MemberAverage.member_forward`'s second output, ``[B, M, K]``; the evaluation
stores them (``Extracted.members``) for the scores that need the spread of the members (mutual information,
disagreement: :mod:`rulab.detectors.mutual_info`, :mod:`rulab.detectors.disagreement`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rulab.errors import ConfigError, InputError
from rulab.models.base import Classifier

__all__ = ["average_logits", "MemberAverage", "Ensemble"]


def average_logits(member_logits: torch.Tensor) -> torch.Tensor:
    """The logits of the members' averaged predictive: ``log((1/M) Σ_m softmax(z_m)) + (1/M) Σ_m logsumexp(z_m)``.

    Args:
        member_logits: ``[B, M, K]`` the logits of each member.

    Returns:
        ``[B, K]`` with ``softmax = (1/M) Σ_m softmax(z_m)`` and ``logsumexp = (1/M) Σ_m logsumexp(z_m)`` (module
        docstring); equal to ``z`` when every member outputs ``z``.
    """
    if member_logits.ndim != 3 or member_logits.shape[1] < 1:
        raise InputError(f"member logits must be [B, M, K] with M >= 1, got shape {tuple(member_logits.shape)}")
    log_p = member_logits.log_softmax(dim=2)
    log_mean = torch.logsumexp(log_p, dim=1) - math.log(member_logits.shape[1])
    return log_mean + torch.logsumexp(member_logits, dim=2).mean(dim=1, keepdim=True)


class MemberAverage(Classifier):
    """A classifier whose prediction is the average of ``M`` member predictives (module docstring).

    Subclasses implement :meth:`member_forward` (and :meth:`member_head`); ``forward``, ``features`` and ``head``
    follow from them. ``features`` followed by ``head`` (what the extraction runs) costs one call of
    :meth:`member_forward`: ``features`` keeps the members' logits of that call for ``head``.

    Attributes:
        num_members: M.
    """

    num_members: int

    def member_forward(self, x: torch.Tensor, features: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Images ``[B, C, H, W]`` in [0, 1] → ``(features [B, D] or None, member logits [B, M, K])``."""
        raise NotImplementedError

    def member_head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` (as :meth:`features` returns them) → member logits ``[B, M, K]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → the averaged predictive's logits ``[B, K]`` (:func:`average_logits`)."""
        return average_logits(self.member_forward(x)[1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` in [0, 1] → features ``[B, D]`` (see the subclass)."""
        z, members = self.member_forward(x, features=True)
        assert z is not None
        self.__dict__["_stashed"] = (z, members)
        return z

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``[B, D]`` → averaged logits ``[B, K]``; for the features of the last :meth:`features` call, the
        members' logits of that very call."""
        stashed = self.__dict__.pop("_stashed", None)
        if stashed is not None and stashed[0] is z:
            return average_logits(stashed[1])
        return average_logits(self.member_head(z))

    def reset_head(self, num_classes: int) -> None:
        raise ConfigError(
            f"{type(self).__name__} averages trained members and cannot be fine-tuned; fine-tune each member, then average them"
        )


class Ensemble(MemberAverage):
    """A deep ensemble: the members' predictives averaged with equal weights (Lakshminarayanan et al. 2017, §2.4,
    arXiv:1612.01474).

    Args:
        members: two or more (one is allowed: it equals the member) :class:`~rulab.models.base.Classifier` s with the
            same number of classes, taking the same images; they are held as ``self.members`` (an ``nn.ModuleList``,
            not copied).

    Attributes:
        feature_dim: ``Σ_m D_m``; ``features(x)`` is ``[f_1(x), ..., f_M(x)]`` concatenated.
        feature_layers: every member's feature layers, prefixed ``members.<m>.`` (``members.0.stages.0``, ...).
        fc: ``None`` (no single linear head).

    Raises:
        ConfigError: no members, or members with different numbers of classes.
    """

    fc = None  # type: ignore[assignment]

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ConfigError(
                "an ensemble needs at least one member; pass the trained models (or run directories) to average"
            )
        classes = {int(getattr(m, "num_classes", 0)) for m in members}
        if len(classes) != 1 or 0 in classes:
            raise ConfigError(
                f"ensemble members must all predict the same classes, got numbers of classes {sorted(classes)}"
            )
        self.members = nn.ModuleList(members)
        self.num_members = len(members)
        self.num_classes = classes.pop()
        self.dims = [int(getattr(m, "feature_dim", 0)) for m in members]
        self.feature_dim = sum(self.dims)
        self.feature_layers = tuple(
            f"members.{i}.{name}" for i, m in enumerate(members) for name in getattr(m, "feature_layers", ())
        )

    @property
    def normalize(self) -> nn.Module:  # type: ignore[override]
        """The first member's input normalisation (each member normalises its own input)."""
        return self.members[0].normalize

    def member_forward(self, x: torch.Tensor, features: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(concatenated features [B, Σ D_m] or None, member logits [B, M, K])``: each member runs once."""
        if not features:
            return None, torch.stack([m(x) for m in self.members], dim=1)
        zs = [m.features(x) for m in self.members]
        logits = torch.stack([m.head(z) for m, z in zip(self.members, zs)], dim=1)
        return torch.cat(zs, dim=1), logits

    def member_head(self, z: torch.Tensor) -> torch.Tensor:
        """Concatenated features ``[B, Σ D_m]`` → member logits ``[B, M, K]`` (member m reads its own slice)."""
        if z.shape[-1] != self.feature_dim:
            raise InputError(
                f"the ensemble's features have {self.feature_dim} values (members: {self.dims}), got {z.shape[-1]}"
            )
        parts = torch.split(z, self.dims, dim=-1)
        return torch.stack([m.head(p) for m, p in zip(self.members, parts)], dim=1)
