"""Known answers for the logit detectors (MSP, MaxLogit, Energy, Entropy, GEN, KL matching)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rulab.detectors.base import Extracted
from rulab.detectors.energy import energy_score
from rulab.detectors.entropy import entropy_score
from rulab.detectors.gen import gen_score
from rulab.detectors.klm import class_mean_softmax, klm_score
from rulab.detectors.maxlogit import maxlogit_score
from rulab.detectors.msp import msp_score
from rulab.errors import InputError
from rulab.registry import DETECTORS


def rand_logits(n: int, k: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_msp_and_maxlogit_hand_computed():
    z = torch.tensor([[0.0, math.log(3.0)], [2.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(
        msp_score(z), torch.tensor([0.75, math.exp(2) / (math.exp(2) + math.exp(-1))], dtype=torch.float64)
    )
    torch.testing.assert_close(maxlogit_score(z), torch.tensor([math.log(3.0), 2.0], dtype=torch.float64))


def test_energy_is_t_logsumexp_f_over_t():
    z = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    expected = 2.0 * math.log(math.exp(0.5) + math.exp(1.0) + math.exp(1.5))
    assert energy_score(z, 2.0).item() == pytest.approx(expected, rel=1e-12)
    # large logits do not overflow; T -> 0 approaches the max logit
    big = torch.tensor([[1000.0, 999.0]], dtype=torch.float64)
    assert energy_score(big).item() == pytest.approx(1000.0 + math.log1p(math.exp(-1.0)), rel=1e-12)
    assert energy_score(z, 1e-3).item() == pytest.approx(3.0, abs=1e-6)
    assert DETECTORS.create("energy", t=2.0).score(
        Extracted(z, torch.zeros(1, dtype=torch.long))
    ).item() == pytest.approx(expected)
    with pytest.raises(InputError):
        energy_score(z, 0.0)


def test_entropy_is_negative_shannon_entropy():
    z = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [0.0, -1e4]], dtype=torch.float64)
    expected = [0.25 * math.log(0.25) + 0.75 * math.log(0.75), -math.log(2.0), 0.0]
    torch.testing.assert_close(entropy_score(z), torch.tensor(expected, dtype=torch.float64))
    assert bool(torch.isfinite(entropy_score(torch.tensor([[0.0, -1e30]]))).all())


@pytest.mark.parametrize(("gamma", "m", "k"), [(0.1, 100, 7), (0.5, 3, 7), (1.0, 1, 4)])
def test_gen_matches_the_paper_formula_in_numpy(gamma, m, k):
    z = rand_logits(50, k, seed=k)
    p = np.sort(np_softmax(z.numpy()), axis=1)[:, -min(m, k) :]  # the reference code: ascending sort, last M
    expected = -np.sum(p**gamma * (1.0 - p) ** gamma, axis=1)
    np.testing.assert_allclose(gen_score(z, gamma, m).numpy(), expected, rtol=1e-12)


def test_gen_ranks_a_confident_prediction_above_a_flat_one():
    z = torch.tensor([[10.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    s = gen_score(z)
    assert s[0] > s[1]


def test_klm_matches_numpy_kl_to_predicted_class_templates():
    val = rand_logits(200, 5, seed=1)
    test = rand_logits(30, 5, seed=2)
    p_val = np_softmax(val.numpy())
    pred = p_val.argmax(1)
    templates = np.stack([p_val[pred == c].mean(0) for c in range(5)])
    p = np_softmax(test.numpy())
    kl = (p[:, None, :] * (np.log(p[:, None, :]) - np.log(templates[None]))).sum(-1)  # scipy.stats.entropy(p, d_k)
    np.testing.assert_allclose(class_mean_softmax(val).numpy(), templates, rtol=1e-12)
    np.testing.assert_allclose(klm_score(test, class_mean_softmax(val)).numpy(), -kl.min(1), rtol=1e-9, atol=1e-12)


def test_klm_ignores_classes_nobody_predicts_and_fits_on_validation():
    val = torch.tensor([[5.0, 0.0, -5.0], [4.0, 1.0, -5.0]])  # class 0 predicted only
    templates = class_mean_softmax(val)
    assert torch.isnan(templates[1:]).all() and not torch.isnan(templates[0]).any()
    s = klm_score(torch.tensor([[5.0, 0.0, -5.0]]), templates)
    assert bool(torch.isfinite(s).all()) and s.item() <= 0
    det = DETECTORS.create("klm")
    train = Extracted(rand_logits(20, 3, 3).float(), torch.zeros(20, dtype=torch.long))
    det.fit(train, val_id=Extracted(val, torch.zeros(2, dtype=torch.long)))
    torch.testing.assert_close(det.templates, templates, equal_nan=True)
