"""SCALE: a hand-computed case and parity with pytorch-ood 0.4.0's ``SCALE`` on a trained fastcnn."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_ood.detector import SCALE

from rulab.detectors.scale import scale_factor, scale_score
from rulab.registry import DETECTORS


def test_scaling_by_hand():
    h = torch.tensor([[3.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    # p = 50 keeps the 2 largest for s2: s1 / s2 = 6 / 5; an all-zero image gets factor 1
    torch.testing.assert_close(scale_factor(h, 50.0), torch.tensor([math.exp(6 / 5), 1.0]))
    w, b = torch.eye(4)[:2], torch.tensor([0.5, -0.5])
    # unlike ASH-S nothing is pruned: the logits are (3 r + 0.5, 1 r − 0.5) with r = exp(1.2)
    r = math.exp(1.2)
    torch.testing.assert_close(
        scale_score(h[:1], w, b, 50.0), torch.logsumexp(torch.tensor([[3 * r + 0.5, r - 0.5]]), dim=1)
    )


@pytest.mark.parametrize("percentile", [85.0, 60.0])
def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity, percentile):
    """pytorch-ood's SCALE on the same penultimate features (as [B, D, 1, 1], the paper's placement after the
    average pool) and head: the same scores up to float rounding."""
    head = fmnist.model.fc
    ref = SCALE(backbone=None, head=lambda t: head(t.flatten(1)), percentile=percentile / 100)
    det = DETECTORS.create("scale", percentile=percentile)
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        theirs[k] = -ref.predict_feature_maps(ex.features[:, :, None, None].clone())
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-4)
    assert max(parity(ours, theirs).values()) < 1e-3
    assert DETECTORS.create("scale").percentile == 85.0
