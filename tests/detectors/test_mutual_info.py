"""Mutual information of ensemble members (rulab.detectors.mutual_info): hand-computed values, the entropy
decomposition, and a float64 NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rulab.detectors.base import Extracted
from rulab.detectors.mutual_info import entropy_decomposition, mutual_information_score
from rulab.errors import ConfigError, InputError
from rulab.registry import DETECTORS


def test_two_confident_members_that_disagree_by_hand():
    """p_1 = (0.9, 0.1), p_2 = (0.1, 0.9): p̄ = (0.5, 0.5), H(p̄) = log 2, each H(p_m) = H(0.9), so
    I = log 2 − H(0.9) = 0.368064 nats."""
    logits = torch.log(torch.tensor([[[0.9, 0.1], [0.1, 0.9]]], dtype=torch.float64))
    total, aleatoric, epistemic = entropy_decomposition(logits)
    h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert total.item() == pytest.approx(math.log(2), abs=1e-15)
    assert aleatoric.item() == pytest.approx(h09, abs=1e-15)
    assert epistemic.item() == pytest.approx(math.log(2) - h09, abs=1e-15) and epistemic.item() == pytest.approx(
        0.368064, abs=1e-6
    )
    assert mutual_information_score(logits).item() == pytest.approx(-(math.log(2) - h09), abs=1e-15)


def test_identical_members_carry_no_epistemic_uncertainty():
    z = torch.randn(20, 1, 6, generator=torch.Generator().manual_seed(0)).expand(20, 5, 6)
    total, aleatoric, epistemic = entropy_decomposition(z)
    assert torch.all(epistemic == 0) and torch.allclose(total, aleatoric, atol=1e-12)
    assert torch.all(mutual_information_score(z) == 0)


def test_decomposition_and_kl_form_against_numpy():
    """total = aleatoric + epistemic, and the mutual information equals the members' mean KL(p_m ‖ p̄) (the
    generalised Jensen–Shannon divergence), computed here in float64 NumPy; 0 ≤ I ≤ log M."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(50, 4, 7, generator=g) * 4
    total, aleatoric, epistemic = entropy_decomposition(z)
    torch.testing.assert_close(total, aleatoric + epistemic, rtol=0, atol=1e-12)
    p = np.exp(z.double().numpy() - z.double().numpy().max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    pbar = p.mean(axis=1, keepdims=True)
    kl = (p * (np.log(p) - np.log(pbar))).sum(axis=2).mean(axis=1)
    np.testing.assert_allclose(epistemic.numpy(), kl, rtol=1e-9, atol=1e-12)
    h = lambda q: -(q * np.log(q)).sum(axis=-1)  # noqa: E731
    np.testing.assert_allclose(total.numpy(), h(pbar[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(aleatoric.numpy(), h(p).mean(axis=1), rtol=1e-12)
    assert bool((epistemic >= 0).all()) and bool((epistemic <= math.log(4) + 1e-12).all())


def test_detector_reads_the_members_and_says_how_to_get_them():
    z = torch.randn(8, 3, 4, generator=torch.Generator().manual_seed(2))
    mean_logits = z.mean(dim=1)
    det = DETECTORS.create("mutual_info")
    ex = Extracted(mean_logits, torch.zeros(8, dtype=torch.long), members=z, name="ens")
    torch.testing.assert_close(det.score(ex), mutual_information_score(z))
    torch.testing.assert_close(det.score(ex.subset(torch.tensor([2, 5]))), mutual_information_score(z)[[2, 5]])
    with pytest.raises(
        InputError, match="needs members of 'single'; extract from a deep ensemble or an MC-dropout model"
    ):
        det.score(Extracted(mean_logits, torch.zeros(8, dtype=torch.long), name="single"))
    with pytest.raises(InputError, match=r"member logits must be \[N, M, K\] with N = 8 and K = 4"):
        Extracted(mean_logits, torch.zeros(8, dtype=torch.long), members=z[:, :, :3])
    with pytest.raises(InputError, match=r"must be \[B, M, K\]"):
        entropy_decomposition(z[0])


def test_evaluating_a_single_network_with_member_scores_is_refused_before_anything_runs(toy):
    from rulab.config import EvalCfg
    from rulab.eval.evaluate import run_evaluation

    cfg = EvalCfg(detectors=("msp", "mutual_info"), shift="", farconf=False)
    with pytest.raises(
        ConfigError, match="mutual_info read the members of a deep ensemble .* TinyNet is a single network"
    ):
        run_evaluation(toy.model, benchmark="fmnist", eval_cfg=cfg, train=toy.train, val=toy.val, test=toy.test)
