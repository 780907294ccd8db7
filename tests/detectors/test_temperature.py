"""Temperature scaling: the unbounded Newton fit against the exact NLL minimiser, OE bisection, L-BFGS, NLL reduction."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rulab.detectors.temperature import T_RANGE, TemperatureScaler, fit_temperature, temperature_fit
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


# ---------------------------------------------------------------------------------- the exact NLL minimiser


def np_case(scale: float, n: int = 4000, k: int = 10, seed: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """NumPy logits ``2·N(0, 1)`` with labels drawn from their softmax, then scaled by ``scale`` (T* ≈ scale)."""
    r = np.random.default_rng(seed)
    true = 2.0 * r.normal(size=(n, k))
    p = np.exp(true - true.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (p.cumsum(1) > r.uniform(size=(n, 1))).argmax(1)
    return true * scale, y


def np_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    a = z / t
    m = a.max(1, keepdims=True)
    return float((m[:, 0] + np.log(np.exp(a - m).sum(1)) - a[np.arange(len(y)), y]).mean())


def exact_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """The NLL minimiser in float64, independently of rulab: the best of a dense log-spaced grid over T in
    [1e-3, 1e4] (1,401 points), refined by 100 Newton steps on β = 1/T (the NLL is convex in β)."""
    ts = np.exp(np.linspace(np.log(1e-3), np.log(1e4), 1401))
    b = 1 / ts[np.argmin([np_nll(z, y, t) for t in ts])]
    for _ in range(100):
        a = z * b
        p = np.exp(a - a.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        ez = (p * z).sum(1)
        b -= (ez - z[np.arange(len(y)), y]).mean() / ((p * z * z).sum(1) - ez**2).mean()
    return 1 / b


T_X8 = 8.054984820634177
"""exact_temperature(*np_case(8.0)): logits of a calibrated model (T* = 1.00687) scaled by 8."""
T_X01 = 0.10068731025792722
"""exact_temperature(*np_case(0.1)): the same logits scaled by 0.1."""


def test_logits_times_8_are_not_clipped_at_5():
    z, y = np_case(8.0)
    assert exact_temperature(z, y) == pytest.approx(T_X8, rel=1e-10)  # the reference itself
    fit = temperature_fit(z, y)
    assert fit.converged and fit.method == "newton" and fit.message == ""
    assert fit.temperature == pytest.approx(T_X8, rel=1e-9)
    assert fit.nll == pytest.approx(np_nll(z, y, T_X8), rel=1e-12)
    assert TemperatureScaler().fit(z, y).temperature == pytest.approx(T_X8, rel=1e-9)
    with pytest.warns(
        UserWarning, match="above the bisection bracket's upper bound 5"
    ):  # OE's bounded search clips, and says so
        assert fit_temperature(z, y, "bisection") == pytest.approx(5.0, abs=1e-4)
    assert not temperature_fit(z, y, "bisection").converged


def test_logits_times_0_1_are_not_clipped_at_0_2():
    z, y = np_case(0.1)
    assert exact_temperature(z, y) == pytest.approx(T_X01, rel=1e-10)
    fit = temperature_fit(z, y)
    assert fit.converged and fit.temperature == pytest.approx(T_X01, rel=1e-9)
    with pytest.warns(UserWarning, match="below the bisection bracket's lower bound 0.2"):
        assert fit_temperature(z, y, "bisection") == pytest.approx(0.2, abs=1e-4)


@pytest.mark.parametrize("true_t", [0.05, 0.2, 1.0, 3.0, 9.21, 20.0, 50.0])
def test_newton_equals_the_exact_minimiser_from_0_05_to_50(true_t):
    z, y = np_case(true_t, n=2000, k=7, seed=int(true_t * 100))
    ref = exact_temperature(z, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        t = fit_temperature(z, y)
    assert t == pytest.approx(ref, rel=1e-8)
    assert t == pytest.approx(true_t, rel=0.1)  # and it recovers the scale the logits were drawn with
    assert fit_temperature(z, y, "lbfgs") == pytest.approx(ref, rel=1e-5)
    assert fit_temperature(torch.from_numpy(z).float(), torch.from_numpy(y)) == pytest.approx(
        ref, rel=1e-5
    )  # float32 logits


def test_fits_without_a_finite_minimiser_say_so():
    y = np.arange(60) % 3
    separable = 4.0 * np.eye(3)[y]  # every example right with a margin: NLL -> 0 as T -> 0
    separable[0] = [1.0, 0.9, 0.8]  # keeps the softmax from saturating at T = 1
    fit = temperature_fit(separable, y)
    assert not fit.converged and ("T -> 0" in fit.message or "does not depend on T" in fit.message)
    assert fit.temperature <= 0.1
    labels = np.random.default_rng(1).integers(0, 4, 300)
    worse = np.random.default_rng(0).normal(size=(300, 4))
    worse[np.arange(300), labels] -= 1.0  # the true class is pushed DOWN: the NLL falls all the way to T -> inf
    fit = temperature_fit(worse, labels)
    assert not fit.converged and "T grows" in fit.message and fit.temperature == T_RANGE[1]
    with pytest.warns(UserWarning, match="did not converge"):
        scaler = TemperatureScaler().fit(worse, labels)
    assert scaler.converged is False and scaler.fit_result is not None and "T grows" in scaler.fit_result.message
    saturated_with_errors = 1000.0 * np_case(1.0, n=500)[0]  # saturated softmax at T = 1, but some errors: T* ≈ 1000
    z, yy = saturated_with_errors, np_case(1.0, n=500)[1]
    assert temperature_fit(z, yy).temperature == pytest.approx(exact_temperature(z, yy), rel=1e-8)
