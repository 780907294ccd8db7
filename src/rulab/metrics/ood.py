"""Exact OOD-detection metrics on confidence scores (the original papers' metric code is in :mod:`.parity`).

Conventions (conventions 2-3 in docs/conventions.md; definitions in docs/metrics.md):

* Scores are confidences: **higher = more in-distribution** (MSP, ODIN score, -energy, ...). Every function
  takes ``(s_id, s_ood)``: ``s_id: [N_id]`` scores of in-distribution examples, ``s_ood: [N_ood]`` scores of
  out-of-distribution examples (torch tensors or NumPy arrays, any real dtype, any device).
* AUROC and AUPR-In treat ID as the positive class with score ``s``; AUPR-Out treats OOD as positive with
  score ``-s``. A threshold ``t`` accepts (calls ID) every example with ``s >= t``.
* Metrics are exact: one sort of the pooled scores, every distinct score is a threshold, ties are grouped
  the way scikit-learn groups them (AUROC counts an ID/OOD tie as 1/2; average precision is the step sum
  ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds, no interpolation). Counts are accumulated in
  float64 (exact integers up to 2**53) on the input's device. Results are Python floats (fractions).
* Bad input (empty side, NaN/inf, not 1-D) raises :class:`rulab.errors.InputError`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from rulab.errors import InputError
from rulab.metrics._checks import check_finite, scores_1d

__all__ = [
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr_at_tpr",
    "fpr95_id",
    "fpr95_ood",
    "detection_error",
    "roc_curve",
    "ood_metrics",
]

ArrayLike = Any  # torch.Tensor | np.ndarray


class _Curve:
    """Cumulative ID/OOD counts at every distinct score, from one descending sort of the pooled scores.

    Group ``g`` holds all examples whose score equals ``thresholds[g]`` (strictly decreasing in ``g``);
    ``tps[g]`` / ``fps[g]`` count the ID / OOD examples with ``s >= thresholds[g]`` and ``cnt = tps + fps``
    (float64 ``[G]``, exact integers below 2**53).

    Written for 1e7 scores: one sort, no Python loops, and large buffers are reused rather than allocated
    afresh (a fresh 80 MB CPU tensor costs ~30 ms of page faults, twice the elementwise pass that fills it):
    the sort's int64 index buffer becomes the float64 cumulative-count buffer and then ``cnt``. The sort
    itself runs on integer keys with the same order as the scores (:func:`_descending_keys`), which PyTorch
    sorts with a radix sort on the CPU, about twice as fast as sorting the floats.
    :meth:`summary` overwrites ``tps``; call :meth:`fpr_at_tpr` first.

    Args:
        keep_thresholds: keep the distinct scores (for :func:`roc_curve`); otherwise their buffers are reused.
    """

    def __init__(self, s_id: ArrayLike, s_ood: ArrayLike, keep_thresholds: bool = False) -> None:
        a = scores_1d(s_id, "s_id", finite=False)
        b = scores_1d(s_ood, "s_ood", finite=False)
        if a.device != b.device:
            raise InputError(f"s_id is on {a.device} but s_ood is on {b.device}; move both to the same device")
        dtype = torch.promote_types(a.dtype, b.dtype)
        x = torch.cat([a.to(dtype), b.to(dtype)])
        self.n_id, self.n_ood = a.numel(), b.numel()
        n = x.numel()
        dev = x.device
        keys, order = torch.sort(_descending_keys(x), stable=True)
        # NaN and inf get the most extreme keys, so the two ends of the sort show whether any are present
        if not bool(torch.isfinite(x[order[[0, -1]]]).all()):
            check_finite(a, "s_id")
            check_finite(b, "s_ood")
        values = x[order] if keep_thresholds else None
        del x
        is_id = order < self.n_id
        work = order.view(torch.float64)  # reuse the index buffer (no longer needed) for float64 counts
        del order
        torch.cumsum(is_id, 0, dtype=torch.float64, out=work)  # work[i] = #ID among the first i + 1
        del is_id
        # group ends: positions whose score differs from the next one, plus the last position
        is_end = torch.empty(n, dtype=torch.bool, device=dev)
        torch.ne(keys[1:], keys[:-1], out=is_end[:-1])
        is_end[-1] = True
        del keys
        self._spare: list[torch.Tensor] = []
        if bool(is_end.all()):  # no ties: every position is its own threshold
            self.thresholds = values
            self.tps = work
            self.cnt = torch.arange(1, n + 1, dtype=torch.float64, device=dev)
        else:
            last = torch.nonzero(is_end).squeeze(1)
            del is_end
            self.thresholds = values[last] if keep_thresholds else None
            self.tps = torch.index_select(work, 0, last)
            self.cnt = work[: last.numel()].copy_(last).add_(1)
            self._spare.append(last.view(torch.float64))  # int64 -> float64 scratch, same size
        del values
        self.fps = torch.sub(self.cnt, self.tps, out=self._buffer())

    def _buffer(self) -> torch.Tensor:
        """A float64 ``[G]`` scratch buffer: a spare one if any, else a new one."""
        return self._spare.pop() if self._spare else torch.empty_like(self.tps)

    @staticmethod
    def _shifted_diff(v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out[g] = v[g] - v[g-1]`` with ``v[-1] = 0``."""
        torch.sub(v[1:], v[:-1], out=out[1:])
        out[0] = v[0]
        return out

    def summary(self) -> dict[str, float]:
        """AUROC, AUPR-In, AUPR-Out and detection error from the group counts (float64). Overwrites ``tps``."""
        T, C, F = self.tps, self.cnt, self.fps
        n1, n0 = self.n_id, self.n_ood
        n = n1 + n0
        s1, s2 = self._buffer(), self._buffer()

        # AUPR-In: sum_g (R_g - R_{g-1}) P_g with recall R_g = T_g / n1 and precision P_g = T_g / C_g
        torch.div(T, C, out=s2)
        pr_in = float(torch.dot(self._shifted_diff(T, s1), s2)) / n1

        # detection error: 0.5 (1 - TPR) + 0.5 FPR = 0.5 + 0.5 (F/n0 - T/n1): min over g of the integer
        # F n1 - T n0; the trivial thresholds (accept nothing / everything) give 0.5
        torch.mul(F, n1, out=s1).sub_(T, alpha=n0)
        gap = float(torch.min(s1)) / (n1 * n0)
        det = 0.5 + 0.5 * min(gap, 0.0)

        # AUROC: trapezoid rule on the ROC curve (0,0) -> ... -> (1,1); a tie group is a diagonal step, so an
        # ID/OOD tie counts 1/2. Every term and partial sum is an integer below 2**53: exact in float64.
        dF = self._shifted_diff(F, s1)  # OOD examples in group g
        torch.add(T[1:], T[:-1], out=s2[1:])
        s2[0] = T[0]
        au = float(torch.dot(dF, s2)) / (2.0 * n1 * n0)

        # AUPR-Out (OOD positive on -s): the same groups in ascending s; at group g, s <= its score holds for
        # n0 - F_{g-1} OOD among n - C_{g-1} examples, and the recall step is dF_g / n0. T is free now.
        torch.add(F.new_tensor(n0), F[:-1], alpha=-1, out=s2[1:])
        s2[0] = n0
        torch.add(C.new_tensor(n), C[:-1], alpha=-1, out=T[1:])
        T[0] = n
        pr_out = float(torch.dot(dF, s2.div_(T))) / n0
        self.tps = None  # overwritten
        return {"auroc": au, "aupr_in": pr_in, "aupr_out": pr_out, "detection_error": det}

    def fpr_at_tpr(self, tpr: float, positive: str) -> float:
        if positive == "id":
            # first group with T / n1 >= tpr; FPR = F / n0 there
            k = _min_count(tpr, self.n_id)
            g = int(torch.searchsorted(self.tps, self.tps.new_tensor([float(k)])))
            return float(self.fps[g]) / self.n_ood
        # OOD positive on -s: the last group g with n0 - F_{g-1} >= k OOD at or below its score, i.e. the
        # first g with F_g > n0 - k; FPR = (n1 - T_{g-1}) / n1 (ID at or below that score)
        k = _min_count(tpr, self.n_ood)
        g = int(torch.searchsorted(self.fps, self.fps.new_tensor([float(self.n_ood - k)]), right=True))
        return (self.n_id - (float(self.tps[g - 1]) if g > 0 else 0.0)) / self.n_id


def _descending_keys(x: torch.Tensor) -> torch.Tensor:
    """Integer keys whose ASCENDING order is the DESCENDING order of the float scores ``x: [N]``.

    Reinterprets the IEEE-754 bits: a non-negative float maps to ``~bits`` and a negative one to ``bits`` with
    the sign bit flipped. Equal scores get equal keys (``x`` is first turned from -0.0 into +0.0, in place,
    so both zeros tie as they compare equal); +NaN and +inf get the smallest keys, -inf and -NaN the largest.
    """
    itype, top = (torch.int32, 31) if x.dtype == torch.float32 else (torch.int64, 63)
    bits = x.add_(0.0).view(itype)  # -0.0 + 0.0 = +0.0
    mask = bits >> top  # 0 for s >= 0, -1 (all ones) for s < 0
    mask &= (1 << top) - 1  # 0 or 0x7f..f
    mask.bitwise_not_()  # all ones, or only the sign bit
    return mask.bitwise_xor_(bits)


def _min_count(rate: float, n: int) -> int:
    """Smallest integer ``k`` with ``k / n >= rate`` in float64 (the comparison scikit-learn's rates make)."""
    k = math.ceil(rate * n)
    while k > 0 and (k - 1) / n >= rate:
        k -= 1
    while k / n < rate:
        k += 1
    return k


def _check_tpr(tpr: float) -> float:
    tpr = float(tpr)
    if not 0.0 < tpr <= 1.0:
        raise InputError(f"tpr must be a fraction in (0, 1], got {tpr}; write 0.95, not 95")
    return tpr


def auroc(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """Area under the ROC curve with ID as positive and score ``s`` (convention 2).

    Equals scikit-learn's ``roc_auc_score([1]*N_id + [0]*N_ood, cat(s_id, s_ood))`` and the Mann-Whitney
    statistic P(s_id > s_ood) + 0.5 P(s_id = s_ood); also equal to the OOD-positive AUROC on ``-s`` (W1/OE).

    Args:
        s_id: ``[N_id]`` ID confidence scores (higher = more in-distribution).
        s_ood: ``[N_ood]`` OOD confidence scores.

    Returns:
        AUROC in [0, 1].
    """
    return _Curve(s_id, s_ood).summary()["auroc"]


def aupr_in(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """Average precision with ID as positive and score ``s`` (``aupr_in`` in docs/metrics.md).

    ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (scikit-learn's ``average_precision_score``). Depends
    on the OOD:ID ratio; record :func:`ood_metrics`' ``ood_ratio`` beside it. (OpenOOD v1.5 instead integrates
    the precision-recall curve with the trapezoid rule, ``sklearn.metrics.auc``, which interpolates and gives
    slightly different numbers.)

    Args:
        s_id: ``[N_id]`` ID confidence scores.
        s_ood: ``[N_ood]`` OOD confidence scores.
    """
    return _Curve(s_id, s_ood).summary()["aupr_in"]


def aupr_out(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """Average precision with OOD as positive and score ``-s`` (``aupr_out`` in docs/metrics.md; W1/OE's "AUPR").

    Args:
        s_id: ``[N_id]`` ID confidence scores.
        s_ood: ``[N_ood]`` OOD confidence scores.
    """
    return _Curve(s_id, s_ood).summary()["aupr_out"]


def fpr_at_tpr(s_id: ArrayLike, s_ood: ArrayLike, tpr: float = 0.95, positive: Literal["id", "ood"] = "id") -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches ``tpr`` (convention 3).

    ``positive="id"`` (ODIN/Hein convention, the default ``fpr95_id``): t is the largest threshold with
    ``#{ID: s >= t} / N_id >= tpr`` (t = the ``ceil(tpr N_id)``-th largest ID score); returns
    ``#{OOD: s >= t} / N_ood`` (ties with t are accepted).

    ``positive="ood"`` (OpenOOD v1.5 / pytorch-ood, ``fpr95_ood``): OOD is positive with score ``-s``; t is the
    smallest threshold with ``#{OOD: s <= t} / N_ood >= tpr``; returns ``#{ID: s <= t} / N_id``.

    Both equal ``fpr[searchsorted(tpr_curve, tpr)]`` read off scikit-learn's
    ``roc_curve(..., drop_intermediate=False)`` for the matching positive class. (OpenOOD calls ``roc_curve``
    with the default ``drop_intermediate=True``, which can skip the first qualifying point when it lies inside
    a run of collinear tie groups; the exact value here is the one the definition asks for.)

    Args:
        s_id: ``[N_id]`` ID confidence scores.
        s_ood: ``[N_ood]`` OOD confidence scores.
        tpr: target true-positive rate, a fraction in (0, 1].
        positive: which class is positive: ``"id"`` or ``"ood"``.

    Returns:
        The false-positive rate, a fraction in [0, 1].
    """
    tpr = _check_tpr(tpr)
    if positive not in ("id", "ood"):
        raise InputError(f"positive must be 'id' or 'ood', got {positive!r}")
    return _Curve(s_id, s_ood).fpr_at_tpr(tpr, positive)


def fpr95_id(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """FPR of OOD at 95% TPR of ID (ODIN/Hein convention; the library default). See :func:`fpr_at_tpr`."""
    return fpr_at_tpr(s_id, s_ood, 0.95, "id")


def fpr95_ood(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """Fraction of ID flagged as OOD when 95% of OOD are caught (OpenOOD v1.5 / pytorch-ood). See :func:`fpr_at_tpr`."""
    return fpr_at_tpr(s_id, s_ood, 0.95, "ood")


def detection_error(s_id: ArrayLike, s_ood: ArrayLike) -> float:
    """Minimum over all thresholds of ``0.5 (1 - TPR) + 0.5 FPR`` (convention 3; ODIN's published rule, ``code/calMetric.py``).

    Includes the trivial thresholds (accept nothing / everything), so the result is at most 0.5.

    Args:
        s_id: ``[N_id]`` ID confidence scores.
        s_ood: ``[N_ood]`` OOD confidence scores.
    """
    return _Curve(s_id, s_ood).summary()["detection_error"]


def roc_curve(s_id: ArrayLike, s_ood: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ROC curve with ID as positive, one point per distinct score (for plots).

    Same points as scikit-learn's ``roc_curve(..., drop_intermediate=False)``, starting at ``(0, 0)`` with
    threshold ``+inf``.

    Returns:
        ``(fpr, tpr, thresholds)``: float64 ``[G + 1]``, float64 ``[G + 1]`` and ``[G + 1]`` in the scores'
        dtype (``thresholds`` decreasing), on the scores' device.
    """
    c = _Curve(s_id, s_ood, keep_thresholds=True)
    zero = c.tps.new_zeros(1)
    inf = torch.full((1,), math.inf, dtype=c.thresholds.dtype, device=c.thresholds.device)
    return (
        torch.cat([zero, c.fps / c.n_ood]),
        torch.cat([zero, c.tps / c.n_id]),
        torch.cat([inf, c.thresholds]),
    )


def ood_metrics(s_id: ArrayLike, s_ood: ArrayLike) -> dict[str, float]:
    """Every OOD-detection metric from one sort of the pooled scores.

    Args:
        s_id: ``[N_id]`` ID confidence scores (higher = more in-distribution).
        s_ood: ``[N_ood]`` OOD confidence scores.

    Returns:
        ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95_id``, ``fpr95_ood``, ``detection_error`` (fractions),
        ``ood_ratio`` = N_ood / N_id (AUPR depends on it), ``n_id`` and ``n_ood``.
    """
    c = _Curve(s_id, s_ood)
    fpr_id, fpr_ood = c.fpr_at_tpr(0.95, "id"), c.fpr_at_tpr(0.95, "ood")
    m = c.summary()
    return {
        "auroc": m["auroc"],
        "aupr_in": m["aupr_in"],
        "aupr_out": m["aupr_out"],
        "fpr95_id": fpr_id,
        "fpr95_ood": fpr_ood,
        "detection_error": m["detection_error"],
        "ood_ratio": c.n_ood / c.n_id,
        "n_id": c.n_id,
        "n_ood": c.n_ood,
    }
