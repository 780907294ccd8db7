"""HTML tables of the report: pivots of stored results, mean ± std over seeds, and the paper-table hook.

Each value cell carries ``data-mean`` (the stored fraction, full precision), ``data-n`` (seeds) and a tooltip with
the bootstrap interval and the per-seed values, so the page is readable and the numbers stay checkable.
Markdown and LaTeX versions of the same pivots are in :mod:`rulab.results.export`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rulab.eval.results import ResultTable
from rulab.results.aggregate import PERCENT_METRICS, Pivot, Stat, describe
from rulab.results.export import format_stat, format_value

__all__ = ["stat_cell", "pivot_html", "records_pivot", "paper_table_html", "PaperTable"]

#: a paper-style table: takes the per-method mean results (``ResultTable``, ``meta`` names the method and study)
#: and returns an HTML ``<table>`` (or ``""`` to leave it out).
PaperTable = Callable[[ResultTable], str]


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def stat_cell(stat: Stat | None, metric: str, row_n: int = 0) -> str:
    """One ``<td>`` showing ``mean ± std`` (percent for fraction metrics) with the numbers in data attributes."""
    if stat is None or stat.n == 0:
        return '<td class="num missing">–</td>'
    pct = metric in PERCENT_METRICS
    tip = f"n = {stat.n}"
    if stat.n > 1 and not math.isnan(stat.lo):
        tip += f"; 95% bootstrap interval of the mean [{format_value(stat.lo, metric)}, {format_value(stat.hi, metric)}]"
    if stat.values:
        tip += "; per seed: " + ", ".join(format_value(v, metric) for v in stat.values)
    text = format_stat(stat, metric, row_n=row_n)
    return f'<td class="num" data-mean="{stat.mean!r}" data-n="{stat.n}" data-pct="{int(pct)}" title="{_e(tip)}">{_e(text)}</td>'


def pivot_html(p: Pivot, caption: str | None = None, cls: str = "", seeds_column: bool = True) -> str:
    """A :class:`~rulab.results.aggregate.Pivot` as an HTML table (rows = methods or row labels)."""
    cap = caption if caption is not None else p.caption
    head = [f"<th>{_e(p.row_header)}</th>"] + (['<th class="num">seeds</th>'] if seeds_column else [])
    head += [f'<th class="num">{_e(label)}{" (%)" if metric in PERCENT_METRICS else ""}</th>' for label, metric in p.columns]
    body = []
    for row in p.rows:
        n = p.seeds(row)
        label = row + (" (%)" if p.row_metrics.get(row) in PERCENT_METRICS else "")
        cells = [f'<th scope="row">{_e(label)}</th>'] + ([f'<td class="num">{n}</td>'] if seeds_column else [])
        cells += [stat_cell(p.cells.get((row, col)), p.metric_of(row, metric), n) for col, metric in p.columns]
        body.append("<tr>" + "".join(cells) + "</tr>")
    if p.notes:
        cap = (cap + ". " if cap else "") + "; ".join(p.notes)
    cap_html = f"<caption>{_e(cap)}</caption>" if cap else ""
    return f'<table class="{_e(("results " + cls).strip())}">{cap_html}<thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def records_pivot(
    records: Iterable[Mapping[str, Any]],
    row: str,
    col: str,
    metric: str | None = None,
    row_labels: Mapping[str, str] | None = None,
    col_labels: Mapping[str, str] | None = None,
    row_order: Sequence[str] | None = None,
    col_order: Sequence[str] | None = None,
    mean_column: str = "",
    row_header: str = "",
) -> Pivot:
    """Pivot stored records of one method: rows by column ``row``, columns by column ``col``, stats over runs.

    Args:
        records: result records (``ResultStore.results``) of the runs of one method.
        row, col: record fields for rows and columns (e.g. ``"detector"`` × ``"dataset"``).
        metric: the metric of every cell (decides formatting); default: the column (or, with ``row="metric"``, the
            row) value itself is the metric.
        row_labels, col_labels: display names of row / column values (``{"": "raw"}``).
        row_order, col_order: preferred orders (others follow in order of appearance).
        mean_column: if set, add a column with this label holding, per run, the mean over the row's columns,
            summarised over runs.
        row_header: header of the label column.
    """
    per: dict[tuple[str, str], list[float]] = {}
    per_run_mean: dict[str, dict[str, list[float]]] = {}
    rows: list[str] = []
    cols: list[str] = []
    for r in records:
        rv, cv = str(r[row]), str(r[col])
        if rv not in rows:
            rows.append(rv)
        if cv not in cols:
            cols.append(cv)
        per.setdefault((rv, cv), []).append(float(r["value"]))
        if mean_column:
            per_run_mean.setdefault(rv, {}).setdefault(r["run_id"], []).append(float(r["value"]))

    def ordered(values: list[str], order: Sequence[str] | None) -> list[str]:
        if not order:
            return values
        return [v for v in order if v in values] + [v for v in values if v not in order]

    rows, cols = ordered(rows, row_order), ordered(cols, col_order)
    labels, clabels = dict(row_labels or {}), dict(col_labels or {})
    cells: dict[tuple[str, str], Stat] = {}
    columns = [(clabels.get(c, c), metric or (c if col == "metric" else "")) for c in cols]
    row_metrics = {labels.get(r, r): r for r in rows} if row == "metric" and metric is None else {}
    for (rv, cv), vals in per.items():
        cells[(labels.get(rv, rv), clabels.get(cv, cv))] = describe(vals)
    if mean_column:
        columns.append((mean_column, metric or ""))
        for rv, runs in per_run_mean.items():
            means = [float(sum(v) / len(v)) if not any(math.isnan(x) for x in v) else math.nan for v in runs.values()]
            cells[(labels.get(rv, rv), mean_column)] = describe(means)
    return Pivot([labels.get(r, r) for r in rows], columns, cells, row_header=row_header, row_metrics=row_metrics)


def paper_table_html(table: ResultTable, rows: str = "dataset", cols: str = "metric", title: str = "", percent: bool = True) -> str:
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
    head = f"<th>{_e(rows)}</th>" + "".join(f'<th class="num">{_e(c)}</th>' for c in col_vals)
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
            tds.append(f'<td class="num" data-mean="{r.value!r}">{_e(text)}</td>')
        body.append(f'<tr><th scope="row">{_e(rv)}</th>{"".join(tds)}</tr>')
    cap = f"<caption>{_e(title)}</caption>" if title else ""
    return f'<table class="results paper">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
