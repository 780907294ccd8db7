"""Every metric name rulab stores, declared once: its label, caption, unit and direction.

A result row (:class:`rulab.results.table.Row`) names its metric by a short lower-case string (``auroc``, ``ece``,
...). This module says, for each such name, everything the views need: the label and caption of report tables, whether
the stored fraction is shown as percent, whether higher is better, and which group of measurements it belongs to.
The lists the rest of the library uses are read from here (:func:`names`, :func:`is_percent`):

* ``group="calibration"``: the ID calibration block (``kind`` ``id``, per shift cell ``shift``; :mod:`.calibration`);
* ``group="detection"``: what :func:`rulab.metrics.ood.ood_metrics` returns per (OOD set, detector) (``kind="ood"``);
* ``group="pooled"``: the ID test set pooled with an OOD set counted as wrong (OE's OOD calibration);
* ``group="robustness"``: corruption errors relative to a baseline model (:mod:`.robustness`);
* ``group="farconf"``: the far-away and worst-case numbers of Hein et al. (2019), besides ``mmc``, ``auroc`` and
  ``fpr95_id``, and the clean and adversarial accuracy of Hendrycks et al. (2019, Table 2);
* ``group="training"``: facts about the evaluated checkpoint (which epoch ``train.keep_best`` kept);
* ``group="tuning"``: detector hyperparameters chosen by tuning, one row per (OOD set, detector) named
  ``<detector>_<hyperparameter>`` (ODIN's ``odin_t`` and ``odin_eps``; Liang et al. 2018 report them per OOD set).

Declaring a metric is one call of :func:`declare`, here or in the module that computes it (every module of
:mod:`rulab.metrics` is imported when the catalog is first read). The test ``tests/metrics/test_catalog.py`` fails
for any metric that an evaluation writes but nobody declared.

Example:
    >>> from rulab.metrics.catalog import get, names
    >>> get("fpr95_id").label, get("fpr95_id").higher_is_better
    ('FPR at 95% TPR', False)
    >>> names("detection")[:2]
    ('auroc', 'aupr_in')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rulab.registry import METRICS

__all__ = ["GROUPS", "Metric", "declare", "get", "metrics", "names", "is_percent", "bounds"]

GROUPS = ("calibration", "detection", "pooled", "robustness", "farconf", "training", "tuning")
"""The groups a metric may belong to (see the module docstring)."""


@dataclass(frozen=True)
class Metric:
    """One stored metric.

    Attributes:
        name: the ``metric`` value of its result rows.
        label: short display name (a column or table heading, without the unit).
        caption: one line: what it measures and how to read it.
        percent: the stored value is a fraction shown as percent (2 decimals); otherwise it is shown as it is.
        higher_is_better: ``True`` / ``False``, or ``None`` where neither holds (a ratio, a temperature, the
            mean confidence, which is good on ID data and bad on OOD data).
        group: one of :data:`GROUPS`.
        summary: shown in the plain-text summary (:meth:`rulab.results.table.ResultTable.summary`).
        fmt: a ``format`` spec for tables (``".4g"``); ``""`` = the default (percent with 2 decimals, else 3).
        bounds: the values the metric can take, ``(lo, hi)`` (``inf`` for none): an interval over seeds (a Student t
            interval, which knows no range) is cut to them, so an AUROC interval never passes 100%.
    """

    name: str
    label: str
    caption: str
    percent: bool
    higher_is_better: bool | None
    group: str
    summary: bool = True
    fmt: str = ""
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not self.bounds[0] < self.bounds[1]:
            raise ValueError(f"metric '{self.name}' has bounds {self.bounds}; give (lo, hi) with lo < hi")
        if self.group not in GROUPS:
            raise ValueError(f"metric '{self.name}' has group '{self.group}'; valid groups: {', '.join(GROUPS)}")
        if not self.name or self.name != self.name.lower() or " " in self.name:
            raise ValueError(f"a metric name is one lower-case word such as 'fpr95_id', got {self.name!r}")

    @property
    def heading(self) -> str:
        """The label with its unit: ``"AUROC (%)"``."""
        return f"{self.label} (%)" if self.percent else self.label


def declare(metric: Metric) -> Metric:
    """Register ``metric`` in :data:`rulab.registry.METRICS` (a second declaration of a name is an error)."""
    METRICS.register(metric.name)(metric)
    return metric


def get(name: str) -> Metric:
    """The declaration of ``name``; raises :class:`~rulab.registry.UnknownNameError` naming the declared ones."""
    return METRICS.get(name)


def metrics(group: str | None = None) -> list[Metric]:
    """Every declared metric (of ``group``), in declaration order."""
    if group is not None and group not in GROUPS:
        raise ValueError(f"unknown metric group '{group}'; valid groups: {', '.join(GROUPS)}")
    return [m for m in METRICS.entries().values() if group is None or m.group == group]


def names(group: str | None = None) -> tuple[str, ...]:
    """The names of :func:`metrics` (of ``group``), in declaration order."""
    return tuple(m.name for m in metrics(group))


def is_percent(name: str) -> bool:
    """Whether ``name`` is a declared fraction shown as percent (an undeclared name is shown as it is)."""
    return name in METRICS and METRICS.get(name).percent


def bounds(name: str) -> tuple[float, float]:
    """The declared range of ``name`` (``(-inf, inf)`` for an undeclared name)."""
    return METRICS.get(name).bounds if name in METRICS else (-math.inf, math.inf)


# --------------------------------------------------------------------------------------------- the declarations
_LOWER, _HIGHER, _NEITHER = False, True, None

for _m in (
    # calibration of the ID test set (and of every shift cell), rulab.metrics.calibration.calibration_metrics
    Metric("acc", "accuracy", "fraction of correct top-1 predictions", True, _HIGHER, "calibration"),
    Metric(
        "nll",
        "NLL",
        "negative log-likelihood of the true class, nats",
        False,
        _LOWER,
        "calibration",
        bounds=(0.0, math.inf),
    ),
    Metric("ece", "ECE", "expected calibration error, 15 equal-width bins", True, _LOWER, "calibration"),
    Metric("mce", "MCE", "maximum calibration error, 15 equal-width bins", True, _LOWER, "calibration", summary=False),
    Metric("rms", "RMS", "RMS calibration error, adaptive bins of 100 (W1)", True, _LOWER, "calibration"),
    Metric("mad", "MAD", "mean absolute calibration error, adaptive bins of 100 (W1)", True, _LOWER, "calibration"),
    Metric(
        "rms_uniform10",
        "RMSE (10 bins)",
        "RMS calibration error, 10 equal-width bins (W2)",
        True,
        _LOWER,
        "calibration",
        summary=False,
    ),
    Metric(
        "soft_f1", "Soft-F1", "Soft-F1 of the confidence as a detector of errors (W1)", True, _HIGHER, "calibration"
    ),
    Metric("brier", "Brier", "multi-class Brier score, in [0, 2]", False, _LOWER, "calibration", bounds=(0.0, 2.0)),
    Metric(
        "mmc",
        "MMC",
        "mean max-confidence over a set (ID, OOD or noise); lower on noise is better",
        True,
        _NEITHER,
        "calibration",
    ),
    Metric(
        "temperature",
        "temperature",
        "T minimising the validation NLL of softmax(z / T)",
        False,
        _NEITHER,
        "calibration",
        bounds=(0.0, math.inf),
    ),
    # OOD detection per (OOD set, detector), rulab.metrics.ood.ood_metrics
    Metric("auroc", "AUROC", "higher is better; ID is the positive class", True, _HIGHER, "detection"),
    Metric("aupr_in", "AUPR-In", "ID positive; read it beside the OOD:ID ratio", True, _HIGHER, "detection"),
    Metric("aupr_out", "AUPR-Out", "OOD positive, scores negated", True, _HIGHER, "detection"),
    Metric(
        "fpr95_id",
        "FPR at 95% TPR",
        "fraction of OOD accepted at the threshold keeping 95% of ID; lower is better",
        True,
        _LOWER,
        "detection",
    ),
    Metric(
        "fpr95_ood",
        "FPR at 95% TPR, OOD positive",
        "fraction of ID rejected at the threshold catching 95% of OOD (W1's FPR95); lower is better",
        True,
        _LOWER,
        "detection",
    ),
    Metric(
        "detection_error",
        "detection error",
        "min over thresholds of ½(1 − TPR) + ½ FPR; lower is better",
        True,
        _LOWER,
        "detection",
        bounds=(0.0, 0.5),
    ),
    Metric(
        "ood_ratio",
        "OOD:ID ratio",
        "N_ood / N_id, the class balance the AUPR values depend on",
        False,
        _NEITHER,
        "detection",
        summary=False,
        bounds=(0.0, math.inf),
    ),
    # ID test set pooled with an OOD set counted as wrong (OE's OOD calibration), rulab.eval.ood_eval
    Metric(
        "ood_rms",
        "OOD RMS",
        "RMS calibration error of ID pooled with OOD counted as wrong, adaptive bins of 100",
        True,
        _LOWER,
        "pooled",
    ),
    Metric(
        "ood_mad",
        "OOD MAD",
        "MAD calibration error of ID pooled with OOD counted as wrong, adaptive bins of 100",
        True,
        _LOWER,
        "pooled",
    ),
    Metric("ood_soft_f1", "OOD Soft-F1", "Soft-F1 of ID pooled with OOD counted as wrong", True, _HIGHER, "pooled"),
    # corruption errors relative to a baseline model (Hendrycks & Dietterich 2019), rulab.metrics.robustness
    Metric(
        "ce",
        "CE",
        "error summed over severities, relative to the baseline model's",
        True,
        _LOWER,
        "robustness",
        bounds=(0.0, math.inf),
    ),
    Metric(
        "mce_rel",
        "relative mCE",
        "mean over corruptions of the relative corruption error",
        True,
        _LOWER,
        "robustness",
        bounds=(0.0, math.inf),
    ),
    # far-away and worst-case confidence (Hein et al. 2019, Sections 3.5-3.6), rulab.eval.farconf
    Metric(
        "alpha_median",
        "median α",
        "median over trials of the smallest scale α of uniform noise reaching 99.9% confidence",
        False,
        _HIGHER,
        "farconf",
        bounds=(0.0, math.inf),
    ),
    Metric(
        "overconf_frac",
        "overconfident after clipping",
        "fraction of alpha-scaled noise images with confidence above 95% after clipping to [0, 1]",
        True,
        _LOWER,
        "farconf",
    ),
    Metric(
        "clean_acc",
        "clean accuracy",
        "accuracy on the test images the adversarial-sample attack starts from, before the attack",
        True,
        _HIGHER,
        "farconf",
    ),
    Metric(
        "adv_acc",
        "adversarial accuracy",
        "accuracy on the same images after L∞ PGD on the cross-entropy (any restart that breaks an image counts)",
        True,
        _HIGHER,
        "farconf",
    ),
    Metric(
        "resistance",
        "resistance",
        "fraction of adversarial samples still predicted as their class beside a rejection column of 1.01/K",
        False,
        _HIGHER,
        "farconf",
    ),
    # the evaluated checkpoint (rulab.eval.checkpoint)
    Metric(
        "checkpoint_epoch",
        "kept epoch",
        "the training epoch whose weights were evaluated (train.keep_best; extra: the metric and its value)",
        False,
        _NEITHER,
        "training",
        summary=False,
    ),
    # hyperparameters chosen by tuning, per (OOD set, detector) (rulab.eval.evaluate)
    Metric(
        "odin_t",
        "ODIN T",
        "ODIN's temperature T chosen by tuning (Liang et al. 2018)",
        False,
        _NEITHER,
        "tuning",
        summary=False,
        fmt=".4g",
    ),
    Metric(
        "odin_eps",
        "ODIN ε",
        "ODIN's input step ε in [0, 1] pixel units chosen by tuning (Liang et al. 2018)",
        False,
        _NEITHER,
        "tuning",
        summary=False,
        fmt=".4g",
    ),
):
    declare(_m)
del _m
