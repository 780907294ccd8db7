"""Temperature scaling: fit one scalar T on held-out ID logits, then use ``logits / T`` everywhere.

Guo et al. 2017 ("On calibration of modern neural networks", §4.2): T minimises the mean negative log-likelihood
``NLL(T) = mean_i CE(z_i / T, y_i)`` on held-out data. The scaler is a post-processor, not a detector: apply it to
cached logits before any detector or calibration metric. Everything is computed in float64 on the logits' device.

The default fit (``method="newton"``) has no arbitrary bound. With ``β = 1/T`` the NLL is convex,
``NLL(β) = mean_i [logsumexp_k(β z_ik) - β z_iy]``, with derivative ``g(β) = mean_i [E_{p_i}[z_i] - z_iy]`` and
second derivative ``mean_i Var_{p_i}(z_i) ≥ 0`` (``p_i = softmax(β z_i)``). The fit doubles or halves β from T = 1
until g changes sign (a bracket on log T), then runs a safeguarded Newton iteration on β inside the bracket (bisection
on log β whenever a Newton step would leave it) to full float64 precision. When no sign change exists within
``T ∈ [1e-6, 1e6]`` the NLL has no finite minimiser: it keeps falling as T → 0 (every held-out example classified
correctly) or as T → ∞ (logits carrying no information about the labels). The fit then returns the bound it reached,
with ``converged=False`` and a warning.

``method="bisection"`` is the bounded search of Hendrycks et al.'s Outlier Exposure code (``tune_temp`` in ``utils/calibration_tools.py``: bisection of
``T ∈ [0.2, 5]`` on the sign of dNLL/dT), kept for parity; it warns and records ``converged=False`` when the optimum is
outside its bracket (it then returns the bound).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from rulab.errors import InputError, RulabError, RulabWarning
from rulab.metrics._checks import as_tensor, labels_1d, logits_2d

__all__ = ["TemperatureFit", "temperature_fit", "fit_temperature", "TemperatureScaler", "T_RANGE"]

ArrayLike = Any  # torch.Tensor | np.ndarray
Method = Literal["newton", "bisection", "lbfgs"]
METHODS = ("newton", "bisection", "lbfgs")

T_RANGE = (1e-6, 1e6)
"""The temperatures the unbounded fit may reach: beyond them the NLL has no finite minimiser in practice."""


@dataclass(frozen=True)
class TemperatureFit:
    """The outcome of a temperature fit.

    Attributes:
        temperature: T (> 0); divide logits by it.
        nll: the mean NLL of ``logits / T`` on the fitting data (nats).
        converged: whether T is the NLL minimiser to the method's tolerance; False when the optimum lies outside the
            method's range (bisection: [lower, upper]; newton: :data:`T_RANGE`) or L-BFGS stopped early.
        method: the method used.
        iterations: NLL gradient evaluations.
        message: why the fit did not converge ("" when it did).
    """

    temperature: float
    nll: float
    converged: bool
    method: str
    iterations: int
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (for result metadata)."""
        return asdict(self)


def _nll_at(z: torch.Tensor, y: torch.Tensor, t: float) -> float:
    return float(F.cross_entropy(z / t, y))


def _derivatives(z: torch.Tensor, y: torch.Tensor, beta: float) -> tuple[float, float]:
    """``(dNLL/dβ, d²NLL/dβ²)`` at ``β``: ``mean_i E_p[z_i] - z_iy`` and ``mean_i Var_p(z_i)``, float64."""
    p = torch.softmax(z * beta, dim=1)
    ez = (p * z).sum(dim=1)
    g = float((ez - z.gather(1, y.unsqueeze(1)).squeeze(1)).mean())
    h = float(((p * z.square()).sum(dim=1) - ez.square()).clamp_min(0.0).mean())
    return g, h


def _newton(z: torch.Tensor, y: torch.Tensor, max_iter: int) -> TemperatureFit:
    b_min, b_max = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    beta, calls = 1.0, 1
    g, h = _derivatives(z, y, beta)
    lo = hi = None  # β with g < 0 (optimum above) and g > 0 (optimum below)
    # ---- bracket: double or halve β (a step of log 2 on log T) until g changes sign or the range ends
    while g != 0.0 or h == 0.0:
        if h == 0.0 and g <= 0.0:  # no curvature and nothing to gain at smaller β: the NLL is flat (saturated softmax)
            t = 1.0 / beta
            return TemperatureFit(
                t,
                _nll_at(z, y, t),
                False,
                "newton",
                calls,
                f"the NLL does not depend on T near T = {t:.3g} (every softmax is saturated or the logits "
                "are constant per example), so no temperature minimises it; T is that value",
            )
        if g < 0:
            lo = beta
            if hi is not None:
                break
            if beta >= b_max:
                t = 1.0 / beta
                return TemperatureFit(
                    t,
                    _nll_at(z, y, t),
                    False,
                    "newton",
                    calls,
                    f"the NLL keeps decreasing as T -> 0 (down to T = {t:.3g}): the held-out logits classify "
                    "every example correctly, so no finite temperature minimises the NLL; T is that bound",
                )
            beta = min(beta * 2.0, b_max)
        else:
            hi = beta
            if lo is not None:
                break
            if beta <= b_min:
                t = 1.0 / beta
                return TemperatureFit(
                    t,
                    _nll_at(z, y, t),
                    False,
                    "newton",
                    calls,
                    f"the NLL keeps decreasing as T grows (up to T = {t:.3g}): the held-out logits carry no "
                    "information about the labels (check that logits and labels belong together); T is that bound",
                )
            beta = max(beta / 2.0, b_min)
        g, h = _derivatives(z, y, beta)
        calls += 1
    # ---- safeguarded Newton on β inside [lo, hi] (bisection on log β when a step would leave the bracket)
    converged = g == 0.0
    for _ in range(max_iter):
        if converged:
            break
        if g < 0:
            lo = beta
        else:
            hi = beta
        step = -g / h if h > 0 else math.inf
        nxt = beta + step
        if not lo < nxt < hi:
            nxt = math.sqrt(lo * hi)
        if abs(nxt - beta) <= 1e-12 * beta or (hi - lo) <= 1e-12 * hi:
            beta, converged = nxt, True
            break
        beta = nxt
        g, h = _derivatives(z, y, beta)
        calls += 1
        converged = g == 0.0
    t = 1.0 / beta
    message = "" if converged else f"Newton's iteration did not settle within {max_iter} steps (last T = {t:.6g})"
    return TemperatureFit(t, _nll_at(z, y, t), converged, "newton", calls, message)


def _bisection(z: torch.Tensor, y: torch.Tensor, lower: float, upper: float, eps: float) -> TemperatureFit:
    # Outlier Exposure's tune_temp: bisect on the sign of dNLL/dT, then keep the best of {lower, mid, upper}.
    lo0, hi0 = lower, upper
    calls = 0
    t_guess = torch.tensor(0.5 * (lower + upper), dtype=torch.float64, device=z.device, requires_grad=True)
    while upper - lower > eps:
        (grad,) = torch.autograd.grad(F.cross_entropy(z / t_guess, y), t_guess)
        calls += 1
        if grad > 0:
            upper = 0.5 * (lower + upper)
        else:
            lower = 0.5 * (lower + upper)
        t_guess = torch.tensor(0.5 * (lower + upper), dtype=torch.float64, device=z.device, requires_grad=True)
    t = min([lower, 0.5 * (lower + upper), upper], key=lambda v: _nll_at(z, y, v))
    # dNLL/dT = -β² dNLL/dβ: the optimum lies beyond a bound when the NLL still falls towards it there
    g_lo, _ = _derivatives(z, y, 1.0 / lo0)
    g_hi, _ = _derivatives(z, y, 1.0 / hi0)
    message = ""
    if g_hi > 0:
        message = f"the NLL minimum lies above the bisection bracket's upper bound {hi0:g}; T = {t:.6g} is clipped (use method='newton')"
    elif g_lo < 0:
        message = f"the NLL minimum lies below the bisection bracket's lower bound {lo0:g}; T = {t:.6g} is clipped (use method='newton')"
    return TemperatureFit(t, _nll_at(z, y, t), not message, "bisection", calls + 2, message)


def _lbfgs(z: torch.Tensor, y: torch.Tensor, max_iter: int) -> TemperatureFit:
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
    g, _ = _derivatives(z, y, 1.0 / t)
    calls = int(opt.state[log_t].get("func_evals", 0))
    ok = abs(g / t) <= 1e-6  # dNLL/dlog T = -β g(β) (nats per unit of log T): ~0 at the minimum
    message = "" if ok else f"L-BFGS stopped with dNLL/dlog T = {-g / t:.3g} (not a minimum); use method='newton'"
    return TemperatureFit(t, _nll_at(z, y, t), ok, "lbfgs", calls, message)


def temperature_fit(
    logits: ArrayLike,
    labels: ArrayLike,
    method: Method = "newton",
    *,
    lower: float = 0.2,
    upper: float = 5.0,
    eps: float = 1e-4,
    max_iter: int = 200,
) -> TemperatureFit:
    """Fit the temperature minimising the NLL of ``softmax(logits / T)`` and say whether it converged.

    ``"newton"`` (default): bracket expansion on log T from T = 1, then safeguarded Newton on ``β = 1/T`` (module
    docstring); no bound but :data:`T_RANGE`. ``"bisection"``: Outlier Exposure's ``tune_temp`` on [lower, upper]
    until the bracket is at most ``eps`` wide, then whichever of {lower, mid, upper} has the lowest NLL (the original
    evaluates in float32; here float64, so results agree to within ``eps``); confined to [lower, upper].
    ``"lbfgs"``: L-BFGS over log T (strong Wolfe line search), unbounded.

    Args:
        logits: ``[N, K]`` held-out ID logits.
        labels: ``[N]`` class indices.
        method: ``"newton"``, ``"bisection"`` or ``"lbfgs"``.
        lower: bisection lower bound.
        upper: bisection upper bound.
        eps: bisection stops when the bracket is at most this wide.
        max_iter: Newton or L-BFGS iterations.

    Returns:
        A :class:`TemperatureFit` (``converged=False`` with a ``message`` when T is not the NLL minimiser).
    """
    if not 0.0 < lower < upper or eps <= 0:
        raise InputError(f"bisection needs 0 < lower < upper and eps > 0, got lower={lower}, upper={upper}, eps={eps}")
    z = logits_2d(logits).to(torch.float64)
    y = labels_1d(labels, z.shape[0], z.shape[1], z.device)
    if method == "newton":
        return _newton(z, y, int(max_iter))
    if method == "bisection":
        return _bisection(z, y, float(lower), float(upper), float(eps))
    if method == "lbfgs":
        return _lbfgs(z, y, int(max_iter))
    raise InputError(f"method must be one of {', '.join(repr(m) for m in METHODS)}, got {method!r}")


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    method: Method = "newton",
    *,
    lower: float = 0.2,
    upper: float = 5.0,
    eps: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)`` on held-out ID data (:func:`temperature_fit`),
    with a ``UserWarning`` when the fit did not converge.

    Args:
        logits: ``[N, K]`` held-out ID logits.
        labels: ``[N]`` class indices.
        method: ``"newton"`` (default, unbounded), ``"bisection"`` (Outlier Exposure's, on [lower, upper]) or
            ``"lbfgs"``.
        lower: bisection lower bound.
        upper: bisection upper bound.
        eps: bisection stops when the bracket is at most this wide.
        max_iter: Newton or L-BFGS iterations.

    Returns:
        The temperature (> 0); divide logits by it.
    """
    fit = temperature_fit(logits, labels, method, lower=lower, upper=upper, eps=eps, max_iter=max_iter)
    if not fit.converged:
        warnings.warn(f"temperature scaling did not converge: {fit.message}", RulabWarning, stacklevel=2)
    return fit.temperature


class TemperatureScaler:
    """Divides logits by a temperature fitted on held-out ID logits (a post-processor for any detector or metric).

    Args:
        method: ``"newton"`` (default), ``"bisection"`` or ``"lbfgs"``; see :func:`temperature_fit`.
        temperature: a known temperature (skips fitting; the parity presets use 1.0).

    Attributes:
        fit_result: the :class:`TemperatureFit` of the last :meth:`fit` (None for a given temperature); its
            ``converged`` and ``message`` say whether T is the NLL minimiser.

    Example:
        >>> scaler = TemperatureScaler().fit(val_logits, val_labels)
        >>> calibrated = scaler(test_logits)  # test_logits / scaler.temperature
    """

    def __init__(self, method: Method = "newton", temperature: float | None = None) -> None:
        if method not in METHODS:
            raise InputError(f"method must be one of {', '.join(repr(m) for m in METHODS)}, got {method!r}")
        if temperature is not None and not float(temperature) > 0:
            raise InputError(f"temperature must be positive, got {temperature}")
        self.method = method
        self.temperature = None if temperature is None else float(temperature)
        self.fit_result: TemperatureFit | None = None

    @property
    def converged(self) -> bool | None:
        """Whether the last fit converged (None when the temperature was given, not fitted)."""
        return None if self.fit_result is None else self.fit_result.converged

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> TemperatureScaler:
        """Fit the temperature on held-out ID ``logits: [N, K]`` and ``labels: [N]``; returns ``self``. Warns when the
        fit did not converge (``self.fit_result.message`` says why)."""
        self.fit_result = temperature_fit(logits, labels, self.method)
        if not self.fit_result.converged:
            warnings.warn(
                f"temperature scaling did not converge: {self.fit_result.message}", RulabWarning, stacklevel=2
            )
        self.temperature = self.fit_result.temperature
        return self

    def __call__(self, logits: ArrayLike) -> torch.Tensor:
        """``logits / T`` (``[N, K]``, same dtype and device as the input tensor)."""
        if self.temperature is None:
            raise RulabError("TemperatureScaler is not fitted; call .fit(logits, labels) on held-out ID data first")
        z = as_tensor(logits, "logits")
        return z / self.temperature

    def __repr__(self) -> str:
        return f"TemperatureScaler(method={self.method!r}, temperature={self.temperature})"
