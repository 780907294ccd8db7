"""The paper-table hook of :func:`rulab.reports.build_report` and its simple default table.

A hook is a function ``f(ResultTable) -> "<table>..."`` called with each method's mean results; the paper presets'
own layouts (with the papers' numbers beside ours) are in :mod:`rulab.reports.papers`, and the pivots of stored
results in :mod:`rulab.reports.blocks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rulab.reports.blocks import escape
from rulab.results.export import format_value
from rulab.results.table import ResultTable

__all__ = ["paper_table_html", "PaperTable"]

#: a paper-style table: takes the per-method mean results (``ResultTable``, ``meta`` names the method and study)
#: and returns an HTML ``<table>`` (or ``""`` to leave it out).
PaperTable = Callable[[ResultTable], str]


def paper_table_html(
    table: ResultTable, rows: str = "dataset", cols: str = "metric", title: str = "", percent: bool = True
) -> str:
    """A simple paper-style table from one :class:`ResultTable` (the hook's default shape).

    Rows are the distinct values of the row field (e.g. OOD sets), columns the distinct values of the column
    field (e.g. metrics); fraction metrics in percent with the given precision of the report (2 decimals). When a
    row's ``extra`` holds ``std``, it is shown as ``mean ± std``. Paper presets supply their own functions with
    the same signature (``Callable[[ResultTable], str]``).
    """
    row_vals: list[str] = []
    col_vals: list[str] = []
    cells: dict[tuple[str, str], Any] = {}
    for r in table:
        rv, cv = str(getattr(r, rows)) or "–", str(getattr(r, cols)) or "–"
        row_vals += [rv] if rv not in row_vals else []
        col_vals += [cv] if cv not in col_vals else []
        cells[(rv, cv)] = r
    if not cells:
        return ""
    head = f"<th>{escape(rows)}</th>" + "".join(f'<th class="num">{escape(c)}</th>' for c in col_vals)
    body = []
    for rv in row_vals:
        tds = []
        for cv in col_vals:
            r = cells.get((rv, cv))
            if r is None:
                tds.append('<td class="num missing">–</td>')
                continue
            metric = r.metric if percent else ""
            text = format_value(r.value, metric)
            std = r.extra.get("std") if r.extra else None
            if isinstance(std, (int, float)) and not math.isnan(std):
                text += " ± " + format_value(float(std), metric)
            tds.append(f'<td class="num" data-mean="{r.value!r}">{escape(text)}</td>')
        body.append(f'<tr><th scope="row">{escape(rv)}</th>{"".join(tds)}</tr>')
    cap = f"<caption>{escape(title)}</caption>" if title else ""
    return f'<table class="results paper">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
