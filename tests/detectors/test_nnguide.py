"""NNGuide: a hand-computed guidance and parity with pytorch-ood 0.4.0's ``NNGuide`` on a trained fastcnn."""

from __future__ import annotations

import pytest
import torch
from pytorch_ood.detector import NNGuide

from rulab.detectors.base import Extracted, tuning_objective
from rulab.detectors.nnguide import nnguide_bank, nnguide_score
from rulab.registry import DETECTORS


def test_guidance_by_hand():
    bank_z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    bank_logits = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    bank = nnguide_bank(bank_z, bank_logits)
    e = torch.logsumexp(bank_logits, dim=1)
    torch.testing.assert_close(bank, torch.nn.functional.normalize(bank_z, dim=1) * e[:, None])
    q, q_logits = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    # similarities of (1, 0) with the bank: e0·1, e1·0, e2·0.7071; k = 2 takes the two largest
    sims = torch.tensor([e[0], 0.0, e[2] / 2**0.5])
    expected = torch.logsumexp(q_logits, dim=1) * sims.topk(2).values.mean()
    torch.testing.assert_close(nnguide_score(q, q_logits, bank, k=2), expected)


def test_bank_is_a_seeded_one_percent_subset_of_at_least_k():
    z = torch.rand(3000, 5)
    ex = Extracted(torch.rand(3000, 2), torch.zeros(3000, dtype=torch.long), features=z)
    a = DETECTORS.create("nnguide").fit(ex)
    assert a.bank.shape == (30, 5) and torch.equal(a.bank, DETECTORS.create("nnguide").fit(ex).bank)
    assert DETECTORS.create("nnguide", k=50).fit(ex).bank.shape == (50, 5)


@pytest.mark.parametrize("k", [10, 1])
def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity, k):
    """pytorch-ood's NNGuide with the whole fitting split as bank (bank_ratio=1): the same bank and scores."""
    train = fmnist.ex(fmnist.train)
    ref = NNGuide(encoder=None, head=fmnist.model.fc, k=k).fit_features(train.features, train.labels)
    det = DETECTORS.create("nnguide", k=k, bank_ratio=1.0).fit(train)
    torch.testing.assert_close(det.bank, ref._scaled_features, rtol=1e-5, atol=1e-5)
    ours, theirs = {}, {}
    for s in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, s))
        ours[s] = det.score(ex)
        theirs[s] = -ref.predict_features(ex.features)
        torch.testing.assert_close(ours[s], theirs[s], rtol=1e-4, atol=1e-4)
    assert max(parity(ours, theirs).values()) < 1e-3


def test_tuning_equals_scoring_at_each_k(fmnist):
    det = DETECTORS.create("nnguide", bank_ratio=0.05).fit(fmnist.ex(fmnist.train))
    chosen = det.tune(
        fmnist.model, fmnist.ex(fmnist.val), {"far": fmnist.ex(fmnist.far), "near": fmnist.ex(fmnist.near)}
    )
    for k in det.grid["k"]:
        det.k = k
        obj = tuning_objective(
            det.score(fmnist.ex(fmnist.val)), {n: det.score(fmnist.ex(getattr(fmnist, n))) for n in ("far", "near")}
        )
        assert obj >= chosen["objective"] - 1e-12
    det.k = chosen["k"]
    obj = tuning_objective(
        det.score(fmnist.ex(fmnist.val)), {n: det.score(fmnist.ex(getattr(fmnist, n))) for n in ("far", "near")}
    )
    assert obj == pytest.approx(chosen["objective"])
