"""Calibration metrics: binned calibration error (RMS / MAD / ECE / MCE), Soft-F1, NLL, Brier, MMC, accuracy.

Conventions (convention 4 in docs/conventions.md; definitions in docs/metrics.md): ``confidence: [N]`` is the top-label
probability (MSP) in [0, 1], ``correct: [N]`` is 1 where the prediction was right. Torch tensors or NumPy
arrays are accepted; work happens on the input's device with float64 accumulation; results are fractions
(Python floats). Bad input raises :class:`rulab.errors.InputError`.

Binning (:func:`calibration_error`, :func:`reliability_bins`):

* ``"adaptive"`` (equal mass, Hendrycks' ``calib_err`` in W1/OE ``utils/calibration_tools.py``): stable sort by confidence, consecutive chunks
  of ``bin_size`` examples, the remainder ``N mod bin_size`` merged into the last (highest-confidence) chunk.
  With ``N < bin_size`` all examples form one bin. ``drop_last_bin=True`` reproduces the W1/OE bug: the
  highest-confidence bin is left out of the sum while the weights ``|B|/N`` still count its members.
* ``"uniform"`` (equal width, Guo et al. ECE / torchmetrics 0.x as W2's code uses it): ``n_bins`` bins ``(lo, hi]`` on
  [0, 1] with edges ``linspace(0, 1, n_bins + 1)`` in the confidences' dtype; the first bin is closed at 0 and
  ``confidence == 1.0`` falls in the last bin. Empty bins are skipped.

For bin ``b`` with ``d_b = |mean(conf_b) - mean(correct_b)|`` and weight ``w_b = |B_b| / N``:
``l2 = sqrt(sum_b w_b d_b^2)`` (RMS), ``l1 = sum_b w_b d_b`` (MAD for adaptive, ECE for uniform),
``max = max_b d_b`` (MCE).
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F

from rulab.errors import InputError
from rulab.metrics._checks import as_tensor, confidences_1d, correct_1d, labels_1d, logits_2d

__all__ = [
    "ReliabilityBins",
    "reliability_bins",
    "calibration_error",
    "ood_calibration",
    "soft_f1",
    "nll",
    "brier",
    "mmc",
    "accuracy",
    "calibration_metrics",
]

ArrayLike = Any  # torch.Tensor | np.ndarray
Norm = Literal["l1", "l2", "max"]
Binning = Literal["adaptive", "uniform"]


class ReliabilityBins(NamedTuple):
    """Per-bin statistics for a reliability diagram; every field is a float64 ``[B]`` tensor (``count``: int64).

    For uniform binning ``lower``/``upper`` are the bin edges and all ``n_bins`` bins are present (empty bins
    have ``count == 0`` and NaN means); for adaptive binning they are the smallest and largest confidence in
    the bin.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    count: torch.Tensor
    mean_conf: torch.Tensor
    accuracy: torch.Tensor


def _pair(confidence: ArrayLike, correct: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    conf = confidences_1d(confidence)
    return conf, correct_1d(correct, conf.numel(), conf.device)


def _check_binning(binning: str, bin_size: int, n_bins: int) -> None:
    if binning not in ("adaptive", "uniform"):
        raise InputError(f"binning must be 'adaptive' or 'uniform', got {binning!r}")
    # both are checked whatever the binning: a nonsense value is a mistake even where it is not used
    for key, value in (("bin_size", bin_size), ("n_bins", n_bins)):
        whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
        if isinstance(value, bool) or not whole or value < 1:
            raise InputError(f"{key} must be a positive integer, got {value!r}")


def _adaptive(conf: torch.Tensor, corr: torch.Tensor, bin_size: int) -> ReliabilityBins:
    n = conf.numel()
    order = torch.sort(conf, stable=True).indices
    c = conf[order].to(torch.float64)
    y = corr[order]
    full = max(n // bin_size, 1) - 1  # chunks of exactly bin_size; the last chunk takes the rest
    cut = full * bin_size

    def per_bin(v: torch.Tensor) -> torch.Tensor:
        head = v[:cut].reshape(full, bin_size).sum(dim=1)
        return torch.cat([head, v[cut:].sum().reshape(1)])

    count = torch.full((full + 1,), bin_size, dtype=torch.int64, device=conf.device)
    count[-1] = n - cut
    starts = torch.arange(full + 1, device=conf.device) * bin_size
    ends = torch.cat([starts[1:] - 1, torch.tensor([n - 1], device=conf.device)])
    return ReliabilityBins(c[starts], c[ends], count, per_bin(c) / count, per_bin(y) / count)


def _uniform(conf: torch.Tensor, corr: torch.Tensor, n_bins: int) -> ReliabilityBins:
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
    # bucketize(right=False) gives i with edges[i-1] < x <= edges[i]: bin (lo, hi] = i - 1; x == 0 -> bin 0
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp_(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins)
    zeros = torch.zeros(n_bins, dtype=torch.float64, device=conf.device)
    sum_c = zeros.index_add(0, idx, conf.to(torch.float64))
    sum_y = zeros.index_add(0, idx, corr)
    e = edges.to(torch.float64)
    return ReliabilityBins(e[:-1], e[1:], count, sum_c / count, sum_y / count)


def reliability_bins(
    confidence: ArrayLike,
    correct: ArrayLike,
    binning: Binning = "uniform",
    *,
    n_bins: int = 15,
    bin_size: int = 100,
) -> ReliabilityBins:
    """Per-bin count, mean confidence and accuracy, for a reliability diagram (see the module docstring).

    Args:
        confidence: ``[N]`` top-label confidence in [0, 1].
        correct: ``[N]`` 1 (True) where the prediction was right, else 0.
        binning: ``"uniform"`` (``n_bins`` equal-width bins) or ``"adaptive"`` (chunks of ``bin_size``).
        n_bins: number of uniform bins.
        bin_size: examples per adaptive bin.
    """
    _check_binning(binning, bin_size, n_bins)
    conf, corr = _pair(confidence, correct)
    return _adaptive(conf, corr, int(bin_size)) if binning == "adaptive" else _uniform(conf, corr, int(n_bins))


def calibration_error(
    confidence: ArrayLike,
    correct: ArrayLike,
    norm: Norm = "l2",
    binning: Binning = "adaptive",
    bin_size: int = 100,
    n_bins: int = 15,
    drop_last_bin: bool = False,
) -> float:
    """Binned calibration error (W1/OE ``utils/calibration_tools.py``; W2 report §4.4.2, Eq. (1); docs/metrics.md).

    ``norm="l2", binning="adaptive"`` is Hendrycks' RMS calibration error, ``"l1"`` adaptive is MAD,
    ``"l1"`` uniform with 15 bins is the usual ECE, ``"max"`` uniform is MCE, ``"l2"`` uniform with 10 bins is
    W2's torchmetrics RMSCE. See the module docstring for the binning rules.

    Args:
        confidence: ``[N]`` top-label confidence in [0, 1].
        correct: ``[N]`` 1 (True) where the prediction was right, else 0.
        norm: ``"l1"``, ``"l2"`` or ``"max"``.
        binning: ``"adaptive"`` or ``"uniform"``.
        bin_size: examples per adaptive bin (N < bin_size gives one bin).
        n_bins: number of uniform bins.
        drop_last_bin: W1/OE parity (adaptive only): leave the highest-confidence bin out of the sum, keeping
            N (all examples) in the weights. With a single bin the result is then 0.

    Returns:
        The calibration error, a fraction in [0, 1].
    """
    if norm not in ("l1", "l2", "max"):
        raise InputError(f"norm must be 'l1', 'l2' or 'max', got {norm!r}")
    if drop_last_bin and binning != "adaptive":
        raise InputError("drop_last_bin reproduces the W1/OE adaptive-binning bug; use it only with binning='adaptive'")
    bins = reliability_bins(confidence, correct, binning, n_bins=n_bins, bin_size=bin_size)
    n = int(bins.count.sum())
    keep = bins.count > 0
    if drop_last_bin:
        keep[-1] = False
    diff = (bins.mean_conf - bins.accuracy)[keep].abs()
    weight = bins.count[keep].to(torch.float64) / n
    if norm == "max":
        return float(diff.max()) if diff.numel() else 0.0
    if norm == "l1":
        return float((weight * diff).sum())
    return math.sqrt(float((weight * diff.square()).sum()))


def ood_calibration(conf_id: ArrayLike, correct_id: ArrayLike, conf_ood: ArrayLike, **kwargs: Any) -> float:
    """Calibration error of ID examples pooled with OOD examples counted as wrong (OE's ``test_calibration.py``
    with ``utils/calibration_tools.py``).

    OOD examples are appended with ``correct = 0``; ``kwargs`` go to :func:`calibration_error` (OE parity:
    ``norm="l2"`` or ``"l1"``, adaptive bins of 100, ``drop_last_bin=True``). Use :func:`soft_f1` on the same
    pool for OE's third number.

    Args:
        conf_id: ``[N_id]`` ID confidence in [0, 1].
        correct_id: ``[N_id]`` 1 where the ID prediction was right.
        conf_ood: ``[N_ood]`` OOD confidence in [0, 1].
    """
    cid, yid = _pair(conf_id, correct_id)
    cood = confidences_1d(conf_ood, "conf_ood").to(cid.device)
    dtype = torch.promote_types(cid.dtype, cood.dtype)
    conf = torch.cat([cid.to(dtype), cood.to(dtype)])
    corr = torch.cat([yid, torch.zeros(cood.numel(), dtype=torch.float64, device=cid.device)])
    return calibration_error(conf, corr, **kwargs)


def soft_f1(confidence: ArrayLike, correct: ArrayLike) -> float:
    """Soft F1 with errors as the positive class (W1/OE ``utils/calibration_tools.py``).

    ``2 sum (1 - c)(1 - correct) / sum [(1 - c) + (1 - correct)]``. When the denominator is 0 (every example
    right with confidence 1) the result is 0.0, scikit-learn's ``zero_division`` default for F1.

    Args:
        confidence: ``[N]`` top-label confidence in [0, 1].
        correct: ``[N]`` 1 (True) where the prediction was right, else 0.
    """
    conf, corr = _pair(confidence, correct)
    u = 1.0 - conf.to(torch.float64)
    wrong = 1.0 - corr
    den = float((u + wrong).sum())
    return 2.0 * float((u * wrong).sum()) / den if den > 0 else 0.0


def _logits_labels(logits: ArrayLike, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    z = logits_2d(logits)
    return z, labels_1d(labels, z.shape[0], z.shape[1], z.device)


def nll(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood (natural log) of the labels under ``softmax(logits)``, in float64.

    Args:
        logits: ``[N, K]`` unnormalised scores.
        labels: ``[N]`` class indices in [0, K).
    """
    z, y = _logits_labels(logits, labels)
    return float(F.cross_entropy(z.to(torch.float64), y))


def brier(scores: ArrayLike, labels: ArrayLike, *, from_logits: bool | None = None) -> float:
    """Multi-class Brier score: ``mean_i sum_k (p_ik - 1[y_i = k])^2`` (range [0, 2]; Brier 1950's original form).

    Args:
        scores: ``[N, K]`` probabilities or logits.
        labels: ``[N]`` class indices in [0, K).
        from_logits: whether ``scores`` are logits (softmax is applied). ``None`` decides from the values:
            probabilities if every entry lies in [0, 1] and every row sums to 1 (within 1e-4), else logits.
    """
    z, y = _logits_labels(scores, labels)
    z = z.to(torch.float64)
    if from_logits is None:
        from_logits = not (bool(((z >= 0) & (z <= 1)).all()) and bool(((z.sum(dim=1) - 1).abs() <= 1e-4).all()))
    p = z.softmax(dim=1) if from_logits else z
    onehot = F.one_hot(y, z.shape[1]).to(torch.float64)
    return float((p - onehot).square().sum(dim=1).mean())


def mmc(confidence: ArrayLike) -> float:
    """Mean max-confidence (W3, ``analysis.py``): the mean of ``confidence: [N]`` (values in [0, 1])."""
    return float(confidences_1d(confidence).to(torch.float64).mean())


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of correct predictions.

    Args:
        predictions: ``[N, K]`` logits or probabilities (argmax is taken) or ``[N]`` predicted class indices.
        labels: ``[N]`` class indices.
    """
    p = as_tensor(predictions, "predictions")
    if p.ndim == 2:
        z, y = _logits_labels(p, labels)
        return float((z.argmax(dim=1) == y).to(torch.float64).mean())
    if p.ndim != 1 or p.numel() == 0 or p.is_floating_point() or p.is_complex():
        raise InputError(
            f"predictions must be [N, K] scores or [N] integer class indices, got {p.dtype} {tuple(p.shape)}"
        )
    y = as_tensor(labels, "labels")
    if y.shape != p.shape:
        raise InputError(f"labels must have one entry per prediction ({p.numel()}), got shape {tuple(y.shape)}")
    return float((p == y.to(p.device)).to(torch.float64).mean())


def calibration_metrics(logits: ArrayLike, labels: ArrayLike, *, drop_last_bin: bool = False) -> dict[str, float]:
    """Accuracy and every calibration metric of the results store (docs/results-store.md), from logits.

    Apply temperature scaling (``rulab.detectors.temperature.TemperatureScaler``) to ``logits`` first if wanted.

    Args:
        logits: ``[N, K]`` logits.
        labels: ``[N]`` class indices.
        drop_last_bin: W1/OE parity for ``rms`` and ``mad`` (see :func:`calibration_error`).

    Returns:
        ``acc``, ``nll``, ``brier``, ``ece`` (l1, uniform 15), ``mce`` (max, uniform 15), ``rms`` (l2, adaptive
        100), ``mad`` (l1, adaptive 100), ``rms_uniform10`` (l2, uniform 10; W2), ``soft_f1``, ``mmc``: fractions.
    """
    z, y = _logits_labels(logits, labels)
    p = z.to(torch.float64).softmax(dim=1)
    conf, pred = p.max(dim=1)
    correct = (pred == y).to(torch.float64)
    return {
        "acc": float(correct.mean()),
        "nll": nll(z, y),
        "brier": brier(p, y, from_logits=False),
        "ece": calibration_error(conf, correct, "l1", "uniform", n_bins=15),
        "mce": calibration_error(conf, correct, "max", "uniform", n_bins=15),
        "rms": calibration_error(conf, correct, "l2", "adaptive", bin_size=100, drop_last_bin=drop_last_bin),
        "mad": calibration_error(conf, correct, "l1", "adaptive", bin_size=100, drop_last_bin=drop_last_bin),
        "rms_uniform10": calibration_error(conf, correct, "l2", "uniform", n_bins=10),
        "soft_f1": soft_f1(conf, correct),
        "mmc": float(conf.mean()),
    }
