"""The detectors' score functions for your own arrays: NumPy or torch in, the same type out.

Every function here IS the library's score function (:func:`rulab.detectors.msp.msp_score`, ...) behind a thin
adapter: NumPy arrays are viewed as torch tensors (float64 stays float64), the function runs, and tensors in the
result come back as NumPy arrays when any input was a NumPy array. Torch inputs pass through untouched, so results are
identical to what ``rulab eval`` computes.

Sign convention (convention 2 in docs/conventions.md): every score is a **confidence, higher = more in-distribution**. Feed
``s_id`` and ``s_ood`` to :mod:`rulab.metrics` (``auroc(s_id, s_ood)``, ``fpr95_id``, ...) as they are.

| function | definition (`z`: logits `[N, K]`, `h`: features `[N, D]`) | paper |
|---|---|---|
| `msp_score(z)` | `max_k softmax(z)_k` | Hendrycks & Gimpel 2017 |
| `maxlogit_score(z)` | `max_k z_k` | Hendrycks et al. 2022 |
| `energy_score(z, t)` | `t · logsumexp(z / t)` (= −energy) | Liu et al. 2020 |
| `entropy_score(z)` | `Σ_k p_k log p_k` (= −entropy) | baseline |
| `gen_score(z, gamma, m)` | `−Σ_{j ≤ min(m, K)} p_(j)^γ (1 − p_(j))^γ` over the largest probabilities | Liu et al. 2023 |
| `odin_score_from_logits(z, t)` | `max_k softmax(z / T)_k`; with the input step: `odin_score(model, x, t, eps)` | Liang et al. 2018 |
| `mahalanobis_score(h, means, white)` | `−min_c (h − μ_c)ᵀ Σ⁻¹ (h − μ_c)` (class means, tied covariance) | Lee et al. 2018 |
| `knn_score(h, bank, k)` | `−‖h/‖h‖ − b_(k)‖₂`, minus the distance to the k-th nearest L2-normalised training feature | Sun et al. 2022 |
| `react_score(h, c, W, b, t)` | `t · logsumexp((W·min(h, c) + b) / t)`, `c` a percentile of the training features | Sun et al. 2021 |
| `vim_score(h, z, u, r, alpha)` | `logsumexp_k z_k − α‖(h − u) R‖`, R spanning the residual of the principal subspace | Wang et al. 2022 |
| `klm_score(z, templates)` | `−min_c KL(softmax(z) ‖ template_c)` | Hendrycks et al. 2022 |

Example:
    >>> import numpy as np
    >>> from rulab.detectors import functional as D
    >>> from rulab.metrics import auroc
    >>> s_id, s_ood = D.energy_score(logits_id), D.energy_score(logits_ood)     # NumPy in, NumPy out
    >>> auroc(s_id, s_ood)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from rulab.detectors import energy, entropy, gen, klm, knn, mahalanobis, maxlogit, msp, odin, react, vim
from rulab.detectors import temperature as _temperature

__all__ = [
    "numpy_compatible",
    "msp_score",
    "maxlogit_score",
    "energy_score",
    "entropy_score",
    "gen_score",
    "odin_score_from_logits",
    "odin_score",
    "class_means",
    "tied_covariance",
    "whitening",
    "mahalanobis_score",
    "knn_score",
    "feature_percentiles",
    "react_score",
    "vim_dim",
    "vim_fit",
    "vim_score",
    "class_mean_softmax",
    "klm_score",
    "fit_temperature",
]

F = TypeVar("F", bound=Callable[..., Any])


def _to_torch(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


def _to_numpy(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    if isinstance(v, tuple):
        return tuple(_to_numpy(x) for x in v)
    if isinstance(v, list):
        return [_to_numpy(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_numpy(x) for k, x in v.items()}
    return v


def numpy_compatible(fn: F) -> F:
    """Wrap a tensor function so that NumPy arrays may be passed for any argument; when one was, tensors in the
    result are returned as NumPy arrays (scalars stay Python numbers)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        had_numpy = any(isinstance(a, np.ndarray) for a in (*args, *kwargs.values()))
        out = fn(*(_to_torch(a) for a in args), **{k: _to_torch(v) for k, v in kwargs.items()})
        return _to_numpy(out) if had_numpy else out

    return wrapper  # type: ignore[return-value]


msp_score = numpy_compatible(msp.msp_score)
maxlogit_score = numpy_compatible(maxlogit.maxlogit_score)
energy_score = numpy_compatible(energy.energy_score)
entropy_score = numpy_compatible(entropy.entropy_score)
gen_score = numpy_compatible(gen.gen_score)
odin_score_from_logits = numpy_compatible(odin.odin_score_from_logits)
odin_score = numpy_compatible(odin.odin_score)
class_means = numpy_compatible(mahalanobis.class_means)
tied_covariance = numpy_compatible(mahalanobis.tied_covariance)
whitening = numpy_compatible(mahalanobis.whitening)
mahalanobis_score = numpy_compatible(mahalanobis.mahalanobis_score)
knn_score = numpy_compatible(knn.knn_score)
feature_percentiles = numpy_compatible(react.feature_percentiles)
react_score = numpy_compatible(react.react_score)
vim_dim = vim.vim_dim
vim_fit = numpy_compatible(vim.vim_fit)
vim_score = numpy_compatible(vim.vim_score)
class_mean_softmax = numpy_compatible(klm.class_mean_softmax)
klm_score = numpy_compatible(klm.klm_score)
fit_temperature = numpy_compatible(_temperature.fit_temperature)
