"""The HTML building blocks of both reports: the page, figures, pivot tables and the result sections.

:func:`rulab.reports.build_report` (a study, from the results database) and
:func:`rulab.reports.evaluation.evaluation_report` (one evaluation in memory) draw the same blocks: the ID accuracy /
calibration table, one OOD detection table per metric, the far-away table and the figures drawn from an
evaluation's arrays, on the same self-contained page (CSS inline, figures as base64 PNG, no script). One concern:
turning result records into report HTML; the page layouts themselves live in :mod:`rulab.reports.html` and
:mod:`rulab.reports.evaluation`.

Table cells show ``mean ± std``, with the 95% interval in a smaller row below each row (Student t over seeds; for a
single run the percentile bootstrap over test images; :mod:`rulab.results.aggregate`); the value cells carry ``data-mean`` (the stored
fraction, full precision), ``data-n`` (seeds), ``data-lo``/``data-hi`` and a tooltip with the interval's method and the
per-seed values, so the page is readable and the numbers stay checkable. In a comparison the rows other than the
baseline hold signed differences, in bold where the interval excludes 0. Which metrics
the tables show, their labels, captions and units come from :mod:`rulab.metrics.catalog`. Markdown and LaTeX
versions of the same pivots are in :mod:`rulab.results.export`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rulab.data.corruptions import is_level
from rulab.eval.shift import CLEAN
from rulab.io import atomic_write_text
from rulab.metrics import catalog
from rulab.metrics.catalog import is_percent
from rulab.reports import plots
from rulab.results.aggregate import T_SEEDS, Pivot, Replicates, Stat, describe, interval_of, replicate_interval
from rulab.results.export import format_interval, format_stat, format_value, significant

__all__ = [
    "escape",
    "distinct",
    "figure_html",
    "scrolling",
    "write_page",
    "stat_cell",
    "interval_cell",
    "pivot_html",
    "records_pivot",
    "ID_CAPTION",
    "id_block",
    "ood_blocks",
    "farconf_block",
    "robust_accuracy_block",
    "array_figures",
    "shift_stats",
    "tuning_grids",
]

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--alt:#f6f8fa;--accent:#0969da;--head:#eef1f4}
*{box-sizing:border-box}
body{margin:0;background:#eceff3;color:var(--fg);
  font:14px/1.5 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 36px 64px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 2px}
h2{font-size:20px;margin:44px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:24px 0 6px}
p.sub{color:var(--muted);margin:0 0 16px}
p.note{color:var(--muted);font-size:12.5px;margin:4px 0 12px}
a{color:var(--accent);text-decoration:none}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;font-size:13px;margin:12px 0;
  padding:12px 16px;background:var(--alt);border-radius:6px}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;
  word-break:break-all}
nav.toc{font-size:13px;margin:14px 0 4px}
nav.toc a{display:inline-block;margin:0 6px 6px 0;padding:3px 10px;border:1px solid var(--line);border-radius:14px}
.tw{overflow-x:auto;margin:4px 0 14px}
table.results{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
table.results th,table.results td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;
  white-space:nowrap}
table.results thead th{background:var(--head);border-bottom:2px solid #c5ccd3;font-weight:600}
table.results tbody th{font-weight:600}
table.results .num{text-align:right}
table.results tbody tr:nth-child(even){background:var(--alt)}
table.results td.missing{color:#9aa4ae}
table.results .ci{font-size:11px;color:var(--muted);font-weight:400}
table.results tr.v td,table.results tr.v th{border-bottom:0}
table.results td.sig{font-weight:600;color:inherit}
table.with-ci tbody tr:nth-child(4n+3),table.with-ci tbody tr:nth-child(4n+4){background:var(--alt)}
table.with-ci tbody tr:nth-child(4n+1),table.with-ci tbody tr:nth-child(4n+2){background:transparent}
table.results caption{caption-side:bottom;text-align:left;color:var(--muted);font-size:12px;padding-top:5px;
  white-space:normal;max-width:1100px}
.tables{display:flex;flex-wrap:wrap;gap:0 40px;align-items:flex-start}
.tables>div{min-width:0;max-width:100%}
.figs{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px;margin:10px 0}
figure{margin:0;padding:8px 8px 6px;border:1px solid var(--line);border-radius:6px;background:#fff}
figure.wide{grid-column:1/-1}
figure img{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
details{margin:8px 0 14px;font-size:13px}
details summary{cursor:pointer;color:var(--muted)}
footer{margin-top:48px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
"""


# --------------------------------------------------------------------------------------------- markup


def escape(text: Any) -> str:
    """``str(text)`` with ``& < > " '`` escaped for HTML text and attribute values."""
    return html.escape(str(text), quote=True)


def distinct(values: Iterable[Any]) -> list[Any]:
    """The values in order of first appearance, without repeats, ``""`` and ``None``."""
    return [v for v in dict.fromkeys(v for v in values if v not in ("", None))]


def figure_html(uri: str | None, caption: str, wide: bool = False) -> str:
    """A ``<figure>`` of an image URI with its caption (``""`` for no image); ``wide`` spans both grid columns."""
    if not uri:
        return ""
    cls = ' class="wide"' if wide else ""
    return f'<figure{cls}><img src="{uri}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'


def scrolling(body: str) -> str:
    """``body`` (a table) in a horizontally scrolling box; ``""`` stays ``""``."""
    return f'<div class="tw">{body}</div>' if body else ""


def write_page(path: Path, title: str, body: str) -> Path:
    """Write ``body`` as a self-contained HTML page (inline CSS) to ``path``, atomically; returns ``path``."""
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
    atomic_write_text(path, doc)
    return path


# --------------------------------------------------------------------------------------------- pivot tables


def _method_text(stat: Stat) -> str:
    """How a cell's interval was computed, in words."""
    if stat.method == T_SEEDS:
        return f"95% interval: Student t over {stat.n} seeds"
    if stat.method == "paired-t-seeds":
        return f"95% interval: paired t over {stat.n} seeds"
    if stat.method.startswith("paired-bootstrap-percentile-"):
        return f"95% interval: paired percentile bootstrap over test images, {stat.method.rsplit('-', 1)[1]} resamples"
    if stat.method.startswith("bootstrap-percentile-"):
        return f"95% interval: percentile bootstrap over test images, {stat.method.rsplit('-', 1)[1]} resamples"
    return f"95% interval ({stat.method})" if stat.method else "no interval"


def stat_cell(stat: Stat | None, metric: str, row_n: int = 0, difference: bool = False) -> str:
    """One ``<td>`` showing ``mean ± std`` (percent for fraction metrics), with the numbers in data attributes;
    ``difference``: a signed difference, bold where its interval excludes 0. The interval itself is the cell below
    (:func:`interval_cell`)."""
    if stat is None or stat.n == 0:
        return '<td class="num missing">–</td>'
    pct = is_percent(metric)
    tip = f"n = {stat.n}"
    if stat.has_interval:
        tip += f"; {_method_text(stat)}"
    if stat.values:
        tip += "; per seed: " + ", ".join(format_value(v, metric, difference) for v in stat.values)
    text = format_stat(stat, metric, row_n=row_n, signed=difference)
    attrs = f'data-mean="{stat.mean!r}" data-n="{stat.n}" data-pct="{int(pct)}" title="{escape(tip)}"'
    if stat.has_interval:
        attrs += f' data-lo="{stat.lo!r}" data-hi="{stat.hi!r}"'
    cls = "num sig" if difference and significant(stat) else "num"
    return f'<td class="{cls}" {attrs}>{escape(text)}</td>'


def interval_cell(stat: Stat | None, metric: str, difference: bool = False) -> str:
    """The ``<td>`` under a :func:`stat_cell`: ``[lo, hi]`` of its 95% interval (empty without one)."""
    text = format_interval(stat, metric, signed=difference)
    cls = "num ci sig" if difference and significant(stat) else "num ci"
    title = f' title="{escape(_method_text(stat))}"' if stat is not None and stat.has_interval else ""
    return f'<td class="{cls}"{title}>{escape(text)}</td>'


def pivot_html(p: Pivot, caption: str | None = None, cls: str = "", seeds_column: bool = True) -> str:
    """A :class:`~rulab.results.aggregate.Pivot` as an HTML table (rows = methods or row labels); with intervals, each
    row is followed by a row holding them (``95% CI``)."""
    cap = caption if caption is not None else p.caption
    head = [f"<th>{escape(p.row_header)}</th>"] + (['<th class="num">seeds</th>'] if seeds_column else [])
    head += [
        f'<th class="num">{escape(label)}{" (%)" if is_percent(metric) else ""}</th>' for label, metric in p.columns
    ]
    ci = p.has_intervals()
    body = []
    for row in p.rows:
        n = p.seeds(row)
        diff = p.is_difference(row)
        label = row + (" (%)" if is_percent(p.row_metrics.get(row, "")) else "") + (f" − {p.baseline}" if diff else "")
        cells = [f'<th scope="row">{escape(label)}</th>'] + ([f'<td class="num">{n}</td>'] if seeds_column else [])
        cells += [stat_cell(p.cells.get((row, col)), p.metric_of(row, metric), n, diff) for col, metric in p.columns]
        body.append('<tr class="v">' + "".join(cells) + "</tr>")
        if ci:
            cells = ['<th scope="row" class="ci">95% CI</th>'] + (['<td class="num ci"></td>'] if seeds_column else [])
            cells += [
                interval_cell(p.cells.get((row, col)), p.metric_of(row, metric), diff) for col, metric in p.columns
            ]
            body.append('<tr class="ci">' + "".join(cells) + "</tr>")
    if p.notes:
        cap = (cap + ". " if cap else "") + "; ".join(p.notes)
    cap_html = f"<caption>{escape(cap)}</caption>" if cap else ""
    table_cls = escape(("results " + cls + (" with-ci" if ci else "")).strip())
    thead = f"<thead><tr>{''.join(head)}</tr></thead>"
    return f'<table class="{table_cls}">{cap_html}{thead}<tbody>{"".join(body)}</tbody></table>'


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
    replicates: Replicates | None = None,
) -> Pivot:
    """Pivot stored records of one method: rows by column ``row``, columns by column ``col``, stats over runs.

    Args:
        records: result records (``ResultStore.results``) of the runs of one method.
        row: the record field whose values are the rows (e.g. ``"detector"``).
        col: the record field whose values are the columns (e.g. ``"dataset"``).
        metric: the metric of every cell (decides formatting); default: the column (or, with ``row="metric"``, the
            row) value itself is the metric.
        row_labels: display names of row values (``{"": "raw"}``).
        col_labels: display names of column values.
        row_order: preferred order of the rows (others follow in order of appearance).
        col_order: preferred order of the columns.
        mean_column: if set, add a column with this label holding, per run, the mean over the row's columns,
            summarised over runs.
        row_header: header of the label column.
        replicates: reads a run's bootstrap replicates, so that the mean column of a single run gets an interval.

    Cells over several runs get the Student t interval over runs; a single run's cell gets its stored interval.
    """
    per: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    per_run_mean: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    rows: list[str] = []
    cols: list[str] = []
    for r in records:
        rv, cv = str(r[row]), str(r[col])
        if rv not in rows:
            rows.append(rv)
        if cv not in cols:
            cols.append(cv)
        per.setdefault((rv, cv), []).append(r)
        if mean_column:
            per_run_mean.setdefault(rv, {}).setdefault(r["run_id"], []).append(r)

    def ordered(values: list[str], order: Sequence[str] | None) -> list[str]:
        if not order:
            return values
        return [v for v in order if v in values] + [v for v in values if v not in order]

    rows, cols = ordered(rows, row_order), ordered(cols, col_order)
    labels, clabels = dict(row_labels or {}), dict(col_labels or {})
    cells: dict[tuple[str, str], Stat] = {}
    columns = [(clabels.get(c, c), metric or (c if col == "metric" else "")) for c in cols]
    row_metrics = {labels.get(r, r): r for r in rows} if row == "metric" and metric is None else {}
    for (rv, cv), recs in per.items():
        m = metric or (cv if col == "metric" else rv if row == "metric" else "")
        cells[(labels.get(rv, rv), clabels.get(cv, cv))] = describe(
            [float(r["value"]) for r in recs], metric=m, interval=interval_of(recs[0]) if len(recs) == 1 else None
        )
    if mean_column:
        columns.append((mean_column, metric or ""))
        for rv, runs in per_run_mean.items():
            means = [
                float(sum(float(r["value"]) for r in v) / len(v))
                if not any(math.isnan(float(r["value"])) for r in v)
                else math.nan
                for v in runs.values()
            ]
            single = None
            if len(runs) == 1 and replicates is not None:
                run_id, recs = next(iter(runs.items()))
                single = replicate_interval(replicates(run_id, recs))
            cells[(labels.get(rv, rv), mean_column)] = describe(means, metric=metric or "", interval=single)
    return Pivot([labels.get(r, r) for r in rows], columns, cells, row_header=row_header, row_metrics=row_metrics)


# --------------------------------------------------------------------------------------------- result sections

ID_CAPTION = "ECE/MCE: 15 uniform bins; RMS/MAD: adaptive bins of 100; rms_uniform10: 10 uniform bins (W2)"
"""Caption of the ID accuracy / calibration table."""


def id_block(recs: Sequence[Mapping[str, Any]], caption: str = ID_CAPTION) -> str:
    """The ID accuracy / calibration table, metric × (raw logits, temperature-scaled); "" without ``kind="id"`` rows.

    Rows are the ``calibration`` metrics of :mod:`rulab.metrics.catalog`, in their declared order (then any other).
    """
    idr = [r for r in recs if r["kind"] == "id"]
    if not idr:
        return ""
    p = records_pivot(
        idr,
        "metric",
        "detector",
        col_labels={"": "raw logits", "ts": "temperature-scaled"},
        row_order=catalog.names("calibration"),
        col_order=("", "ts"),
        row_header="metric",
    )
    return "<h3>Accuracy and calibration on the ID test set</h3>" + scrolling(
        pivot_html(p, caption=caption, seeds_column=False)
    )


def ood_blocks(
    ood: Sequence[Mapping[str, Any]],
    detectors: Sequence[str],
    metrics: Sequence[str] | None = None,
    replicates: Replicates | None = None,
) -> list[str]:
    """One table per OOD detection metric (the ``detection`` metrics of :mod:`rulab.metrics.catalog` that have a
    direction; only ``metrics`` if given) that the ``kind="ood"`` rows hold.

    Each is detector × OOD set with a mean column, rows in the order of ``detectors``; its heading and caption are the
    metric's declared ones, and AUPR captions add the OOD:ID ratio of every set when the rows have ``ood_ratio``.
    """
    ratio = {r["dataset"]: r["value"] for r in ood if r["metric"] == "ood_ratio"}
    blocks = []
    for m in catalog.metrics("detection"):
        sel = [r for r in ood if r["metric"] == m.name]
        if m.higher_is_better is None or not sel or (metrics is not None and m.name not in metrics):
            continue
        note = m.caption
        if m.name.startswith("aupr") and ratio:
            note += "; OOD:ID ratio " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items())
        p = records_pivot(
            sel,
            "detector",
            "dataset",
            metric=m.name,
            row_order=detectors,
            mean_column="mean",
            row_header="detector",
            replicates=replicates,
        )
        blocks.append(
            f"<h3>OOD detection: {escape(m.heading)}</h3>" + scrolling(pivot_html(p, caption=note, seeds_column=False))
        )
    return blocks


def farconf_block(recs: Sequence[Mapping[str, Any]]) -> str:
    """The far-away / worst-case confidence table, (set / detector) × metric; "" without ``kind="farconf"`` rows."""
    far = [r for r in recs if r["kind"] == "farconf"]
    if not far:
        return ""
    rows = [{**r, "set": r["dataset"] + (f" / {r['detector']}" if r["detector"] else "")} for r in far]
    p = records_pivot(rows, "set", "metric", row_header="set")
    return "<h3>Far-away and worst-case confidence</h3>" + scrolling(
        pivot_html(p, caption="MMC: mean max-confidence; lower on noise is better", seeds_column=False)
    )


def robust_accuracy_block(recs_by_group: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Clean and adversarial accuracy side by side, one row per method (the ``adv_samples`` rows ``clean_acc`` and
    ``adv_acc``: the same attacked test images before and after PGD); "" when no method has them."""
    rows = [
        {**r, "method": group}
        for group, recs in recs_by_group.items()
        for r in recs
        if r["kind"] == "farconf" and r["dataset"] == "adv_samples" and r["metric"] in ("clean_acc", "adv_acc")
    ]
    if not rows:
        return ""
    attacks = []
    for r in rows:
        e = r.get("extra") or {}
        if r["metric"] == "adv_acc" and e.get("eps") is not None:
            text = (
                f"PGD-{e.get('steps')} at ε = {float(e['eps']) * 255:.3g}/255, step {float(e.get('step_size', 0.0)) * 255:.3g}/255, "
                f"{e.get('restarts', 1)} random start(s)"
            )
            if text not in attacks:
                attacks.append(text)
    p = records_pivot(rows, "method", "metric", col_order=("clean_acc", "adv_acc"), row_header="method")
    caption = "accuracy on the attacked test images before and after L∞ PGD on the cross-entropy"
    if attacks:
        caption += "; " + "; ".join(attacks)
    return "<h3>Clean and adversarial accuracy</h3>" + scrolling(pivot_html(p, caption=caption, seeds_column=False))


def _float64(values: Any) -> np.ndarray:
    """A tensor or array-like as a float64 numpy array."""
    return np.asarray(values.double().numpy() if hasattr(values, "double") else values, dtype=float)


def array_figures(arrays: Mapping[str, Any], detector: str, max_points: int, tag: str = "") -> list[str]:
    """The figures drawn from one evaluation's arrays, as ``<figure>`` HTML.

    ROC and precision-recall curves and score histograms of ``detector`` (else the first detector with scores; keys
    ``scores/<detector>/id`` and ``scores/<detector>/<ood set>``), reliability diagrams before and after temperature
    scaling (``id/logits``, ``id/labels``, ``ts/temperature``), ODIN's detection against T and ε from its tuning grid
    (``tuning/<detector>/<source>/...``), the far-away panels (``farconf/...``) and the most confident inputs of the
    far-away section (``farconf_top/<set>/...``); what the arrays cannot draw is ``""``. ``tag`` ends every caption
    (e.g. ``" (seed 0)"``).
    """
    figs: list[str] = []
    dets = distinct(k.split("/")[1] for k in arrays if k.startswith("scores/") and k.count("/") == 2)
    det = detector if detector in dets else (dets[0] if dets else None)
    if det is not None and f"scores/{det}/id" in arrays:
        s_id = _float64(arrays[f"scores/{det}/id"])
        sets = {
            k.split("/", 2)[2]: _float64(v)
            for k, v in arrays.items()
            if k.startswith(f"scores/{det}/") and k != f"scores/{det}/id"
        }
        if sets:
            figs.append(
                figure_html(
                    plots.roc_pr({k: (s_id, v) for k, v in sets.items()}, det, max_points),
                    f"ROC and precision-recall curves of the {det} score per OOD set{tag}",
                    wide=True,
                )
            )
            figs.append(
                figure_html(
                    plots.score_histograms(s_id, sets, det),
                    f"{det} score histograms: ID test set vs each OOD set{tag}",
                    wide=True,
                )
            )
    if "id/logits" in arrays and "id/labels" in arrays:
        t = arrays.get("ts/temperature")
        temp = float(t.reshape(-1)[0]) if t is not None and t.numel() else None
        figs.append(
            figure_html(
                plots.reliability(arrays["id/logits"], arrays["id/labels"], temp),
                f"reliability diagrams before and after temperature scaling{tag}",
            )
        )
    grids = tuning_grids(arrays)
    for det_name, per_source in grids.items():
        figs.append(
            figure_html(
                plots.tuning_grids(per_source, det_name),
                f"{det_name}: FPR at 95% TPR and AUROC on the tuning images against T and ε, per tuning source "
                f"(Liang et al. 2018, Figures 3-4; circles: the chosen point){tag}",
                wide=True,
            )
        )
    figs.append(
        figure_html(
            plots.farconf_curves(arrays, max_points),
            f"far-away confidence: alpha scaling, PGD on noise and the confidence of noise and attacks{tag}",
            wide=True,
        )
    )
    top = {
        k.split("/")[1]: (arrays[k], arrays.get(k[: -len("images")] + "conf"))
        for k in arrays
        if k.startswith("farconf_top/") and k.endswith("/images")
    }
    top = {
        k: (x.float() / 255 if hasattr(x, "float") else np.asarray(x) / 255.0, c)
        for k, (x, c) in top.items()
        if c is not None
    }
    if top:
        figs.append(
            figure_html(
                plots.image_grid(top),
                f"the most confident inputs of every noise, attack and OOD set, confidence in % (Hein et al. 2019){tag}",
                wide=True,
            )
        )
    return figs


def tuning_grids(arrays: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The tuning grids an evaluation kept (``tuning/<detector>/<source>/{t,eps,fpr95_id,auroc}``), as
    ``{detector: {source: {key: array}}}``; sources without a complete grid are left out."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for k, v in arrays.items():
        parts = k.split("/")
        if len(parts) == 4 and parts[0] == "tuning" and parts[3] in ("t", "eps", "fpr95_id", "auroc"):
            out.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = v
    return {
        d: {s: g for s, g in srcs.items() if len(g) == 4}
        for d, srcs in out.items()
        if any(len(g) == 4 for g in srcs.values())
    }


def shift_stats(recs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, dict[str, dict[str, Stat]]], dict[str, Stat]]:
    """Mean ± std over runs per (shift, severity level, metric) of the per-cell rows (aggregate rows left out), and
    the clean test set's accuracy and ECE."""
    # the clean reference (shift "clean", severity 0) is the dashed line of every panel, not a corruption of its own
    shift = [r for r in recs if r["kind"] == "shift" and r["shift"] and r["shift"] != CLEAN and is_level(r["severity"])]
    if any(r["detector"] == "" for r in shift):
        shift = [r for r in shift if r["detector"] == ""]
    acc: dict[tuple[str, str, str], list[float]] = {}
    for r in shift:
        acc.setdefault((r["shift"], r["severity"], r["metric"]), []).append(float(r["value"]))
    stats: dict[str, dict[str, dict[str, Stat]]] = {}
    for (s, sev, m), vals in acc.items():
        stats.setdefault(s, {}).setdefault(sev, {})[m] = describe(vals)
    clean: dict[str, Stat] = {}
    for m in ("acc", "ece"):
        vals = [float(r["value"]) for r in recs if r["kind"] == "id" and r["metric"] == m and r["detector"] == ""]
        if vals:
            clean[m] = describe(vals)
    return stats, clean
