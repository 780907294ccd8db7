"""Bootstrap replicates of every per-image metric, and the intervals rulab prints (docs/metrics.md, "Intervals").

A bootstrap resample of ``N`` test images draws ``N`` images with replacement; it is written as a row of counts
``c: [N]`` (how often each image was drawn, summing to ``N``), so a metric of the resample is the metric of the
original images *weighted by their counts*. That is what lets every resample reuse one sort: the scores are sorted
once, and each resample only adds its counts along the sorted order (Efron & Tibshirani 1993, "An Introduction to the
Bootstrap", Ch. 6 and 13, for the percentile interval; Hanley & McNeil 1982 for AUROC as a rank statistic).

* :func:`resample_counts` draws the counts ``int16 [B, N]`` (multinomial, seeded generator).
* :func:`detection_replicates` gives ``[B]`` replicates of AUROC, AUPR-In/Out, FPR at 95% TPR (both conventions) and
  the detection error from one descending sort of the pooled scores: per tie group the resample's ID and OOD counts
  are summed (one ``index_add`` per resample block), cumulated, and read exactly as
  :func:`rulab.metrics.ood.ood_metrics` reads the unweighted counts. ID and OOD are resampled separately (a
  stratified bootstrap), so every resample keeps ``N_id`` and ``N_ood`` and with them the OOD:ID ratio AUPR depends
  on. With all counts equal to 1 the replicates equal :func:`~rulab.metrics.ood.ood_metrics` exactly.
* :func:`calibration_replicates` (accuracy, NLL, Brier, ECE, MCE, RMS, MAD, RMS with 10 bins, Soft-F1, MMC from logits),
  :func:`pooled_calibration_replicates` (OE's ID + OOD pool) and :func:`mean_replicates` (a mean over a set, e.g. MMC)
  do the same for :mod:`rulab.metrics.calibration`: uniform bins are fixed by the confidences, so a resample's bin
  sums are one matrix product; adaptive bins of 100 are cut in the resample's own sorted order (an image drawn ``c``
  times fills ``c`` consecutive places and may straddle two bins). With all counts equal to 1 they equal
  :func:`~rulab.metrics.calibration.calibration_metrics`.
* :func:`percentile_interval` turns replicates into the percentile interval; :func:`t_interval` is the Student t
  interval of a mean over a few values (seeds), with :func:`t_quantile` computed exactly for integer degrees of
  freedom (Abramowitz & Stegun 1964, 26.7.3-26.7.4).

Paired comparisons pass the *same* counts to both models (the same resampled images), so the replicates of a
difference are the differences of the replicates.

All functions are pure: tensors in, float64 tensors or floats out, randomness only from the generator passed in.

One concern, kept in one file: the bootstrap replicates and intervals, which share the resample counts and the
one-sort machinery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rulab.errors import InputError
from rulab.metrics._checks import as_tensor, confidences_1d, correct_1d, labels_1d, logits_2d, scores_1d
from rulab.metrics.ood import _min_count

__all__ = [
    "DEFAULT_RESAMPLES",
    "resample_counts",
    "detection_replicates",
    "CALIBRATION",
    "calibration_replicates",
    "pooled_calibration_replicates",
    "mean_replicates",
    "percentile_interval",
    "t_quantile",
    "t_interval",
]

DEFAULT_RESAMPLES = 1000
"""Resamples per interval: the endpoints' Monte Carlo error is then about 0.08 standard errors (docs/metrics.md;
the cost is measured by ``benchmarks/interval_cost.py``)."""

_BLOCK_ELEMENTS = 1 << 21
"""Resamples are processed in blocks of about this many (resample, example) cells (16 MB of float64)."""

ArrayLike = Any  # torch.Tensor | np.ndarray


# --------------------------------------------------------------------------------------------- resampling


def resample_counts(n: int, n_resamples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """How often each of ``n`` examples is drawn in each of ``n_resamples`` resamples of size ``n`` with replacement.

    Args:
        n: examples in the set.
        n_resamples: resamples ``B``.
        generator: a seeded CPU :class:`torch.Generator` (convention: randomness is explicit).

    Returns:
        ``int16 [B, n]`` counts, each row summing to ``n`` (a multinomial draw; a count above 32,767 would need
        that many draws of one example and does not occur).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"n must be a positive number of examples, got {n!r}")
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 1:
        raise InputError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    n, b = int(n), int(n_resamples)
    out = torch.zeros(b, n, dtype=torch.int16)
    step = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, b, step):
        stop = min(start + step, b)
        idx = torch.randint(0, n, (stop - start, n), generator=generator)
        out[start:stop].scatter_add_(1, idx, torch.ones(1, dtype=torch.int16).expand_as(idx))
    return out


def _counts(counts: ArrayLike, n: int, name: str) -> torch.Tensor:
    """Validated ``[B, n]`` counts (non-negative integers, each row summing to ``n``)."""
    c = as_tensor(counts, name)
    if c.ndim != 2 or c.shape[1] != n or c.shape[0] == 0:
        raise InputError(
            f"{name} must be [B, {n}] resample counts (one column per example), got shape {tuple(c.shape)}"
        )
    if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
        raise InputError(f"{name} must hold integer counts, got {c.dtype}; use resample_counts")
    if bool((c < 0).any()) or bool((c.sum(dim=1, dtype=torch.int64) != n).any()):
        raise InputError(
            f"every row of {name} must be non-negative counts summing to {n} (a resample of the {n} examples); use resample_counts"
        )
    return c


def _blocks(b: int, n: int) -> list[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    return [slice(s, min(s + step, b)) for s in range(0, b, step)]


# --------------------------------------------------------------------------------------------- OOD detection

_DETECTION = ("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error")


class _OodSide:
    """One OOD set against a fixed ID set: its descending sort and its rank positions among the ID scores (once)."""

    def __init__(self, s_id_sorted: torch.Tensor, s_ood: torch.Tensor, counts: torch.Tensor) -> None:
        n1, n0 = s_id_sorted.numel(), s_ood.numel()
        dtype = torch.promote_types(s_id_sorted.dtype, s_ood.dtype)
        ids = s_id_sorted.to(dtype).neg()  # ascending
        xs, self.order = torch.sort(s_ood.to(dtype).add(0.0), descending=True, stable=True)
        xo = xs.neg()  # ascending
        # ID scores strictly above / at least each OOD score; OOD scores strictly above each OOD score
        self.id_above = torch.searchsorted(ids, xo, side="left")  # #ID with s > s_j
        self.id_at_least = torch.searchsorted(ids, xo, side="right")  # #ID with s >= s_j
        self.ood_above = torch.searchsorted(xo, xo, side="left")  # #OOD with s > s_j
        # for each ID score (sorted descending): #OOD with s >= s_i
        self.ood_at_least_id = torch.searchsorted(xo, ids, side="right")
        self.counts = counts
        self.n0 = n0
        self.k = _min_count(_TPR, n0)
        self.n1 = n1


_TPR = 0.95


def detection_replicates(
    s_id: ArrayLike,
    s_ood: ArrayLike | Mapping[str, ArrayLike],
    counts_id: ArrayLike,
    counts_ood: ArrayLike | Mapping[str, ArrayLike],
) -> dict[str, torch.Tensor] | dict[str, dict[str, torch.Tensor]]:
    """Every OOD-detection metric of every resample, from one sort of the scores (the ID sort shared by all OOD sets).

    Args:
        s_id: ``[N_id]`` ID confidence scores (higher = more in-distribution).
        s_ood: ``[N_ood]`` OOD confidence scores, or a mapping ``{name: [N_ood]}`` of several OOD sets scored against
            the same ID scores (the ID side is then sorted and cumulated once for all of them).
        counts_id: ``[B, N_id]`` resample counts of the ID examples (rows sum to ``N_id``).
        counts_ood: ``[B, N_ood]`` resample counts of the OOD examples (a mapping with the keys of ``s_ood``).

    Returns:
        ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95_id``, ``fpr95_ood``, ``detection_error``: float64 ``[B]`` on the
        CPU, each the metric of :func:`rulab.metrics.ood.ood_metrics` on the resampled scores (AUPR-In to float32
        rounding, about 1e-7; the others exactly); for a mapping, ``{name: {metric: [B]}}``.

    How: with the ID scores sorted once (descending) and ``CW`` the cumulative ID count along that order, and each OOD
    set sorted once with ``CV`` its cumulative count, every metric reads ``CW`` at the OOD ranks and ``CV`` at the ID
    ranks (ranks found once by binary search). AUROC is ``sum_j v_j (W(s > s_j) + W(s >= s_j)) / 2`` over OOD examples
    ``j`` (an ID/OOD tie counts 1/2); the detection error's minimum is attained just above some OOD score, so it is
    a minimum over the OOD examples; AUPR-In sums over ID examples, AUPR-Out over OOD examples.
    """
    many = isinstance(s_ood, Mapping)
    sets = dict(s_ood) if many else {"": s_ood}
    cmap = dict(counts_ood) if many else {"": counts_ood}
    if many and set(sets) != set(cmap):
        raise InputError(f"s_ood and counts_ood must name the same OOD sets, got {sorted(sets)} and {sorted(cmap)}")
    a = scores_1d(s_id, "s_id").cpu()
    n1 = a.numel()
    cid = _counts(counts_id, n1, "counts_id")
    b_total = cid.shape[0]
    xs_id, order_id = torch.sort(a.add(0.0), descending=True, stable=True)
    sides: dict[str, _OodSide] = {}
    for name, s in sets.items():
        label = f"s_ood['{name}']" if many else "s_ood"
        b = scores_1d(s, label).cpu()
        c = _counts(cmap[name], b.numel(), f"counts_ood['{name}']" if many else "counts_ood")
        if c.shape[0] != b_total:
            raise InputError(
                f"counts_id has {b_total} resamples but {label}'s counts have {c.shape[0]}; pass one row per resample to both"
            )
        sides[name] = _OodSide(xs_id, b, c)
    # the end of each ID tie group: #ID with s >= s_i (= i + 1 without ties)
    ids_asc = xs_id.neg()
    id_group_end = torch.searchsorted(ids_asc, ids_asc, side="right")
    no_id_ties = bool((id_group_end == torch.arange(1, n1 + 1)).all())
    k_id = _min_count(_TPR, n1)
    out: dict[str, dict[str, list[torch.Tensor]]] = {name: {k: [] for k in _DETECTION} for name in sets}
    for blk in _blocks(b_total, n1 + max(sd.n0 for sd in sides.values())):
        w = cid[blk][:, order_id].to(torch.float32)  # ID counts in descending score order
        rows = w.shape[0]
        cw = torch.zeros(rows, n1 + 1, dtype=torch.float32)
        torch.cumsum(w, 1, out=cw[:, 1:])  # cw[:, k] = count of the top-k ID scores (exact integers)
        t_end = cw[:, 1:] if no_id_ties else cw.index_select(1, id_group_end)  # ID count with s >= s_i
        # the threshold keeping 95% of ID: the first ID position whose cumulative count reaches k_id
        i_star = torch.searchsorted(cw, cw.new_full((rows, 1), float(k_id))) - 1
        for name, sd in sides.items():
            n0 = sd.n0
            v = sd.counts[blk][:, sd.order].to(torch.float32)
            cv = torch.zeros(rows, n0 + 1, dtype=torch.float32)
            torch.cumsum(v, 1, out=cv[:, 1:])
            # float32 holds every count and every product below exactly (integers < 2**24); sums go to float64
            w_above = cw.index_select(1, sd.id_above)  # ID count with s > s_j
            w_least = cw.index_select(1, sd.id_at_least)  # ID count with s >= s_j
            v_above = cv.index_select(1, sd.ood_above)  # OOD count with s > s_j
            o = out[name]
            o["auroc"].append((v * (w_above + w_least)).sum(dim=1, dtype=torch.float64) / (2.0 * n1 * n0))
            # AUPR-In over ID examples: precision T / (T + F) at the ID example's tie group
            f_at = cv.index_select(1, sd.ood_at_least_id)
            prec = torch.add(t_end, f_at).clamp_min_(1.0)
            torch.div(t_end, prec, out=prec)
            o["aupr_in"].append(torch.linalg.vecdot(w, prec).to(torch.float64) / n1)
            # AUPR-Out (OOD positive on -s) over OOD examples: precision among the examples with s <= s_j (float64:
            # these are only N_ood wide)
            wa, va = w_above.double(), v_above.double()
            rest = ((n1 + n0) - wa - va).clamp_min_(1.0)
            o["aupr_out"].append((v.double() * (n0 - va) / rest).sum(dim=1) / n0)
            # detection error: min over "accept every s > s_j" (and accept nothing: 0) of F n1 - T n0 (exact integers)
            gap = (va * n1 - wa * n0).amin(dim=1) / (n1 * n0)
            o["detection_error"].append(0.5 + 0.5 * gap.clamp(max=0.0))
            # FPR of OOD at the ID threshold: OOD count with s >= the threshold ID score
            o["fpr95_id"].append(f_at.gather(1, i_star).squeeze(1).to(torch.float64) / n0)
            # OOD positive on -s: the first OOD position whose cumulative count exceeds n0 - k; FPR = ID with s <= it
            j_star = torch.searchsorted(cv, cv.new_full((rows, 1), float(n0 - sd.k)), right=True) - 1
            o["fpr95_ood"].append((n1 - w_above.gather(1, j_star).squeeze(1).to(torch.float64)) / n1)
    res = {name: {k: torch.cat(v) for k, v in o.items()} for name, o in out.items()}
    return res if many else res[""]


# --------------------------------------------------------------------------------------------- calibration


def _adaptive_sums(
    conf: torch.Tensor, correct: torch.Tensor, counts: torch.Tensor, bin_size: int, drop_last_bin: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMS (l2) and MAD (l1) calibration error with adaptive bins of ``bin_size`` per resample: ``([B], [B])``.

    The resample, sorted by confidence (stable), fills ``N`` places; bin ``j`` holds places ``[j·s, (j+1)·s)`` and the
    last bin takes the remainder (:func:`rulab.metrics.calibration.calibration_error`, ``binning="adaptive"``).
    """
    n = conf.numel()
    order = torch.sort(conf, stable=True).indices
    c, y = conf[order].to(torch.float64), correct[order]
    full = max(n // bin_size, 1) - 1
    edges = torch.tensor([j * bin_size for j in range(full + 1)] + [n], dtype=torch.float64)  # [nb + 1]
    sizes = (edges[1:] - edges[:-1]).unsqueeze(0)  # [1, nb]
    keep = slice(None, -1) if drop_last_bin else slice(None)
    l2, l1 = [], []
    for blk in _blocks(counts.shape[0], n):
        w = counts[blk][:, order].to(torch.float64)
        cw = torch.cumsum(w, 1)
        cwc = torch.cumsum(w * c, 1)
        cwy = torch.cumsum(w * y, 1)
        p = edges.expand(w.shape[0], -1).contiguous()
        # the example holding place p: the first with cumulative count >= p; its copies past p are not yet counted
        i = torch.searchsorted(cw, p).clamp_(max=n - 1)
        over = cw.gather(1, i) - p
        s_c = cwc.gather(1, i) - over * c[i]
        s_y = cwy.gather(1, i) - over * y[i]
        d = ((s_c[:, 1:] - s_c[:, :-1]) - (s_y[:, 1:] - s_y[:, :-1])).abs() / sizes  # |mean conf - accuracy| per bin
        wgt = sizes / n
        l2.append((wgt[:, keep] * d[:, keep].square()).sum(dim=1).sqrt())
        l1.append((wgt[:, keep] * d[:, keep]).sum(dim=1))
    return torch.cat(l2), torch.cat(l1)


def _uniform_bins(conf: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin index of each confidence for ``n_bins`` equal-width bins ``(lo, hi]`` (the first closed at 0)."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype)
    return (torch.bucketize(conf, edges, right=False) - 1).clamp_(0, n_bins - 1)


CALIBRATION = ("acc", "nll", "brier", "ece", "mce", "rms", "mad", "rms_uniform10", "soft_f1", "mmc")
"""The metrics of :func:`calibration_replicates`, the keys of :func:`rulab.metrics.calibration.calibration_metrics`."""


def calibration_replicates(
    logits: ArrayLike,
    labels: ArrayLike,
    counts: ArrayLike,
    *,
    drop_last_bin: bool = False,
    metrics: tuple[str, ...] | list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Accuracy and every calibration metric of every resample, from logits.

    Args:
        logits: ``[N, K]`` logits (temperature-scaled already for the ``ts`` rows), or ``[S, N, K]``: ``S`` sets of
            logits of the same ``N`` images (the cells of a shift suite), resampled with the same counts.
        labels: ``[N]`` class indices.
        counts: ``[B, N]`` resample counts (rows sum to ``N``).
        drop_last_bin: W1/OE parity for ``rms`` and ``mad`` (:func:`rulab.metrics.calibration.calibration_error`).
        metrics: only these of :data:`CALIBRATION` (default: all). The adaptive-bin ones (``rms``, ``mad``) cost
            about three times as much as all the others together.

    Returns:
        ``{metric: float64 [B]}`` (``[S, B]`` for ``[S, N, K]`` logits) on the CPU in the order of
        :data:`CALIBRATION`: the values :func:`rulab.metrics.calibration.calibration_metrics` gives on the resampled
        images (sums in float32, so to about 1e-7 relative).

    Every metric but ``rms``/``mad`` is a sum over images, per image or per uniform bin, so all of them (for all
    ``S`` sets) are one matrix product of the counts with a ``[N, 56 S]`` matrix (6 per-image values, 15 + 10 bin
    indicators and the same times ``conf - correct``).
    """
    wanted = CALIBRATION if metrics is None else tuple(metrics)
    unknown = sorted(set(wanted) - set(CALIBRATION))
    if unknown:
        raise InputError(
            f"calibration_replicates cannot compute {', '.join(unknown)}; choose from {', '.join(CALIBRATION)}"
        )
    z_all = as_tensor(logits, "logits")
    stacked = z_all.ndim == 3
    if not stacked:
        z_all = z_all.unsqueeze(0)
    if z_all.ndim != 3 or z_all.shape[0] == 0:
        raise InputError(f"logits must be [N, K] or [S, N, K], got shape {tuple(as_tensor(logits, 'logits').shape)}")
    n = z_all.shape[1]
    y = labels_1d(labels, n, z_all.shape[2], torch.device("cpu"))
    w_all = _counts(counts, n, "counts")
    confs, corrects = [], []
    blocks: list[torch.Tensor] = []
    for z in z_all:
        cols: list[torch.Tensor] = []
        zd = logits_2d(z).cpu().to(torch.float64)
        p = zd.softmax(dim=1)
        conf, pred = p.max(dim=1)
        correct = (pred == y).to(torch.float64)
        gap = conf - correct
        confs.append(conf)
        corrects.append(correct)
        cols += [
            correct,
            -zd.log_softmax(dim=1).gather(1, y[:, None]).squeeze(1),
            (p - F.one_hot(y, zd.shape[1]).to(torch.float64)).square().sum(dim=1),
            conf,
            (1.0 - conf) * (1.0 - correct),
            (1.0 - conf) + (1.0 - correct),
        ]
        for nb in (15, 10):
            onehot = F.one_hot(_uniform_bins(conf, nb), nb).to(torch.float64)
            cols += [*onehot.T, *(onehot * gap.unsqueeze(1)).T]
        blocks.append(torch.stack(cols, dim=1).to(torch.float32))
    m = blocks[0].shape[1]  # 56 columns per set
    mat = torch.cat(blocks, dim=1)  # [N, 56 S]
    sums = torch.cat([(w_all[blk].to(torch.float32) @ mat).to(torch.float64) for blk in _blocks(w_all.shape[0], n)])
    out: dict[str, list[torch.Tensor]] = {k: [] for k in CALIBRATION if k in wanted}
    for i in range(len(confs)):
        sm = sums[:, i * m : (i + 1) * m]
        res = {
            "acc": sm[:, 0] / n,
            "nll": sm[:, 1] / n,
            "brier": sm[:, 2] / n,
            "mmc": sm[:, 3] / n,
            "soft_f1": torch.where(sm[:, 5] > 0, 2.0 * sm[:, 4] / sm[:, 5].clamp_min(1e-300), 0.0),
        }
        start = 6
        for nb in (15, 10):
            cnt = sm[:, start : start + nb].round()  # images per bin: integers (float32 rounding removed)
            diff = sm[:, start + nb : start + 2 * nb]  # sum of (conf - correct) per bin
            dev = diff.abs() / cnt.clamp_min(1.0)  # |mean conf - accuracy|, 0 for an empty bin
            if nb == 15:
                res["ece"] = diff.abs().sum(dim=1) / n
                res["mce"] = torch.where(cnt > 0, dev, 0.0).amax(dim=1)
            else:
                res["rms_uniform10"] = ((cnt / n) * dev.square()).sum(dim=1).sqrt()
            start += 2 * nb
        if "rms" in wanted or "mad" in wanted:
            res["rms"], res["mad"] = _adaptive_sums(confs[i], corrects[i], w_all, 100, drop_last_bin)
        for k in out:
            out[k].append(res[k])
    return {k: (torch.stack(v) if stacked else v[0]) for k, v in out.items()}


def pooled_calibration_replicates(
    conf_id: ArrayLike,
    correct_id: ArrayLike,
    conf_ood: ArrayLike,
    counts_id: ArrayLike,
    counts_ood: ArrayLike,
    *,
    drop_last_bin: bool = False,
) -> dict[str, torch.Tensor]:
    """OE's OOD calibration of every resample: ID pooled with OOD counted as wrong (``rulab.eval.ood_eval``).

    Args:
        conf_id: ``[N_id]`` ID top-label confidences; correct_id: ``[N_id]`` 0/1; conf_ood: ``[N_ood]``.
        counts_id, counts_ood: ``[B, N_id]`` and ``[B, N_ood]`` resample counts (ID and OOD resampled separately).
        drop_last_bin: W1/OE parity.

    Returns:
        ``ood_rms`` (l2, adaptive 100), ``ood_mad`` (l1, adaptive 100), ``ood_soft_f1``: float64 ``[B]``.
    """
    cid = confidences_1d(conf_id, "conf_id").cpu()
    yid = correct_1d(correct_id, cid.numel(), cid.device, "correct_id")
    cood = confidences_1d(conf_ood, "conf_ood").cpu()
    wid, wood = _counts(counts_id, cid.numel(), "counts_id"), _counts(counts_ood, cood.numel(), "counts_ood")
    if wid.shape[0] != wood.shape[0]:
        raise InputError(
            f"counts_id has {wid.shape[0]} resamples but counts_ood has {wood.shape[0]}; pass one row per resample to both"
        )
    dtype = torch.promote_types(cid.dtype, cood.dtype)
    conf = torch.cat([cid.to(dtype), cood.to(dtype)])
    corr = torch.cat([yid, torch.zeros(cood.numel(), dtype=torch.float64)])
    w = torch.cat([wid, wood], dim=1)
    rms, mad = _adaptive_sums(conf, corr, w, 100, drop_last_bin)
    u = 1.0 - conf.to(torch.float64)
    per = torch.stack([u * (1.0 - corr), u + (1.0 - corr)], dim=1)
    f1 = []
    for blk in _blocks(w.shape[0], conf.numel()):
        s = w[blk].to(torch.float64) @ per
        f1.append(torch.where(s[:, 1] > 0, 2.0 * s[:, 0] / s[:, 1].clamp_min(1e-300), 0.0))
    return {"ood_rms": rms, "ood_mad": mad, "ood_soft_f1": torch.cat(f1)}


def mean_replicates(values: ArrayLike, counts: ArrayLike) -> torch.Tensor:
    """The mean of ``values: [N]`` over every resample (e.g. MMC of an OOD set from its MSP scores): float64 ``[B]``."""
    v = scores_1d(values, "values").cpu().to(torch.float64)
    w = _counts(counts, v.numel(), "counts")
    return torch.cat([w[blk].to(torch.float64) @ v for blk in _blocks(w.shape[0], v.numel())]) / v.numel()


# --------------------------------------------------------------------------------------------- intervals


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be a fraction in (0, 1), got {level}; write 0.95, not 95")
    return level


def percentile_interval(replicates: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval: the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the replicates.

    Quantiles interpolate linearly between order statistics (NumPy's default). Replicates that are NaN (a metric
    undefined on some resample) make the interval NaN: it would otherwise describe a selected subset of resamples.

    Args:
        replicates: ``[B]`` values of a statistic on ``B`` resamples.
        level: coverage, 0.95 by default.

    Returns:
        ``(lo, hi)`` as floats.
    """
    level = _check_level(level)
    r = as_tensor(replicates, "replicates").to(torch.float64).reshape(-1)
    if r.numel() == 0 or bool(torch.isnan(r).any()):
        return math.nan, math.nan
    q = torch.quantile(r, torch.tensor([(1.0 - level) / 2.0, (1.0 + level) / 2.0], dtype=torch.float64))
    return float(q[0]), float(q[1])


def _t_two_sided(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` (integer) degrees of freedom (Abramowitz & Stegun 26.7.3-26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        if df == 1:
            return 2.0 * theta / math.pi
        term, total = c, c
        for k in range(3, df - 1, 2):  # c + (2/3) c^3 + (2·4)/(3·5) c^5 + ... up to c^(df-2)
            term *= c * c * (k - 1) / k
            total += term
        return 2.0 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for k in range(2, df - 1, 2):  # 1 + (1/2) c^2 + (1·3)/(2·4) c^4 + ... up to c^(df-2)
        term *= c * c * (k - 1) / k
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with an integer number of degrees of freedom (``p`` in (0.5, 1)).

    The two-sided probability ``P(|T| <= t)`` has a closed form for integer ``df`` (Abramowitz & Stegun 1964,
    26.7.3-26.7.4); it is inverted by bisection to float64 precision. ``t_quantile(0.975, 2) = 4.3027``.
    """
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise InputError(f"df must be a positive integer, got {df!r}")
    if not 0.5 < float(p) < 1.0:
        raise InputError(f"p must lie in (0.5, 1), got {p}")
    target = 2.0 * float(p) - 1.0
    lo, hi = 0.0, 1.0
    while _t_two_sided(hi, int(df)) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_two_sided(mid, int(df)) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 4e-16 * hi:
            break
    return 0.5 * (lo + hi)


def t_interval(values: ArrayLike, level: float = 0.95) -> tuple[float, float]:
    """Student t interval of the mean of ``values`` (one per seed): ``mean ± t_{(1+level)/2, n-1} · sd / sqrt(n)``.

    The seeds are the experimental units: each is an independent training run, and the interval says where the
    mean over training runs lies. With three seeds it is wide (t = 4.30), which is the honest width; the percentile
    bootstrap of three values has only ten distinct means and covers far less than its nominal level.

    Args:
        values: ``[n]`` finite values (NaN values are left out).
        level: coverage, 0.95 by default.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` for fewer than two values.
    """
    level = _check_level(level)
    v = as_tensor(values, "values").to(torch.float64).reshape(-1)
    v = v[~torch.isnan(v)]
    n = v.numel()
    if n < 2 or not bool(torch.isfinite(v).all()):
        return math.nan, math.nan
    mean = float(v.mean())
    half = t_quantile((1.0 + level) / 2.0, n - 1) * float(v.std(correction=1)) / math.sqrt(n)
    return mean - half, mean + half
