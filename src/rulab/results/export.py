"""Pivot tables of aggregated results as plain text, Markdown, LaTeX (booktabs) or CSV.

Human formats (text, Markdown, LaTeX) show ``mean ± std`` over seeds, with fraction metrics (accuracy, AUROC,
ECE, FPR, MMC, ...: those declared ``percent`` in :mod:`rulab.metrics.catalog`) as percent with 2 decimals and the
others (NLL, Brier, temperature, OOD:ID ratio) with 3 decimals; a cell with fewer seeds than its row says so (``n=2``).
When the cells have 95% intervals (:mod:`rulab.results.aggregate`), each row is followed by a row ``95% CI`` holding
``[lo, hi]`` under each number. A comparison (:func:`rulab.results.compare.compare_pivot`) shows the baseline's values
and, for every other method, signed differences to it, with ``*`` after an interval that excludes 0.
CSV keeps full-precision fractions (``mean`` and ``std`` columns, and ``ci_low``, ``ci_high``, ``ci_method`` columns when
there are intervals) for other tools. Everything is built with plain strings: no pandas needed.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rulab.errors import RulabError
from rulab.metrics.catalog import is_percent
from rulab.registry import METRICS
from rulab.results.aggregate import Pivot, Replicates, Stat, aggregate, pivot, summary_pivot

__all__ = [
    "FORMATS",
    "CI_LABEL",
    "format_value",
    "format_stat",
    "format_interval",
    "significant",
    "to_text",
    "to_markdown",
    "to_latex",
    "to_csv",
    "render",
    "results_pivot",
    "select",
    "write",
]

FORMATS = ("text", "md", "latex", "csv")
CI_LABEL = "95% CI"
"""The label of the interval row under each row of a table with intervals."""


def format_value(value: float, metric: str, signed: bool = False) -> str:
    """A number as shown in tables: the metric's declared format if any, else percent with 2 decimals for fraction
    metrics and 3 decimals for the others (``signed``: with ``+`` before a positive number, for differences)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    sign = "+" if signed else ""
    fmt = METRICS.get(metric).fmt if metric in METRICS else ""
    if fmt:
        return format(value, sign + fmt)
    return f"{100.0 * value:{sign}.2f}" if is_percent(metric) else f"{value:{sign}.3f}"


def format_stat(stat: Stat | None, metric: str, pm: str = " ± ", row_n: int = 0, signed: bool = False) -> str:
    """``mean ± std`` of a cell (just the mean for one seed, ``–`` for a missing cell), with ``(n=k)`` when the
    cell has fewer seeds than its row (``row_n``); ``signed`` for a difference."""
    if stat is None or stat.n == 0:
        return "–"
    text = format_value(stat.mean, metric, signed)
    if stat.n > 1 and not math.isnan(stat.std):
        text += pm + format_value(stat.std, metric)
    if row_n and stat.n < row_n:
        text += f" (n={stat.n})"
    return text


def significant(stat: Stat | None) -> bool:
    """Whether a difference's interval excludes 0."""
    return stat is not None and stat.has_interval and (stat.lo > 0 or stat.hi < 0)


def format_interval(stat: Stat | None, metric: str, signed: bool = False) -> str:
    """``[lo, hi]`` of a cell's interval (``""`` without one); for a difference (``signed``) ``*`` follows an interval
    that excludes 0."""
    if stat is None or not stat.has_interval:
        return ""
    text = f"[{format_value(stat.lo, metric, signed)}, {format_value(stat.hi, metric, signed)}]"
    return text + (" *" if signed and significant(stat) else "")


def _grid(p: Pivot, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and body rows; with intervals each row is followed by its ``95% CI`` row (first cell ``""``)."""
    header = [p.row_header, "seeds", *(label for label, _ in p.columns)]
    body = []
    ci = p.has_intervals()
    for row in p.rows:
        n = p.seeds(row)
        diff = p.is_difference(row)
        cells = [p.cells.get((row, label)) for label, _ in p.columns]
        metrics = [p.metric_of(row, metric) for _, metric in p.columns]
        body.append([row, str(n), *(format_stat(c, m, pm, n, diff) for c, m in zip(cells, metrics))])
        if ci:
            body.append(["", CI_LABEL, *(format_interval(c, m, diff) for c, m in zip(cells, metrics))])
    return header, body


def to_text(p: Pivot) -> str:
    """An aligned plain-text table (for the terminal), caption first."""
    header, body = _grid(p)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in body), *p.notes]
    return (f"{p.caption}\n" if p.caption else "") + "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(p: Pivot) -> str:
    """A GitHub-flavoured Markdown table; the caption (if any) is a line above it."""
    header, body = _grid(p)
    lines = [
        "| " + " | ".join(_md_escape(c) for c in header) + " |",
        "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    notes = "".join(f"- {n}\n" for n in p.notes)
    return (f"{p.caption}\n\n" if p.caption else "") + "\n".join(lines) + "\n" + (f"\n{notes}" if notes else "")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text).replace("–", "--").replace(" · ", " / ")


def to_latex(p: Pivot) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the caption is a ``%`` comment line."""
    header, body = _grid(p, pm=" $\\pm$ ")
    spec = "l" + "r" * (len(header) - 1)
    lines = []
    if p.caption:
        lines.append("% " + p.caption)
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(_tex(c) for c in header) + " \\\\", "\\midrule"]
    for r in body:
        cells = [
            _tex(r[0]),
            _tex(r[1]),
            *(c.replace("–", "--").replace("(n=", "($n$=").replace(" *", "$^*$") for c in r[2:]),
        ]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {n}" for n in p.notes]
    return "\n".join(lines) + "\n"


def to_csv(p: Pivot) -> str:
    """CSV with full-precision fractions: ``method, seeds`` then ``<column>`` (mean) and ``<column> std`` pairs, and,
    when the table has intervals, ``<column> ci_low``, ``<column> ci_high`` and ``<column> ci_method`` after each pair
    (a comparison's rows other than the baseline hold differences)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ci = p.has_intervals()
    extra = ("ci_low", "ci_high", "ci_method") if ci else ()
    w.writerow(
        [
            p.row_header,
            "seeds",
            *(x for label, _ in p.columns for x in (label, f"{label} std", *(f"{label} {e}" for e in extra))),
        ]
    )
    for row in p.rows:
        out: list[Any] = [row, p.seeds(row)]
        for label, _ in p.columns:
            s = p.cells.get((row, label))
            if s is None or s.n == 0:
                out += [""] * (2 + len(extra))
                continue
            out += [repr(s.mean), "" if math.isnan(s.std) else repr(s.std)]
            if ci:
                out += ["", "", ""] if not s.has_interval else [repr(s.lo), repr(s.hi), s.method]
        w.writerow(out)
    return buf.getvalue()


def render(p: Pivot, fmt: str = "text") -> str:
    """``p`` in one of :data:`FORMATS`."""
    renderers = {"text": to_text, "md": to_markdown, "latex": to_latex, "csv": to_csv}
    if fmt not in renderers:
        raise RulabError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    return renderers[fmt](p)


def _csv_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [x.strip() for x in items if x.strip()] or None


def select(
    records: Iterable[Mapping[str, Any]],
    metrics: str | Sequence[str] | None = None,
    kind: str | None = None,
    detector: str | None = None,
    dataset: str | None = None,
) -> list[Mapping[str, Any]] | None:
    """The records matching the filters (comma-separated lists or sequences), ``None`` when no filter is given.

    Raises:
        RulabError: filters that match nothing (naming the stored metrics).
    """
    recs = list(records)
    ms, dets, sets = _csv_list(metrics), _csv_list(detector), _csv_list(dataset)
    if ms is None and kind is None and dets is None and sets is None:
        return None
    sel = [
        r
        for r in recs
        if (ms is None or r["metric"] in ms)
        and (kind is None or r["kind"] == kind)
        and (dets is None or r["detector"] in dets)
        and (sets is None or r["dataset"] in sets)
    ]
    if not sel:
        what = ", ".join(
            f"{k}={v}"
            for k, v in (("metric", metrics), ("kind", kind), ("detector", detector), ("dataset", dataset))
            if v
        )
        known = sorted({r["metric"] for r in recs})
        raise RulabError(f"no stored results match {what}; stored metrics: {', '.join(known) or '(none)'}")
    return sel


def results_pivot(
    records: Iterable[Mapping[str, Any]],
    metrics: str | Sequence[str] | None = None,
    kind: str | None = None,
    detector: str | None = None,
    dataset: str | None = None,
    replicates: Replicates | None = None,
) -> Pivot:
    """The table ``rulab results`` prints.

    Without ``metrics``/``kind``/``detector``/``dataset`` it is the study summary
    (:data:`~rulab.results.aggregate.SUMMARY_MEASURES`; ``replicates`` gives a single run's means over several rows
    their intervals); with them, the matching stored rows aggregated over seeds, rows = methods and columns =
    whatever varies (the metrics, the OOD sets, ...).
    """
    recs = list(records)
    sel = select(recs, metrics, kind, detector, dataset)
    if sel is None:
        return summary_pivot(recs, replicates=replicates)
    aggs = aggregate(sel)
    ms = _csv_list(metrics)
    if ms:
        order = {m: i for i, m in enumerate(ms)}
        aggs.sort(key=lambda a: order.get(a.metric, len(order)))
    return pivot(aggs)


def write(text: str, out: str | os.PathLike[str] | None) -> None:
    """Print ``text`` or write it atomically to ``out``."""
    if out is None:
        print(text, end="")
        return
    from rulab.io import atomic_write_text

    atomic_write_text(out, text)
