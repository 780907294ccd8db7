"""Decoupled MaxLogit (rulab.detectors.dml): hand-computed cosines and norms, the MaxLogit identity it decouples,
its two limits, and a float64 NumPy reference on the trained fastcnn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rulab.detectors.base import Extracted
from rulab.detectors.dml import DML, dml_score, max_cosine, max_norm
from rulab.errors import InputError, RulabError
from rulab.metrics.ood import auroc


def test_cosine_and_norm_by_hand():
    """h = (3, 4): ‖h‖ = 5; w_1 = (1, 0) gives cos 0.6, w_2 = (0, 2) gives 0.8, w_3 = (-1, -1) gives −7/(5√2)."""
    h = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    np.testing.assert_allclose(max_cosine(h, w).numpy(), [0.8, 1 / math.sqrt(2)], rtol=1e-15)
    np.testing.assert_allclose(max_norm(h).numpy(), [5.0, 2.0], rtol=1e-15)
    np.testing.assert_allclose(dml_score(h, w, 10.0).numpy(), [13.0, 10 / math.sqrt(2) + 2.0], rtol=1e-15)
    with pytest.raises(InputError, match="lam >= 0"):
        dml_score(h, w, -1.0)


def test_maxlogit_is_the_product_of_the_two_terms_for_equal_norm_weights():
    """With every ‖w_k‖ = r and no bias, max_k z_k = r · ‖h‖ · max_k cos(h, w_k): the decomposition DML starts from."""
    g = torch.Generator().manual_seed(0)
    w = torch.nn.functional.normalize(torch.randn(6, 16, generator=g, dtype=torch.float64), dim=1) * 2.5
    h = torch.randn(40, 16, generator=g, dtype=torch.float64).relu()
    torch.testing.assert_close((h @ w.T).amax(dim=1), 2.5 * max_norm(h) * max_cosine(h, w))


def test_fit_balances_the_terms_and_the_limits_rank_as_each_term(fmnist):
    train, test, far = (fmnist.ex(d) for d in (fmnist.train, fmnist.test, fmnist.far))
    det = DML().fit(train)
    z, w = train.features.double().numpy(), train.head_weight.double().numpy()
    cos = ((z / np.linalg.norm(z, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T).max(
        axis=1
    )
    lam0 = np.linalg.norm(z, axis=1).mean() / cos.mean()  # float64 reference of the balancing λ₀
    assert det.lam0 == pytest.approx(lam0, rel=1e-12)
    assert det.hparams() == {"scale": 1.0, "lam": pytest.approx(lam0, rel=1e-12)}
    # the score against the float64 NumPy reference
    zt = test.features.double().numpy()
    ref = lam0 * (
        (zt / np.linalg.norm(zt, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    ).max(axis=1) + np.linalg.norm(zt, axis=1)
    np.testing.assert_allclose(det.score(test).numpy(), ref, rtol=1e-10)
    # scale → ∞ ranks as MaxCosine, a fixed λ = 0 as MaxNorm
    huge = DML(scale=1e9).fit(train)
    assert auroc(huge.score(test), huge.score(far)) == pytest.approx(
        auroc(max_cosine(test.features, test.head_weight), max_cosine(far.features, far.head_weight)), abs=1e-9
    )
    zero = DML(lam=0.0)
    assert auroc(zero.score(test), zero.score(far)) == auroc(max_norm(test.features), max_norm(far.features))
    assert auroc(det.score(test), det.score(far)) > 0.9


def test_needs_fitting_and_the_head():
    ex = Extracted(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), features=torch.rand(3, 4))
    with pytest.raises(RulabError, match="'dml' is not fitted"):
        DML().score(
            Extracted(
                torch.zeros(3, 2),
                torch.zeros(3, dtype=torch.long),
                features=torch.rand(3, 4),
                head_weight=torch.rand(2, 4),
            )
        )
    with pytest.raises(InputError, match="needs head_weight"):
        DML(lam=1.0).score(ex)
    with pytest.raises(InputError, match="scale >= 0"):
        DML(scale=-1.0)
