"""Parity ports of the original papers' OOD metric code, kept beside (not inside) the exact metrics of :mod:`.ood`.

Parity functions reproduce the original code of the four reproduced works (W1-W4) bit for bit where possible:
:func:`odin_grid_metrics` (ODIN ``code/calMetric.py``), :func:`hein_fpr95` (W3 ``analysis.py``) and
:func:`hendrycks_measures` / :func:`hendrycks_fpr_and_fdr_at_recall` (W1/OE ``utils/display_results.py``).
They run in NumPy on the CPU, like the originals.

Conventions are those of :mod:`.ood` (scores are confidences, higher = more in-distribution; ``(s_id, s_ood)``;
results are fractions); the rules, including their quirks, are the originals'.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from rulab.errors import InputError
from rulab.metrics._checks import scores_1d
from rulab.metrics.ood import ArrayLike, ood_metrics

__all__ = ["odin_grid_metrics", "hein_fpr95", "hendrycks_fpr_and_fdr_at_recall", "hendrycks_measures"]


def _numpy_scores(x: ArrayLike, name: str, dtype: Any = None) -> np.ndarray:
    t = scores_1d(x, name)
    arr = t.cpu().numpy()
    return arr.astype(dtype) if dtype is not None else arr


def _sequential_sum(terms: np.ndarray) -> float:
    """Left-to-right float64 sum (the order of the originals' ``+=`` loops); 0.0 for no terms."""
    return float(np.cumsum(terms)[-1]) if terms.size else 0.0


def odin_grid_metrics(
    s_in: ArrayLike,
    s_out: ArrayLike,
    start: float,
    end: float,
    n: int = 100000,
    variant: Literal["odin", "baseline"] = "odin",
) -> dict[str, float]:
    """ODIN's threshold-grid metrics, reproducing ODIN's ``code/calMetric.py`` (parity only).

    Thresholds are ``np.arange(start, end, (end - start) / n)`` (the original's hard-coded ranges: baseline
    CIFAR-10 [0.1, 1), CIFAR-100 [0.01, 1); ODIN T=1000 CIFAR-10 [0.1, 0.12), CIFAR-100 [0.01, 0.0104)). Scores
    outside the range silently bias every number, as in the original. With ``TPR(δ) = #{ID: s >= δ}/N_in``:

    * ``fpr95_id``: mean of ``#{OOD: s > δ}/N_out`` (strict) over the grid points with 0.9495 <= TPR <= 0.9505.
    * ``detection_error``: min over δ of ``0.5 #{ID: s < δ}/N_in + 0.5 #{OOD: s > δ}/N_out`` (starting from 1.0).
    * ``auroc``: ``sum (FPR_prev - FPR(δ)) TPR(δ)`` over increasing δ, FPR_prev starting at 1.0, plus
      ``FPR_last TPR_last``; FPR(δ) counts OOD with ``s >= δ`` in the ``"odin"`` branch and ``s > δ`` in the
      ``"baseline"`` branch (the original's inconsistency).
    * ``aupr_in``: rate-based precision ``tp/(tp+fp)`` with ``tp = TPR(δ)``, ``fp = #{OOD: s >= δ}/N_out``,
      skipping ``tp + fp = 0``; ``sum (R_prev - R) P`` (R_prev starting at 1.0) plus ``R_last P_last``.
    * ``aupr_out``: δ runs down from ``end`` (``np.arange(end, start, -gap)``), ``tp = #{OOD: s < δ}/N_out``,
      ``fp = #{ID: s < δ}/N_in``, stopping at the first ``tp + fp = 0``; same accumulation.

    Sums are accumulated left to right in float64 like the original loops. Where the original would divide
    by zero (no grid point in the TPR window, facebookresearch/odin#21) or read an unset variable, this raises
    :class:`InputError` instead.

    Args:
        s_in: ``[N_in]`` ID confidence scores (the original's ``confidence_*_In.txt`` column 2).
        s_out: ``[N_out]`` OOD confidence scores.
        start: lowest threshold.
        end: threshold range end (exclusive).
        n: number of grid steps; ``gap = (end - start) / n``.
        variant: ``"odin"`` (T, ε branch) or ``"baseline"`` (T=1 branch); only changes the AUROC's OOD count.

    Returns:
        ``fpr95_id``, ``detection_error``, ``auroc``, ``aupr_in``, ``aupr_out`` (fractions).
    """
    if variant not in ("odin", "baseline"):
        raise InputError(f"variant must be 'odin' or 'baseline', got {variant!r}")
    start, end, n = float(start), float(end), int(n)
    if not (end > start and n > 0):
        raise InputError(f"the ODIN grid needs start < end and n > 0, got start={start}, end={end}, n={n}")
    x = np.sort(_numpy_scores(s_in, "s_in", np.float64))
    y = np.sort(_numpy_scores(s_out, "s_out", np.float64))
    n_in, n_out = float(len(x)), float(len(y))
    gap = (end - start) / n
    up = np.arange(start, end, gap)

    def n_ge(a: np.ndarray, d: np.ndarray) -> np.ndarray:
        return len(a) - np.searchsorted(a, d, side="left")

    def n_gt(a: np.ndarray, d: np.ndarray) -> np.ndarray:
        return len(a) - np.searchsorted(a, d, side="right")

    def n_lt(a: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.searchsorted(a, d, side="left")

    tpr = n_ge(x, up) / n_in
    fpr_strict = n_gt(y, up) / n_out
    fpr_ge = n_ge(y, up) / n_out

    # FPR at TPR 95%: window average
    window = (tpr <= 0.9505) & (tpr >= 0.9495)
    total = int(window.sum())
    if total == 0:
        raise InputError(
            f"no ODIN grid threshold in [{start}, {end}) gives a TPR in [0.9495, 0.9505]; widen the range or raise n"
        )
    fpr95 = _sequential_sum(fpr_strict[window]) / float(total)

    # detection error: min rule
    det = float(np.min(np.minimum(1.0, (n_lt(x, up) / n_in + fpr_strict) / 2.0)))

    # AUROC
    fpr_roc = fpr_ge if variant == "odin" else fpr_strict
    fpr_prev = np.concatenate([[1.0], fpr_roc[:-1]])
    au = _sequential_sum((-fpr_roc + fpr_prev) * tpr) + fpr_roc[-1] * tpr[-1]

    def accumulate(tp: np.ndarray, fp: np.ndarray, what: str) -> float:
        if tp.size == 0:
            raise InputError(
                f"no ODIN grid threshold in [{start}, {end}) has a defined {what} precision; check the range"
            )
        precision = tp / (tp + fp)
        recall = tp
        recall_prev = np.concatenate([[1.0], recall[:-1]])
        return float(_sequential_sum((recall_prev - recall) * precision) + recall[-1] * precision[-1])

    keep = (tpr + fpr_ge) != 0
    pr_in = accumulate(tpr[keep], fpr_ge[keep], "AUPR-In")

    down = np.arange(end, start, -gap)
    tp_out = n_lt(y, down) / n_out
    fp_out = n_lt(x, down) / n_in
    zero = np.flatnonzero((tp_out + fp_out) == 0)
    stop = int(zero[0]) if zero.size else len(down)
    pr_out = accumulate(tp_out[:stop], fp_out[:stop], "AUPR-Out")

    return {"fpr95_id": fpr95, "detection_error": det, "auroc": float(au), "aupr_in": pr_in, "aupr_out": pr_out}


def hein_fpr95(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """W3's FPR@95: fraction of OOD with ``s >= np.percentile(s_id, 5)`` (linear interpolation; W3's ``analysis.py``).

    Computed in NumPy in the scores' own dtype (half precision upcast to float32), like the original.

    Args:
        s_id: ``[N_id]`` ID confidence scores (MSP in W3).
        s_ood: ``[N_ood]`` OOD confidence scores.
    """
    a = _numpy_scores(s_id, "s_id")
    b = _numpy_scores(s_ood, "s_ood")
    t = np.percentile(a, 5)
    return float(np.mean(b >= t))


def hendrycks_fpr_and_fdr_at_recall(s_id: ArrayLike, s_ood: ArrayLike, recall_level: float = 0.95) -> float:
    """W1/OE's FPR95: port of ``fpr_and_fdr_at_recall`` in W1/OE ``uncertainty/utils/display_results.py`` (parity only).

    OOD is the positive class with anomaly score ``-s``. Scores are sorted descending (reversed stable
    mergesort), the curve runs over distinct thresholds up to the first full recall, and the cutoff is the
    point whose OOD recall is CLOSEST to ``recall_level`` (it may lie below it; the first such point, i.e. the
    highest recall, wins ties). Returns the fraction of ID examples flagged as OOD there. The original's FDR
    output is commented out, so only the FPR is returned.

    Args:
        s_id: ``[N_id]`` ID confidence scores (the original's ``in_score`` is ``-s_id``).
        s_ood: ``[N_ood]`` OOD confidence scores.
        recall_level: target OOD recall.
    """
    pos = -_numpy_scores(s_ood, "s_ood")
    neg = -_numpy_scores(s_id, "s_id")
    y_score = np.concatenate([pos, neg])
    y_true = np.zeros(len(y_score), dtype=bool)
    y_true[: len(pos)] = True

    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc]
    y_true = y_true[desc]
    distinct_value_indices = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct_value_indices, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    recall = tps / tps[-1]
    last_ind = tps.searchsorted(tps[-1])
    sl = slice(last_ind, None, -1)
    recall, fps = np.r_[recall[sl], 1], np.r_[fps[sl], 0]
    cutoff = np.argmin(np.abs(recall - recall_level))
    return float(fps[cutoff] / np.sum(np.logical_not(y_true)))


def hendrycks_measures(s_id: ArrayLike, s_ood: ArrayLike, recall_level: float = 0.95) -> dict[str, float]:
    """W1/OE ``get_measures(out_score, in_score)`` (W1/OE ``uncertainty/utils/display_results.py``; parity only).

    OOD is positive with score ``-s``: the AUROC equals :func:`auroc`, the "AUPR" is :func:`aupr_out` (at the
    caller's OOD:ID ratio, 1:5 in W1), the FPR is :func:`hendrycks_fpr_and_fdr_at_recall` (closest-recall rule).

    Returns:
        ``auroc``, ``aupr_out`` and ``fpr_closest`` (fractions).
    """
    m = ood_metrics(s_id, s_ood)
    return {
        "auroc": m["auroc"],
        "aupr_out": m["aupr_out"],
        "fpr_closest": hendrycks_fpr_and_fdr_at_recall(s_id, s_ood, recall_level),
    }
