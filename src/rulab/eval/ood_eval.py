"""The OOD pieces of an evaluation: building a benchmark's OOD sets, scoring a detector under a protocol, and the
calibration of ID data pooled with OOD data.

Metric names added here (lower-case, kind ``ood``, one row per OOD set):

* ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr95_id``, ``fpr95_ood``, ``detection_error``, ``ood_ratio``
  (:func:`rulab.metrics.ood.ood_metrics`; for multi-run protocols the mean over runs, the std in the row's
  ``extra["std"]``);
* ``mmc`` (detector ``msp``): mean max-softmax over the OOD set (W3's ``analysis.py``);
* ``ood_rms``, ``ood_mad``, ``ood_soft_f1`` (detector ``msp`` for raw logits, ``ts`` after temperature scaling): RMS
  and MAD calibration error (adaptive bins of 100) and Soft-F1 of the ID test set pooled with the OOD set counted as
  wrong (OE's OOD calibration, ``test_calibration.py`` with ``utils/calibration_tools.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from rulab.data.tensors import TensorDataset
from rulab.errors import ConfigError, InputError
from rulab.eval.benchmarks import Benchmark
from rulab.eval.extract import dataset_key
from rulab.eval.protocols import Protocol
from rulab.metrics.calibration import ood_calibration, soft_f1
from rulab.metrics.catalog import names
from rulab.metrics.ood import ood_metrics
from rulab.metrics.parity import hein_fpr95, hendrycks_measures
from rulab.registry import OOD_SETS, UnknownNameError

__all__ = [
    "is_synthetic",
    "ood_set_size",
    "load_ood_set",
    "protocol_metrics",
    "ood_calibration_metrics",
    "OOD_METRICS",
    "PARITY_METRICS",
]

OOD_METRICS = names("detection")
"""The detection metrics written per (OOD set, detector): the ``detection`` group of :mod:`rulab.metrics.catalog`."""
_COUNTS = ("n_id", "n_ood")


def is_synthetic(name: str) -> bool:
    """Whether the OOD set ``name`` is a generated noise family (:mod:`rulab.data.ood.noise_sets`) of any size."""
    return hasattr(OOD_SETS.get(name), "needs_base")


def ood_set_size(name: str, benchmark: Benchmark, protocol: Protocol, n_test: int, cap: int = 0) -> int:
    """How many images of OOD set ``name`` to load or generate.

    ``benchmark.n_ood``; for a synthetic set under a protocol other than ``full``, at least the protocol's pool size
    (W1: 2,000 × 5 runs; ODIN and Hein: as many as the ID test set; docs/protocols/index.md); then capped at ``cap``
    (``EvalCfg.n_ood``) when positive. Finite real sets smaller than this are used whole (:func:`load_ood_set`).
    """
    n = benchmark.n_ood
    if protocol.name != "full" and is_synthetic(name):
        n = max(n, protocol.synthetic_size(n_test))
    return min(n, cap) if cap > 0 else n


_MEMO: OrderedDict[tuple[Any, ...], TensorDataset] = OrderedDict()
_MEMO_SIZE = 16


def load_ood_set(
    name: str, shape: tuple[int, int, int], n: int, seed: int, base: TensorDataset | None = None
) -> TensorDataset:
    """``OOD_SETS.create(name, shape=shape, n=n, seed=seed[, base=base])``; a finite set with fewer than ``n`` images
    (scikit-learn's 1,797 digits) is returned whole.

    Sets are deterministic in their arguments, so the last 16 are kept in memory: a study that evaluates many
    checkpoints in one process builds each OOD set once. Treat the returned dataset as read-only.

    Args:
        base: the ID test set, passed to the families built from ID images (``hein``, ``permuted``).

    Raises:
        ConfigError: ``name`` is not a registered OOD set.
        InputError: the set has no images (``n = 0``).
    """
    try:
        factory = OOD_SETS.get(name)
    except UnknownNameError as err:
        raise ConfigError(f"{err} (`rulab list ood`)") from None
    kwargs: dict[str, Any] = {"shape": tuple(shape), "n": n, "seed": seed}
    if getattr(factory, "needs_base", False):
        kwargs["base"] = base
    memo_key = (name, tuple(shape), n, seed, None if kwargs.get("base") is None else dataset_key(kwargs["base"]))
    if memo_key in _MEMO:
        _MEMO.move_to_end(memo_key)
        return _MEMO[memo_key]
    ds = _create_ood_set(name, n, kwargs)
    if len(ds) == 0:
        raise InputError(
            f"OOD set '{name}' has no images (n={n}); ask for at least one (eval.n_ood or the benchmark's n_ood)"
        )
    _MEMO[memo_key] = ds
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return ds


def _create_ood_set(name: str, n: int, kwargs: dict[str, Any]) -> TensorDataset:
    try:
        return OOD_SETS.create(name, **kwargs)
    except ConfigError as err:
        if is_synthetic(name):
            raise
        try:  # a finite set smaller than n: take all of it
            ds = OOD_SETS.create(name, **{**kwargs, "n": None})
        except ConfigError:
            raise err from None
        if len(ds) > n:  # the set was large enough: the error had another cause
            raise err from None
        return ds


def _hendrycks_parity(s_id: torch.Tensor, s_ood: torch.Tensor) -> dict[str, float]:
    m = hendrycks_measures(s_id, s_ood)
    return {"auroc": m["auroc"], "aupr_out": m["aupr_out"], "fpr95_ood": m["fpr_closest"]}


def _hein_parity(s_id: torch.Tensor, s_ood: torch.Tensor) -> dict[str, float]:
    return {"fpr95_id": hein_fpr95(s_id, s_ood)}


PARITY_METRICS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], dict[str, float]], str]] = {
    "hendrycks": (_hendrycks_parity, "hendrycks_measures"),
    "hendrycks_oe": (_hendrycks_parity, "hendrycks_measures"),
    "hein": (_hein_parity, "hein_fpr95"),
}
"""Per protocol, the original's own metric code that a ``parity=True`` evaluation uses in place of the exact metrics
it covers (:mod:`rulab.metrics.parity`): W1/OE's ``get_measures`` (AUROC, AUPR-Out and the closest-recall FPR95,
stored as ``fpr95_ood``) under ``hendrycks``, W3's percentile FPR@95 (``fpr95_id``) under ``hein``; the name is what a
row's ``extra["definitions"]`` records. ODIN's threshold-grid metrics (:func:`rulab.metrics.parity.odin_grid_metrics`)
need the grid range ODIN's code hard-codes per data set and temperature, so no protocol uses them automatically."""


def protocol_metrics(
    s_id: torch.Tensor, s_ood: torch.Tensor, protocol: Protocol, seed: int, parity: bool = False
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every OOD metric of one detector on one OOD set under ``protocol``.

    Args:
        s_id: ``[N_id]`` scores of the ID test set.
        s_ood: ``[N_ood]`` scores of the OOD set.
        protocol: which rows each run scores (:mod:`rulab.eval.protocols`).
        seed: seeds the protocol's subsampling.
        parity: replace the metrics the protocol's original code computes by that code's port
            (:data:`PARITY_METRICS`), run by run; the other metrics stay exact.

    Returns:
        ``(values, extra)``: the metric values (the mean over runs) and ``{"n_runs", "n_id", "n_ood", "std",
        "definitions"}`` (the std over runs, 0 for one run; ``n_id``/``n_ood`` per run; per metric, ``"exact"``
        (:func:`rulab.metrics.ood.ood_metrics`) or the name of the parity function that produced it).
    """
    splits = protocol.splits(len(s_id), len(s_ood), seed)
    port, port_name = PARITY_METRICS.get(protocol.name, (None, "")) if parity else (None, "")
    runs = []
    definitions: dict[str, str] = {}
    for sp in splits:
        a, b = s_id[sp.id.to(s_id.device)], s_ood[sp.ood.to(s_ood.device)]
        m = {k: float(v) for k, v in ood_metrics(a, b).items() if k not in _COUNTS}
        if port is not None:
            original = port(a, b)
            m.update(original)
            definitions.update(dict.fromkeys(original, port_name))
        runs.append(m)
    agg = protocol.aggregate(runs)
    extra = {
        "n_runs": agg["n_runs"],
        "n_id": len(splits[0].id),
        "n_ood": len(splits[0].ood),
        "protocol": protocol.name,
        "definitions": {k: definitions.get(k, "exact") for k in agg["mean"]},
    }
    if agg["n_runs"] > 1:
        extra["std"] = agg["std"]
    return agg["mean"], extra


def ood_calibration_metrics(
    logits_id: torch.Tensor, labels_id: torch.Tensor, logits_ood: torch.Tensor, drop_last_bin: bool = False
) -> dict[str, float]:
    """OE's OOD calibration: the ID test set pooled with an OOD set whose examples count as wrong.

    Args:
        logits_id: ``[N_id, K]`` (already temperature-scaled for the ``ts`` rows).
        labels_id: ``[N_id]``.
        logits_ood: ``[N_ood, K]``.
        drop_last_bin: W1/OE parity (``utils/calibration_tools.py``).

    Returns:
        ``ood_rms`` (l2, adaptive 100), ``ood_mad`` (l1, adaptive 100), ``ood_soft_f1``.
    """
    p_id = logits_id.to(torch.float64).softmax(dim=1)
    conf_id, pred = p_id.max(dim=1)
    correct = (pred == labels_id.to(pred.device)).to(torch.float64)
    conf_ood = logits_ood.to(torch.float64).softmax(dim=1).amax(dim=1)
    pooled_conf = torch.cat([conf_id, conf_ood])
    pooled_correct = torch.cat([correct, torch.zeros_like(conf_ood)])
    return {
        "ood_rms": ood_calibration(
            conf_id, correct, conf_ood, norm="l2", binning="adaptive", bin_size=100, drop_last_bin=drop_last_bin
        ),
        "ood_mad": ood_calibration(
            conf_id, correct, conf_ood, norm="l1", binning="adaptive", bin_size=100, drop_last_bin=drop_last_bin
        ),
        "ood_soft_f1": soft_f1(pooled_conf, pooled_correct),
    }
