"""ASH-P, ASH-B and ASH-S: a hand-computed case and parity with pytorch-ood 0.4.0's ``ASH`` on a trained fastcnn."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_ood.detector import ASH

from rulab.detectors.ash import ash_b, ash_keep, ash_p, ash_s, ash_score
from rulab.errors import InputError
from rulab.registry import DETECTORS

SETS = ("test", "near", "far")


def test_shaping_by_hand():
    h = torch.tensor([[3.0, 1.0, 0.0, 2.0], [0.5, 4.0, 1.5, 0.0]])
    # p = 50: k = 4 - round(2) = 2 entries kept per image
    assert ash_keep(h, 50.0) == 2 and ash_keep(h, 90.0) == 1 and ash_keep(torch.zeros(1, 864), 90.0) == 86
    torch.testing.assert_close(ash_p(h, 50.0), torch.tensor([[3.0, 0.0, 0.0, 2.0], [0.0, 4.0, 1.5, 0.0]]))
    # ASH-B: the sum (6 and 6) spread over the 2 kept positions
    torch.testing.assert_close(ash_b(h, 50.0), torch.tensor([[3.0, 0.0, 0.0, 3.0], [0.0, 3.0, 3.0, 0.0]]))
    # ASH-S: pruned times exp(s1 / s2) = exp(6 / 5) and exp(6 / 5.5)
    expected = torch.tensor([[3.0, 0.0, 0.0, 2.0], [0.0, 4.0, 1.5, 0.0]]) * torch.tensor(
        [[math.exp(6 / 5)], [math.exp(6 / 5.5)]]
    )
    torch.testing.assert_close(ash_s(h, 50.0), expected)
    # maps [B, C, H, W] are shaped per image over all their entries; an all-zero image stays zero
    maps = h.view(2, 1, 2, 2)
    torch.testing.assert_close(ash_s(maps, 50.0).view(2, 4), expected)
    torch.testing.assert_close(ash_s(torch.zeros(1, 4), 50.0), torch.zeros(1, 4))
    # the score is the energy of the head on the shaped features
    w, b = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(ash_score(h[:1], w, b, 50.0, "b"), torch.logsumexp(torch.tensor([[3.0, 4.0]]), dim=1))
    with pytest.raises(InputError, match="percentile p in"):
        ash_p(h, 100.0)
    with pytest.raises(InputError, match="variant"):
        ash_score(h, w, b, 50.0, "q")


@pytest.mark.parametrize("variant,percentile", [("p", 90.0), ("b", 90.0), ("s", 95.0), ("s", 65.0)])
def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity, variant, percentile):
    """pytorch-ood's ASH on the same penultimate features (as [B, D, 1, 1] maps, the authors' placement after the
    average pool) and head: the same scores up to float rounding, so the same AUROC."""
    head = fmnist.model.fc
    ref = ASH(backbone=None, head=lambda t: head(t.flatten(1)), variant=f"ash-{variant}", percentile=percentile / 100)
    det = DETECTORS.create(f"ash_{variant}", percentile=percentile)
    ours, theirs = {}, {}
    for k in SETS:
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex)
        theirs[k] = -ref.predict_feature_maps(ex.features[:, :, None, None].clone())  # outlier score → confidence
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-5, atol=1e-4)
    assert max(parity(ours, theirs).values()) < 1e-3


def test_defaults_are_the_papers_cifar_settings():
    assert DETECTORS.create("ash_p").percentile == 90.0
    assert DETECTORS.create("ash_b").percentile == 90.0
    assert DETECTORS.create("ash_s").percentile == 95.0
    assert DETECTORS.get("ash_s").grid["percentile"] == (65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0)
