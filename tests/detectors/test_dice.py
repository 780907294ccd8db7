"""DICE: a hand-computed mask and parity with pytorch-ood 0.4.0's ``DICE`` on a trained fastcnn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_ood.detector import DICE

from rulab.detectors.base import Extracted
from rulab.detectors.dice import dice_contribution, dice_mask, dice_score
from rulab.registry import DETECTORS


def test_mask_and_score_by_hand():
    m = torch.tensor([1.0, 2.0, 0.0])
    w = torch.tensor([[1.0, 1.0, 5.0], [-1.0, 3.0, 1.0]])
    v = dice_contribution(m, w)
    torch.testing.assert_close(v, torch.tensor([[1.0, 2.0, 0.0], [-1.0, 6.0, 0.0]], dtype=torch.float64))
    # p = 50: the median of the 6 contributions is 0.5 (NumPy's interpolation); keep the entries above it
    assert np.percentile(v.numpy(), 50) == 0.5
    mask = dice_mask(v, 50.0)
    assert mask.tolist() == [[True, True, False], [False, True, False]]
    h = torch.tensor([[2.0, 1.0, 7.0]])
    # masked head: (1·2 + 1·1, 3·1) = (3, 3), plus the bias
    torch.testing.assert_close(
        dice_score(h, w, torch.tensor([0.0, 1.0]), mask), torch.logsumexp(torch.tensor([[3.0, 4.0]]), dim=1)
    )


def test_fit_uses_the_mean_training_feature_and_masks_per_p():
    z = torch.tensor([[1.0, 3.0], [3.0, 1.0]])
    w = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    det = DETECTORS.create("dice", p=50.0).fit(Extracted(z @ w.T, torch.tensor([0, 1]), features=z, head_weight=w))
    torch.testing.assert_close(det.contribution, dice_contribution(torch.tensor([2.0, 2.0]), w))
    first = det.mask()
    det.p = 10.0
    assert det.mask().sum() > first.sum()


@pytest.mark.parametrize("p", [90.0, 50.0])
def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity, p):
    """pytorch-ood's DICE fitted on the same training features: the same mask, the same scores."""
    train = fmnist.ex(fmnist.train)
    fc = fmnist.model.fc
    ref = DICE(encoder=None, w=fc.weight, b=fc.bias, p=p / 100).fit_features(train.features, train.labels)
    det = DETECTORS.create("dice", p=p).fit(train)
    assert torch.equal(det.mask().cpu(), ref.masked_w != 0) or int((det.mask().cpu() != (ref.masked_w != 0)).sum()) <= 1
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        theirs[k] = -ref.predict_features(ex.features)
    # pytorch-ood takes the quantile in float32, rulab in float64: a weight at the threshold may flip, nothing more
    assert max(parity(ours, theirs).values()) < 1e-3
    for k in ours:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-3, atol=1e-3)
