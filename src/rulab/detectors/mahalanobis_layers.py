"""Multi-layer Mahalanobis: Lee et al.'s feature ensemble (Lee, Lee, Lee & Shin 2018, "A simple unified framework for
detecting out-of-distribution samples and adversarial attacks", NeurIPS, arXiv:1807.03888, §2.2 "Feature
ensemble", Algorithm 1).

For every named layer ``l`` of the model (:attr:`rulab.models.base.Classifier.feature_layers`, read through
:meth:`~rulab.models.base.Classifier.layer_outputs`), the layer's output is average-pooled over its spatial positions
(``[B, C_l, H, W] → [B, C_l]``, as in the authors' ``lib_generation.py``), class means and one tied covariance are
fitted on the TRAINING images (:mod:`rulab.detectors.mahalanobis`: float64, pseudo-inverse on the resolved subspace)
and the layer's confidence is ``M_l(x) = −min_c (f_l − μ_{l,c})ᵀ Σ_l⁺ (f_l − μ_{l,c})`` (Eq. 2). The layers are then
combined as ``Σ_l α_l M_l(x)``:

* ``weights="lr"`` (Lee et al.): the ``α_l`` of a logistic regression that separates the validation ID images
  (label 1) from the VALIDATION-OOD images (label 0) on the layer scores (scikit-learn's ``LogisticRegressionCV``,
  as the authors' ``regression.py``), never a test OOD set. The layer scores are standardised by their mean and
  standard deviation on the validation ID images first (the same family of combinations; the fit is better
  conditioned when layers' distances differ by orders of magnitude);
* ``weights="uniform"``, or no validation-OOD set: the standardised scores summed with equal weights (no OOD data).

Not applied: the input pre-processing (Lee et al.'s ε step; the ``odin`` detector applies that idea to the softmax),
as for the single-layer ``mahalanobis`` detector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rulab.detectors.base import Detector, Extracted, eval_mode, image_batches, need
from rulab.detectors.mahalanobis import class_means, mahalanobis_score, rounding_floor, tied_covariance, whitening
from rulab.errors import InputError, RulabError
from rulab.registry import DETECTORS

__all__ = ["pooled_layer_features", "layer_scores", "combine_layers", "MahalanobisLayers"]


def pooled_layer_features(outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{layer: [B, C_l]}``: each output averaged over its spatial positions (``[B, C_l, ...]``; a ``[B, D]`` output
    is kept), in float32 as computed."""
    return {name: t.flatten(2).mean(dim=2) if t.ndim > 2 else t for name, t in outputs.items()}


def layer_scores(
    features: Mapping[str, torch.Tensor], means: Mapping[str, torch.Tensor], whites: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """``float64 [B, L]``: the Mahalanobis confidence ``M_l`` of every layer, in the order of ``means``.

    Args:
        features: ``{layer: [B, C_l]}`` pooled features.
        means: ``{layer: [C, C_l]}`` class means.
        whites: ``{layer: [C_l, r_l]}`` whitening matrices (:func:`rulab.detectors.mahalanobis.whitening`).
    """
    return torch.stack([mahalanobis_score(features[n], means[n], whites[n]) for n in means], dim=1)


def combine_layers(
    scores: torch.Tensor, center: torch.Tensor, spread: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``Σ_l α_l (M_l − m_l) / s_l``: the feature ensemble of standardised layer scores.

    Args:
        scores: ``[B, L]`` layer scores.
        center: ``[L]`` their mean on validation ID images.
        spread: ``[L]`` their standard deviation on validation ID images.
        weights: ``[L]`` the α_l.

    Returns:
        ``float64 [B]``; higher = more in-distribution.
    """
    s = scores.to(torch.float64)
    return ((s - center.to(s)) / spread.to(s)) @ weights.to(s)


@DETECTORS.register("mahalanobis_layers")
class MahalanobisLayers(Detector):
    """Lee et al.'s Mahalanobis feature ensemble over the model's feature layers, weighted by a logistic regression
    on validation-OOD data or uniformly (Lee et al. 2018, arXiv:1807.03888, §2.2; module docstring).

    Args:
        layers: feature-layer names (default: all of the model's).
        weights: ``"lr"`` (logistic regression on validation ID vs validation OOD; uniform when no validation-OOD set
            is given) or ``"uniform"``.
        batch_size: images per forward pass.

    Attributes:
        alphas: after ``fit``, ``{layer: α_l}``; ``combined_by``: ``"lr"`` or ``"uniform"``.
    """

    requires = frozenset({"model"})
    fit_splits = frozenset({"train", "val"})
    formula = "`Σ_l α_l M̃_l(x)`, M̃_l: standardised Mahalanobis confidence of layer l's pooled output, α by logistic regression"
    fits_on = "training images (class statistics per layer), validation ID and validation-OOD images (layer weights)"
    paper = "Lee et al. 2018, NeurIPS, arXiv:1807.03888"

    def __init__(self, layers: Sequence[str] | None = None, weights: str = "lr", batch_size: int = 256) -> None:
        if weights not in ("lr", "uniform") or batch_size < 1:
            raise InputError(
                f"mahalanobis_layers needs weights 'lr' or 'uniform' and batch_size >= 1, got {weights!r}, {batch_size}"
            )
        self.layers = tuple(layers) if layers else None
        self.weights = weights
        self.batch_size = int(batch_size)
        self.means: dict[str, torch.Tensor] = {}
        self.whites: dict[str, torch.Tensor] = {}
        self.center: torch.Tensor | None = None
        self.spread: torch.Tensor | None = None
        self.alpha: torch.Tensor | None = None
        self.combined_by = ""

    def _names(self, model: nn.Module) -> tuple[str, ...]:
        names = self.layers or tuple(getattr(model, "feature_layers", ()))
        if not names:
            raise RulabError(
                f"mahalanobis_layers reads the model's feature layers, but {type(model).__name__} names none; set "
                "model.feature_layers (see rulab.models.base.Classifier) or pass layers=..."
            )
        return names

    def features(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{layer: [N, C_l]}`` pooled outputs of every layer for images ``x`` (one forward pass per batch, CPU)."""
        names = self._names(model)
        out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        with eval_mode(model):
            for xb in image_batches(model, x, self.batch_size):
                _, outs = model.layer_outputs(xb, names)
                for n, f in pooled_layer_features(outs).items():
                    out[n].append(f.float().cpu())
        return {n: torch.cat(v) for n, v in out.items()}

    def scores_of(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``float64 [N, L]``: every layer's Mahalanobis confidence for images ``x``."""
        if not self.means:
            raise RulabError(
                "detector 'mahalanobis_layers' is not fitted; call fit(train, model=model) on the training split first"
            )
        return layer_scores(self.features(model, x), self.means, self.whites)

    def fit(
        self,
        train: Extracted,
        val_id: Extracted | None = None,
        val_ood: Mapping[str, Extracted] | None = None,
        model: nn.Module | None = None,
    ) -> MahalanobisLayers:
        if model is None:
            raise RulabError(
                "detector 'mahalanobis_layers' reads the model's feature layers and needs the model; call fit(train, model=model)"
            )
        feats = self.features(model, need(train, "x", self.name))
        labels = train.labels.cpu()
        self.means, self.whites = {}, {}
        for n, f in feats.items():
            self.means[n] = class_means(f, labels, train.num_classes)
            self.whites[n] = whitening(tied_covariance(f, labels, self.means[n]), floor=rounding_floor(f))
        ref = (
            self.scores_of(model, need(val_id, "x", self.name))
            if val_id is not None and val_id.x is not None
            else layer_scores(feats, self.means, self.whites)
        )
        self.center = ref.mean(dim=0)
        self.spread = ref.std(dim=0).clamp_min(torch.finfo(torch.float64).tiny)
        oods = [self.scores_of(model, need(e, "x", self.name)) for e in (val_ood or {}).values()]
        if self.weights == "lr" and oods:
            self.alpha = _logistic_weights(
                (ref - self.center) / self.spread, (torch.cat(oods) - self.center) / self.spread
            )
            self.combined_by = "lr"
        else:
            self.alpha = torch.ones(len(self.means), dtype=torch.float64)
            self.combined_by = "uniform"
        return self

    def score(self, ex: Extracted, model: nn.Module | None = None) -> torch.Tensor:
        if model is None:
            raise RulabError(
                "detector 'mahalanobis_layers' reads the model's feature layers and needs the model; call score(ex, model=model)"
            )
        if self.alpha is None or self.center is None or self.spread is None:
            raise RulabError(
                "detector 'mahalanobis_layers' is not fitted; call fit(train, model=model) on the training split first"
            )
        s = combine_layers(self.scores_of(model, need(ex, "x", self.name)), self.center, self.spread, self.alpha)
        return s.to(ex.logits.device)

    def hparams(self) -> dict[str, object]:
        """How the layers were combined and their weights ``{layer: α_l}``."""
        alphas = {} if self.alpha is None else {n: float(a) for n, a in zip(self.means, self.alpha)}
        return {"combined_by": self.combined_by, "alphas": alphas}


def _logistic_weights(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> torch.Tensor:
    """``[L]`` coefficients of scikit-learn's ``LogisticRegressionCV`` (5-fold, default grid of C, lbfgs) fitted to
    label ID rows 1 and OOD rows 0, as Lee et al.'s ``regression.py``."""
    try:
        from sklearn.linear_model import LogisticRegressionCV
    except ImportError:
        raise RulabError(
            "mahalanobis_layers weights its layers with scikit-learn; install it with: pip install 'rulab[datasets]'"
        ) from None
    import warnings

    import numpy as np

    x = torch.cat([id_scores, ood_scores]).numpy()
    y = np.concatenate([np.ones(len(id_scores)), np.zeros(len(ood_scores))])
    with warnings.catch_warnings():  # scikit-learn 1.8+ announces changes of defaults this call does not rely on
        warnings.simplefilter("ignore", FutureWarning)
        lr = LogisticRegressionCV(cv=5, max_iter=1000, scoring=None).fit(x, y)
    return torch.from_numpy(lr.coef_[0].astype(np.float64))
