"""Pivot tables of aggregated results as plain text, Markdown, LaTeX (booktabs) or CSV.

Human formats (text, Markdown, LaTeX) show ``mean ± std`` over seeds, with fraction metrics (accuracy, AUROC,
ECE, FPR, MMC, ...: those declared ``percent`` in :mod:`rulab.metrics.catalog`) as percent with 2 decimals and the
others (NLL, Brier, temperature, OOD:ID ratio) with 3 decimals; a cell with fewer seeds than its row says so (``n=2``).
CSV keeps full-precision fractions (``mean`` and ``std`` columns) for other tools. Everything is built with plain
strings: no pandas needed.
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
from rulab.results.aggregate import Pivot, Stat, aggregate, pivot, summary_pivot

__all__ = ["FORMATS", "format_value", "format_stat", "to_text", "to_markdown", "to_latex", "to_csv", "render", "results_pivot", "write"]

FORMATS = ("text", "md", "latex", "csv")


def format_value(value: float, metric: str) -> str:
    """A number as shown in tables: the metric's declared format if any, else percent with 2 decimals for fraction
    metrics and 3 decimals for the others."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    fmt = METRICS.get(metric).fmt if metric in METRICS else ""
    if fmt:
        return format(value, fmt)
    return f"{100.0 * value:.2f}" if is_percent(metric) else f"{value:.3f}"


def format_stat(stat: Stat | None, metric: str, pm: str = " ± ", row_n: int = 0) -> str:
    """``mean ± std`` of a cell (just the mean for one seed, ``–`` for a missing cell), with ``(n=k)`` when the
    cell has fewer seeds than its row (``row_n``)."""
    if stat is None or stat.n == 0:
        return "–"
    text = format_value(stat.mean, metric)
    if stat.n > 1 and not math.isnan(stat.std):
        text += pm + format_value(stat.std, metric)
    if row_n and stat.n < row_n:
        text += f" (n={stat.n})"
    return text


def _grid(p: Pivot, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    header = [p.row_header, "seeds", *(label for label, _ in p.columns)]
    body = []
    for row in p.rows:
        n = p.seeds(row)
        body.append([row, str(n), *(format_stat(p.cells.get((row, label)), p.metric_of(row, metric), pm, n) for label, metric in p.columns)])
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
    lines = ["| " + " | ".join(_md_escape(c) for c in header) + " |", "|" + "|".join([":---", "---:"] + ["---:"] * (len(header) - 2)) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
    notes = "".join(f"- {n}\n" for n in p.notes)
    return (f"{p.caption}\n\n" if p.caption else "") + "\n".join(lines) + "\n" + (f"\n{notes}" if notes else "")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


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
        cells = [_tex(r[0]), r[1], *(c.replace("–", "--").replace("(n=", "($n$=") for c in r[2:])]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    lines += [f"% {n}" for n in p.notes]
    return "\n".join(lines) + "\n"


def to_csv(p: Pivot) -> str:
    """CSV with full-precision fractions: ``method, seeds`` then ``<column>`` (mean) and ``<column> std`` pairs."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([p.row_header, "seeds", *(x for label, _ in p.columns for x in (label, f"{label} std"))])
    for row in p.rows:
        out: list[Any] = [row, p.seeds(row)]
        for label, _ in p.columns:
            s = p.cells.get((row, label))
            out += ["", ""] if s is None or s.n == 0 else [repr(s.mean), "" if math.isnan(s.std) else repr(s.std)]
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


def results_pivot(
    records: Iterable[Mapping[str, Any]],
    metrics: str | Sequence[str] | None = None,
    kind: str | None = None,
    detector: str | None = None,
    dataset: str | None = None,
) -> Pivot:
    """The table ``rulab results`` prints.

    Without ``metrics``/``kind``/``detector``/``dataset`` it is the study summary
    (:data:`~rulab.results.aggregate.SUMMARY_MEASURES`); with them, the matching stored rows aggregated over seeds,
    rows = methods and columns = whatever varies (the metrics, the OOD sets, ...).
    """
    recs = list(records)
    ms, dets, sets = _csv_list(metrics), _csv_list(detector), _csv_list(dataset)
    if ms is None and kind is None and dets is None and sets is None:
        return summary_pivot(recs)
    sel = [
        r for r in recs
        if (ms is None or r["metric"] in ms) and (kind is None or r["kind"] == kind)
        and (dets is None or r["detector"] in dets) and (sets is None or r["dataset"] in sets)
    ]
    if not sel:
        what = ", ".join(f"{k}={v}" for k, v in (("metric", metrics), ("kind", kind), ("detector", detector), ("dataset", dataset)) if v)
        known = sorted({r["metric"] for r in recs})
        raise RulabError(f"no stored results match {what}; stored metrics: {', '.join(known) or '(none)'}")
    aggs = aggregate(sel)
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
