"""Temperature scaling: OE bisection, L-BFGS, known temperatures, NLL reduction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rulab.detectors.temperature import TemperatureScaler, fit_temperature
from rulab.errors import InputError, RulabError
from rulab.metrics.calibration import nll


def tune_temp_port(logits, labels, lower=0.2, upper=5.0, eps=0.0001):
    """hendrycks/outlier-exposure utils/calibration_tools.py tune_temp (binary_search=True), float32 as published."""
    logits = torch.FloatTensor(np.array(logits))
    labels = torch.LongTensor(labels)
    t_guess = torch.FloatTensor([0.5 * (lower + upper)]).requires_grad_()
    while upper - lower > eps:
        if torch.autograd.grad(F.cross_entropy(logits / t_guess, labels), t_guess)[0] > 0:
            upper = 0.5 * (lower + upper)
        else:
            lower = 0.5 * (lower + upper)
        t_guess = t_guess * 0 + 0.5 * (lower + upper)
    return min([lower, 0.5 * (lower + upper), upper], key=lambda x: float(F.cross_entropy(logits / x, labels)))


def calibrated_logits(n: int, k: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(true_logits), returned logits = true_logits * scale: the right T is `scale`."""
    g = torch.Generator().manual_seed(seed)
    true = 2.0 * torch.randn(n, k, generator=g)
    labels = torch.multinomial(true.softmax(dim=1), 1, generator=g).squeeze(1)
    return true * scale, labels


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_bisection_and_lbfgs_recover_a_known_temperature(scale):
    logits, labels = calibrated_logits(20_000, 10, scale, seed=0)
    t_bis = fit_temperature(logits, labels, "bisection")
    t_lbfgs = fit_temperature(logits, labels, "lbfgs")
    assert t_bis == pytest.approx(t_lbfgs, abs=1e-3)
    assert t_lbfgs == pytest.approx(scale, rel=0.05)


def test_bisection_matches_oe_tune_temp():
    logits, labels = calibrated_logits(5_000, 10, 2.0, seed=1)
    ours = fit_temperature(logits, labels, "bisection")
    assert ours == pytest.approx(tune_temp_port(logits.numpy(), labels.numpy()), abs=2e-4)


def test_bisection_is_confined_to_its_bracket():
    logits, labels = calibrated_logits(2_000, 5, 10.0, seed=2)  # true T = 10 > upper = 5
    assert fit_temperature(logits, labels, "bisection") == pytest.approx(5.0, abs=1e-4)
    assert fit_temperature(logits, labels, "lbfgs") > 7.0


def test_scaling_lowers_nll_and_scaler_divides_logits():
    logits, labels = calibrated_logits(4_000, 10, 3.0, seed=3)
    val, test = slice(0, 2_000), slice(2_000, None)
    scaler = TemperatureScaler().fit(logits[val], labels[val])
    assert scaler.temperature == pytest.approx(3.0, rel=0.1)
    scaled = scaler(logits[test])
    assert torch.equal(scaled, logits[test] / scaler.temperature) and scaled.dtype == logits.dtype
    assert nll(scaled, labels[test]) < nll(logits[test], labels[test]) - 0.1
    lb = TemperatureScaler(method="lbfgs").fit(logits[val].numpy(), labels[val].numpy())
    assert lb.temperature == pytest.approx(scaler.temperature, abs=1e-3)


def test_scaler_with_given_temperature_and_errors():
    z = torch.tensor([[2.0, -2.0]])
    assert torch.equal(TemperatureScaler(temperature=2.0)(z), torch.tensor([[1.0, -1.0]]))
    assert torch.equal(TemperatureScaler(temperature=1.0)(z), z)  # W1 parity: T = 1
    with pytest.raises(RulabError, match="not fitted"):
        TemperatureScaler()(z)
    with pytest.raises(InputError, match="positive"):
        TemperatureScaler(temperature=0.0)
    with pytest.raises(InputError, match="method"):
        TemperatureScaler(method="grid")
    with pytest.raises(InputError, match="method"):
        fit_temperature(z, torch.tensor([0]), method="grid")
    with pytest.raises(InputError, match="lower < upper"):
        fit_temperature(z, torch.tensor([0]), lower=5.0, upper=1.0)
    with pytest.raises(InputError, match="one label per row"):
        fit_temperature(z, torch.tensor([0, 1]))
