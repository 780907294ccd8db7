"""RankFeat: the rank-1 removal by hand and parity with pytorch-ood 0.4.0's ``RankFeat`` (which edits one block) on a
trained fastcnn, fused over the last two blocks as the paper's main score."""

from __future__ import annotations

import pytest
import torch
from pytorch_ood.detector import RankFeat

from rulab.detectors.base import Extracted
from rulab.detectors.energy import energy_score
from rulab.detectors.rankfeat import rankfeat_logits, remove_rank1
from rulab.errors import InputError, RulabError
from rulab.models.fuse import inference_copy
from rulab.registry import DETECTORS


def test_rank1_removal_by_hand():
    u = torch.tensor([1.0, 2.0, 2.0]) / 3.0
    v = torch.tensor([0.6, 0.8, 0.0, 0.0])
    rank1 = 5.0 * torch.outer(u, v)  # singular value 5
    other = 0.5 * torch.outer(torch.tensor([2.0, -2.0, 1.0]) / 3.0, torch.tensor([0.0, 0.0, 1.0, 0.0]))
    maps = (rank1 + other).view(1, 3, 2, 2)
    torch.testing.assert_close(remove_rank1(maps), other.view(1, 3, 2, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(remove_rank1(rank1.view(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2), rtol=0, atol=1e-6)
    with pytest.raises(InputError, match=r"\[C, H·W\]"):
        remove_rank1(torch.rand(2, 5))


def test_matches_pytorch_ood_on_a_trained_network(fmnist, parity):
    """pytorch-ood's RankFeat with the network split by hand at each of the last two stages (its ``backbone`` and
    ``head``), its detector returning the logits; fused by the mean of the two logits and scored by energy as in the
    authors' ``iterate_data_rankfeat``."""
    net = fmnist.model
    stages = net.stages

    def through(k):
        return lambda x: stages[: k + 1](net.normalize(x))

    heads = {1: lambda t: net.fc(stages[2](t).flatten(1)), 2: lambda t: net.fc(t.flatten(1))}
    refs = {k: RankFeat(backbone=through(k), head=heads[k], detector=lambda z: z) for k in (1, 2)}
    det = DETECTORS.create("rankfeat", batch_size=200)
    ours, theirs = {}, {}
    for k in ("test", "near", "far"):
        ex = fmnist.ex(getattr(fmnist, k))
        ours[k] = det.score(ex, model=net)
        x = ex.x.float() / 255
        with torch.no_grad():
            logits = (refs[1].predict(x) + refs[2].predict(x)) / 2
        theirs[k] = energy_score(logits)
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-4, atol=1e-4)
    assert max(parity(ours, theirs).values()) < 1e-3


def test_layers_come_from_the_model_contract(fmnist):
    net = fmnist.model
    x = fmnist.test.x[:50].float() / 255
    with torch.no_grad():
        both = rankfeat_logits(net, x, ("stages.1", "stages.2"))
        torch.testing.assert_close(
            both, (rankfeat_logits(net, x, ("stages.1",)) + rankfeat_logits(net, x, ("stages.2",))) / 2
        )
        # the inference copy (BatchNorm folded into the convolutions) edits the same stage outputs
        torch.testing.assert_close(
            rankfeat_logits(inference_copy(net), x, ("stages.1", "stages.2")), both, rtol=1e-3, atol=1e-3
        )
    ex = Extracted(torch.zeros(50, 6), torch.zeros(50, dtype=torch.long), x=fmnist.test.x[:50])
    one = DETECTORS.create("rankfeat", layers=["stages.2"]).score(ex, model=net)
    torch.testing.assert_close(one, energy_score(rankfeat_logits(net, x, ("stages.2",))))
    with pytest.raises(RulabError, match="names none"):
        DETECTORS.create("rankfeat").score(ex, model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 6)))
