"""Temperature scaling: fit one scalar T on held-out ID logits, then use ``logits / T`` everywhere.

Guo et al. 2017; W1/OE ``tune_temp`` in ``utils/calibration_tools.py`` (convention 4 in docs/conventions.md). The scaler is a post-processor, not a
detector: apply it to cached logits before any detector or calibration metric. Fitting minimises the mean
negative log-likelihood ``NLL(T) = mean_i CE(z_i / T, y_i)`` in float64 on the logits' device.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from rulab.errors import InputError, RulabError
from rulab.metrics._checks import as_tensor, labels_1d, logits_2d

__all__ = ["fit_temperature", "TemperatureScaler"]

ArrayLike = Any  # torch.Tensor | np.ndarray
Method = Literal["bisection", "lbfgs"]


def _nll_at(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    return float(F.cross_entropy(z / t, y))


def _bisection(z: torch.Tensor, y: torch.Tensor, lower: float, upper: float, eps: float) -> float:
    # OE calibration_tools.tune_temp: bisect on the sign of dNLL/dT, then keep the best of {lower, mid, upper}.
    t_guess = torch.tensor(0.5 * (lower + upper), dtype=torch.float64, device=z.device, requires_grad=True)
    while upper - lower > eps:
        (grad,) = torch.autograd.grad(F.cross_entropy(z / t_guess, y), t_guess)
        if grad > 0:
            upper = 0.5 * (lower + upper)
        else:
            lower = 0.5 * (lower + upper)
        t_guess = torch.tensor(0.5 * (lower + upper), dtype=torch.float64, device=z.device, requires_grad=True)
    return min([lower, 0.5 * (lower + upper), upper], key=lambda t: _nll_at(z, y, t))


def _lbfgs(z: torch.Tensor, y: torch.Tensor, max_iter: int) -> float:
    log_t = torch.zeros((), dtype=torch.float64, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not 0.0 < t < float("inf"):
        raise RulabError("temperature fitting diverged; check that the logits and labels belong together")
    return t


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    method: Method = "bisection",
    *,
    lower: float = 0.2,
    upper: float = 5.0,
    eps: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Temperature T minimising the NLL of ``softmax(logits / T)`` on held-out ID data.

    ``"bisection"`` is OE's ``tune_temp`` (``utils/calibration_tools.py``): bisect [lower, upper] on the sign of dNLL/dT
    until ``upper - lower <= eps``, then return whichever of {lower, mid, upper} has the lowest NLL (the
    original evaluates in float32; here float64, so results agree to within ``eps``). The answer is confined
    to [lower, upper]. ``"lbfgs"`` minimises over log T with L-BFGS (strong Wolfe line search), unbounded.

    Args:
        logits: ``[N, K]`` held-out ID logits.
        labels: ``[N]`` class indices.
        method: ``"bisection"`` or ``"lbfgs"``.
        lower: bisection lower bound.
        upper: bisection upper bound.
        eps: bisection stops when the bracket is at most this wide.
        max_iter: L-BFGS iterations.

    Returns:
        The temperature (> 0); divide logits by it.
    """
    z = logits_2d(logits).to(torch.float64)
    y = labels_1d(labels, z.shape[0], z.shape[1], z.device)
    if method == "bisection":
        if not 0.0 < lower < upper or eps <= 0:
            raise InputError(
                f"bisection needs 0 < lower < upper and eps > 0, got lower={lower}, upper={upper}, eps={eps}"
            )
        return _bisection(z, y, float(lower), float(upper), float(eps))
    if method == "lbfgs":
        return _lbfgs(z, y, int(max_iter))
    raise InputError(f"method must be 'bisection' or 'lbfgs', got {method!r}")


class TemperatureScaler:
    """Divides logits by a temperature fitted on held-out ID logits (a post-processor for any detector or metric).

    Args:
        method: ``"bisection"`` (OE ``tune_temp``) or ``"lbfgs"``; see :func:`fit_temperature`.
        temperature: a known temperature (skips fitting; W1 parity uses 1.0).

    Example:
        >>> scaler = TemperatureScaler().fit(val_logits, val_labels)
        >>> calibrated = scaler(test_logits)  # test_logits / scaler.temperature
    """

    def __init__(self, method: Method = "bisection", temperature: float | None = None) -> None:
        if method not in ("bisection", "lbfgs"):
            raise InputError(f"method must be 'bisection' or 'lbfgs', got {method!r}")
        if temperature is not None and not float(temperature) > 0:
            raise InputError(f"temperature must be positive, got {temperature}")
        self.method = method
        self.temperature = None if temperature is None else float(temperature)

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> TemperatureScaler:
        """Fit the temperature on held-out ID ``logits: [N, K]`` and ``labels: [N]``; returns ``self``."""
        self.temperature = fit_temperature(logits, labels, self.method)
        return self

    def __call__(self, logits: ArrayLike) -> torch.Tensor:
        """``logits / T`` (``[N, K]``, same dtype and device as the input tensor)."""
        if self.temperature is None:
            raise RulabError("TemperatureScaler is not fitted; call .fit(logits, labels) on held-out ID data first")
        z = as_tensor(logits, "logits")
        return z / self.temperature

    def __repr__(self) -> str:
        return f"TemperatureScaler(method={self.method!r}, temperature={self.temperature})"
