"""Multi-layer Mahalanobis (Lee et al. 2018's feature ensemble) against a float64 reference written from the paper and
the authors' code: pooled layer features computed here by running fastcnn's stages by hand, scikit-learn's
``EmpiricalCovariance`` precision (what ``lib_generation.py`` fits) and score ``max_c −½ dᵀ Σ⁻¹ d``, and the
logistic-regression weights of ``regression.py`` fitted on validation ID vs validation OOD."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rulab.detectors.base import Extracted
from rulab.detectors.mahalanobis_layers import MahalanobisLayers, combine_layers
from rulab.errors import RulabError
from rulab.metrics.ood import auroc

sklearn = pytest.importorskip("sklearn")


def _pooled_by_hand(model: torch.nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """fastcnn's three stage outputs, average-pooled, float64: normalise, then each stage in turn."""
    out, h = [], model.normalize(x.float() / 255)
    with torch.no_grad():
        for stage in model.stages:
            h = stage(h)
            out.append(h.mean(dim=(2, 3)).double().numpy())
    return out


def _reference_layer_scores(train_feats, labels, k, feats) -> np.ndarray:
    """``[N, L]``: per layer, ``max_c −½ (f − μ_c)ᵀ P (f − μ_c)`` with P = EmpiricalCovariance of the class-centred
    training features (Lee et al.'s ``sample_estimator`` and ``get_Mahalanobis_score``)."""
    from sklearn.covariance import EmpiricalCovariance

    cols = []
    for tr, f in zip(train_feats, feats):
        means = np.stack([tr[labels == c].mean(axis=0) for c in range(k)])
        prec = EmpiricalCovariance(assume_centered=False).fit(tr - means[labels]).precision_
        d = f[:, None, :] - means[None]
        cols.append((-0.5 * np.einsum("ncd,de,nce->nc", d, prec, d)).max(axis=1))
    return np.stack(cols, axis=1)


def test_layer_scores_and_both_combinations_match_the_float64_reference(fmnist):
    model, k = fmnist.model, 6
    train, val, test, near = (fmnist.ex(d) for d in (fmnist.train, fmnist.val, fmnist.test, fmnist.near))
    labels = fmnist.train.y.numpy()
    tr = _pooled_by_hand(model, fmnist.train.x)
    ref = {
        name: _reference_layer_scores(tr, labels, k, _pooled_by_hand(model, ds.x))
        for name, ds in (("val", fmnist.val), ("test", fmnist.test), ("near", fmnist.near), ("far", fmnist.far))
    }

    # uniform feature ensemble (no validation-OOD data): standardised on validation ID, summed
    uni = MahalanobisLayers(weights="uniform").fit(train, val_id=val, model=model)
    ours = uni.scores_of(model, fmnist.test.x).numpy()
    np.testing.assert_allclose(ours, 2 * ref["test"], rtol=1e-6)  # ours is −min d², the reference −½ min d²
    mu, sd = 2 * ref["val"].mean(axis=0), 2 * ref["val"].std(axis=0, ddof=1)
    np.testing.assert_allclose(uni.score(test, model).numpy(), ((2 * ref["test"] - mu) / sd).sum(axis=1), rtol=1e-6)
    assert uni.hparams()["combined_by"] == "uniform" and list(uni.hparams()["alphas"]) == [
        "stages.0",
        "stages.1",
        "stages.2",
    ]

    # logistic-regression weights fitted on validation ID (label 1) vs a validation-OOD set (label 0): here the near-OOD
    # images' first half plays the validation-OOD set, the test compares on the second half
    val_ood = near.subset(slice(0, 500))
    lr = MahalanobisLayers().fit(train, val_id=val, val_ood={"near_val": val_ood}, model=model)
    from sklearn.linear_model import LogisticRegressionCV

    x = np.concatenate([(2 * ref["val"] - mu) / sd, (2 * ref["near"][:500] - mu) / sd])
    y = np.r_[np.ones(len(ref["val"])), np.zeros(500)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        alpha = LogisticRegressionCV(cv=5, max_iter=1000, scoring=None).fit(x, y).coef_[0]
    np.testing.assert_allclose(lr.alpha.numpy(), alpha, rtol=1e-3, atol=1e-4)
    ref_test, ref_near = ((2 * ref[s] - mu) / sd @ alpha for s in ("test", "near"))
    s_test, s_near = lr.score(test, model), lr.score(near.subset(slice(500, 1000)), model)
    assert abs(auroc(s_test, s_near) - auroc(ref_test, ref_near[500:])) < 1e-3
    assert lr.hparams()["combined_by"] == "lr"
    # weighting on validation OOD does not make far OOD worse than chance, and never reads a test set
    assert auroc(lr.score(test, model), lr.score(fmnist.ex(fmnist.far), model)) > 0.5


def test_combine_layers_by_hand():
    s = torch.tensor([[1.0, 10.0], [3.0, 30.0]], dtype=torch.float64)
    out = combine_layers(s, torch.tensor([2.0, 20.0]), torch.tensor([1.0, 10.0]), torch.tensor([0.5, 2.0]))
    assert out.tolist() == [0.5 * -1 + 2.0 * -1, 0.5 * 1 + 2.0 * 1]


def test_refuses_a_model_without_layers_and_says_what_to_set(toy):
    class NoLayers(torch.nn.Module):
        feature_layers = ()

        def forward(self, x):
            return x.flatten(1)[:, :3]

    ex = Extracted(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), x=torch.zeros(2, 3, 6, 6, dtype=torch.uint8))
    with pytest.raises(RulabError, match="names none; set model.feature_layers"):
        MahalanobisLayers().fit(ex, model=NoLayers())
    with pytest.raises(RulabError, match="weights 'lr' or 'uniform'"):
        MahalanobisLayers(weights="max")
