"""The single-file HTML report (docs/guide/reports.md): a view of the results database.

``build_report(db, study=...)`` writes one self-contained ``.html`` file: CSS inline, figures inlined as base64 PNG,
no script and no external asset, so it can be mailed or archived as it is. Sections:

* a header: study, date, versions, git commits, devices, seeds, datasets and wall time;
* the comparison of methods: the summary table (mean ± std over seeds), bar charts, accuracy against shift
  severity per method, and, for a paper study, the paper-style tables of :mod:`rulab.reports.paper_tables`;
* per method: the accuracy / calibration table (raw and temperature-scaled), OOD AUROC and FPR95 per detector and
  OOD set, the far-away table, ROC and precision-recall curves, score histograms ID vs each OOD set, reliability
  diagrams before and after temperature scaling, accuracy and ECE against severity per corruption, alpha-scaling /
  adversarial-noise curves, and training / validation curves.

Tables come from the ``results`` and ``curves`` tables (mean ± std over seeds); curves and histograms come from the
arrays each evaluation saved in ``<run_dir>/eval/<benchmark>/arrays.safetensors`` (keys ``scores/<detector>/id``,
``scores/<detector>/<ood set>``, ``id/logits``, ``id/labels``, ``ts/temperature``, ``farconf/...``) of the
lowest seed that has them; whatever is missing is left out without an error.
"""

from __future__ import annotations

import html
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rulab.errors import StoreError
from rulab.eval.results import ResultTable, Row
from rulab.reports import plots
from rulab.reports.tables import PaperTable, pivot_html, records_pivot
from rulab.results.aggregate import Stat, describe, group_of, summary_pivot
from rulab.results.store import DEFAULT_DB, ResultStore

__all__ = ["build_report", "mean_table"]

ID_METRICS = ("acc", "nll", "brier", "ece", "rms", "mad", "rms_uniform10", "mce", "soft_f1", "mmc", "temperature")
_CURVE_METRICS = ("loss", "acc", "nll", "ece")
_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--alt:#f6f8fa;--accent:#0969da;--head:#eef1f4}
*{box-sizing:border-box}
body{margin:0;background:#eceff3;color:var(--fg);font:14px/1.5 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 36px 64px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 2px}
h2{font-size:20px;margin:44px 0 10px;padding-bottom:6px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:24px 0 6px}
p.sub{color:var(--muted);margin:0 0 16px}
p.note{color:var(--muted);font-size:12.5px;margin:4px 0 12px}
a{color:var(--accent);text-decoration:none}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;font-size:13px;margin:12px 0;padding:12px 16px;background:var(--alt);border-radius:6px}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
nav.toc{font-size:13px;margin:14px 0 4px}
nav.toc a{display:inline-block;margin:0 6px 6px 0;padding:3px 10px;border:1px solid var(--line);border-radius:14px}
.tw{overflow-x:auto;margin:4px 0 14px}
table.results{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
table.results th,table.results td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
table.results thead th{background:var(--head);border-bottom:2px solid #c5ccd3;font-weight:600}
table.results tbody th{font-weight:600}
table.results .num{text-align:right}
table.results tbody tr:nth-child(even){background:var(--alt)}
table.results td.missing{color:#9aa4ae}
table.results caption{caption-side:bottom;text-align:left;color:var(--muted);font-size:12px;padding-top:5px;white-space:normal;max-width:1100px}
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


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _anchor(name: str) -> str:
    return "m-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _figure(uri: str | None, caption: str, wide: bool = False) -> str:
    if not uri:
        return ""
    cls = ' class="wide"' if wide else ""
    return f'<figure{cls}><img src="{uri}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _table(body: str) -> str:
    return f'<div class="tw">{body}</div>' if body else ""


def _uniq(values: Iterable[Any]) -> list[Any]:
    return [v for v in dict.fromkeys(v for v in values if v not in ("", None))]


def _arrays_file(run: Mapping[str, Any]) -> Path | None:
    ckpt = run.get("checkpoint") or ""
    if not ckpt:
        return None
    run_dir = Path(ckpt).parent if ckpt.endswith(".safetensors") else Path(ckpt)
    bench = ((run.get("config") or {}).get("eval") or {}).get("benchmark", "")
    if bench and (run_dir / "eval" / bench / "arrays.safetensors").exists():
        return run_dir / "eval" / bench / "arrays.safetensors"
    found = sorted((run_dir / "eval").glob("*/arrays.safetensors")) if (run_dir / "eval").is_dir() else []
    return found[0] if found else None


def _load_arrays(path: Path) -> dict[str, Any]:
    try:
        return ResultTable.load_arrays(path)
    except Exception:  # noqa: BLE001 - a damaged arrays file only costs its figures
        return {}


_ID_CAPTION = "ECE/MCE: 15 uniform bins; RMS/MAD: adaptive bins of 100; rms_uniform10: 10 uniform bins (W2)"
_OOD_TABLES = (
    ("auroc", "AUROC (%)", "higher is better; ID is the positive class"),
    ("fpr95_id", "FPR at 95% TPR (%)", "fraction of OOD accepted at the threshold keeping 95% of ID; lower is better"),
    ("aupr_in", "AUPR-In (%)", "ID positive; read it beside the OOD:ID ratio"),
    ("aupr_out", "AUPR-Out (%)", "OOD positive, scores negated"),
    ("detection_error", "detection error (%)", "min over thresholds of ½(1 − TPR) + ½ FPR; lower is better"),
)
"""The OOD detection tables a report may show: (metric, heading, caption)."""


def _id_block(recs: Sequence[Mapping[str, Any]], caption: str = _ID_CAPTION) -> str:
    """The ID accuracy / calibration table, metric × (raw logits, temperature-scaled); "" without ``kind="id"`` rows."""
    idr = [r for r in recs if r["kind"] == "id"]
    if not idr:
        return ""
    p = records_pivot(idr, "metric", "detector", col_labels={"": "raw logits", "ts": "temperature-scaled"}, row_order=ID_METRICS, col_order=("", "ts"), row_header="metric")
    return "<h3>Accuracy and calibration on the ID test set</h3>" + _table(pivot_html(p, caption=caption, seeds_column=False))


def _ood_blocks(ood: Sequence[Mapping[str, Any]], detectors: Sequence[str], metrics: Sequence[str] | None = None) -> list[str]:
    """One table per metric of :data:`_OOD_TABLES` (only ``metrics`` if given) that the ``kind="ood"`` rows hold.

    Each is detector × OOD set with a mean column, rows in the order of ``detectors``; AUPR captions add the OOD:ID
    ratio of every set when the rows have ``ood_ratio``.
    """
    ratio = {r["dataset"]: r["value"] for r in ood if r["metric"] == "ood_ratio"}
    blocks = []
    for metric, head, note in _OOD_TABLES:
        sel = [r for r in ood if r["metric"] == metric]
        if not sel or (metrics is not None and metric not in metrics):
            continue
        if metric.startswith("aupr") and ratio:
            note += "; OOD:ID ratio " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items())
        p = records_pivot(sel, "detector", "dataset", metric=metric, row_order=detectors, mean_column="mean", row_header="detector")
        blocks.append(f"<h3>OOD detection: {_e(head)}</h3>" + _table(pivot_html(p, caption=note, seeds_column=False)))
    return blocks


def _farconf_block(recs: Sequence[Mapping[str, Any]]) -> str:
    """The far-away / worst-case confidence table, (set / detector) × metric; "" without ``kind="farconf"`` rows."""
    far = [r for r in recs if r["kind"] == "farconf"]
    if not far:
        return ""
    rows = [{**r, "set": r["dataset"] + (f" / {r['detector']}" if r["detector"] else "")} for r in far]
    p = records_pivot(rows, "set", "metric", row_header="set")
    return "<h3>Far-away and worst-case confidence</h3>" + _table(pivot_html(p, caption="MMC: mean max-confidence; lower on noise is better", seeds_column=False))


def _float64(values: Any) -> Any:
    """A tensor or array-like as a float64 numpy array."""
    import numpy as np

    return np.asarray(values.double().numpy() if hasattr(values, "double") else values, dtype=float)


def _array_figures(arrays: Mapping[str, Any], detector: str, max_points: int, tag: str = "") -> list[str]:
    """The figures drawn from one evaluation's arrays (keys in the module docstring), as ``<figure>`` HTML.

    ROC and precision-recall curves and score histograms of ``detector`` (else the first detector with scores),
    reliability diagrams before and after temperature scaling, and the far-away curves; what the arrays cannot
    draw is ``""``. ``tag`` ends every caption (e.g. ``" (seed 0)"``).
    """
    figs: list[str] = []
    dets = _uniq(k.split("/")[1] for k in arrays if k.startswith("scores/") and k.count("/") == 2)
    det = detector if detector in dets else (dets[0] if dets else None)
    if det is not None and f"scores/{det}/id" in arrays:
        s_id = _float64(arrays[f"scores/{det}/id"])
        sets = {k.split("/", 2)[2]: _float64(v) for k, v in arrays.items() if k.startswith(f"scores/{det}/") and k != f"scores/{det}/id"}
        if sets:
            figs.append(_figure(plots.roc_pr({k: (s_id, v) for k, v in sets.items()}, det, max_points), f"ROC and precision-recall curves of the {det} score per OOD set{tag}", wide=True))
            figs.append(_figure(plots.score_histograms(s_id, sets, det), f"{det} score histograms: ID test set vs each OOD set{tag}", wide=True))
    if "id/logits" in arrays and "id/labels" in arrays:
        t = arrays.get("ts/temperature")
        temp = float(t.reshape(-1)[0]) if t is not None and t.numel() else None
        figs.append(_figure(plots.reliability(arrays["id/logits"], arrays["id/labels"], temp), f"reliability diagrams before and after temperature scaling{tag}"))
    figs.append(_figure(plots.farconf_curves(arrays, max_points), f"far-away confidence: alpha scaling and adversarial noise{tag}"))
    return figs


def _write_page(path: Path, title: str, body: str) -> Path:
    """Write ``body`` as a self-contained HTML page (inline CSS) to ``path``, atomically; returns ``path``."""
    from rulab.io import atomic_write_text

    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>{body}</main></body></html>\n"
    )
    atomic_write_text(path, doc)
    return path


def mean_table(records: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> ResultTable:
    """The per-key mean over seeds of one method's records, as a ResultTable (``extra`` holds ``std`` and ``seeds``).

    This is what the paper-table hook receives.
    """
    groups: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        groups.setdefault((r["kind"], r["dataset"], r["shift"], r["severity"], r["detector"], r["metric"]), []).append(float(r["value"]))
    rows = []
    for (kind, dataset, shift, sev, det, metric), vals in groups.items():
        s = describe(vals)
        rows.append(Row(kind, metric, s.mean, dataset, shift, sev, det, s.n, {"std": s.std, "seeds": s.n}))
    return ResultTable(rows, meta=dict(meta or {}))


def _is_level(text: Any) -> bool:
    """Whether a shift row's ``severity`` is a level (``"3"``, ``"0.5"``), not an aggregate (``"mean"``, ``""``)."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _shift_stats(recs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, dict[str, dict[str, Stat]]], dict[str, Stat]]:
    """Mean ± std over runs per (shift, severity level, metric) of the per-cell rows (aggregate rows left out), and
    the clean test set's accuracy and ECE."""
    shift = [r for r in recs if r["kind"] == "shift" and r["shift"] and _is_level(r["severity"])]
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


def _shift_by_method(recs_by_group: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[float, Stat]]:
    out: dict[str, dict[float, Stat]] = {}
    for g, recs in recs_by_group.items():
        per_run: dict[float, dict[str, list[float]]] = {}
        for r in recs:
            if r["metric"] != "acc" or r["detector"] not in ("",):
                continue
            if r["kind"] == "id":
                per_run.setdefault(0.0, {}).setdefault(r["run_id"], []).append(float(r["value"]))
            elif r["kind"] == "shift":
                try:
                    sev = float(r["severity"])
                except ValueError:
                    continue
                if sev.is_integer() and 1 <= sev <= 5:
                    per_run.setdefault(sev, {}).setdefault(r["run_id"], []).append(float(r["value"]))
        if len(per_run) > 1:
            out[g] = {sev: describe([sum(v) / len(v) for v in runs.values()]) for sev, runs in sorted(per_run.items())}
    return out


def _curve_points(curves: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[int, list[float]]]]:
    pts: dict[str, dict[str, dict[int, list[float]]]] = {}
    for c in curves:
        if c["metric"] in _CURVE_METRICS and not math.isnan(c["value"]):
            pts.setdefault(c["metric"], {}).setdefault(c["split"], {}).setdefault(int(c["epoch"]), []).append(float(c["value"]))
    return pts


def _header(title: str, description: str, runs: Sequence[Mapping[str, Any]], groups: Sequence[str], build_s: float | None = None) -> str:
    def joined(key: str) -> str:
        vals = _uniq(r.get(key) for r in runs)
        return ", ".join(str(v) for v in vals) or "–"

    seeds = sorted({r["seed"] for r in runs if r.get("seed") is not None})
    starts = [r["started_at"] for r in runs if r.get("started_at")]
    ends = [r["finished_at"] for r in runs if r.get("finished_at")]
    wall = "–"
    if starts and ends:
        t0 = datetime.fromisoformat(min(starts).replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(max(ends).replace("Z", "+00:00"))
        secs = max((t1 - t0).total_seconds(), 0.0)
        wall = f"{secs / 60:.1f} min (first run started {min(starts)[:19].replace('T', ' ')} UTC, last finished {max(ends)[:19].replace('T', ' ')} UTC)"
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    checks: dict[str, str] = {}
    for r in runs:
        checks.update(r.get("dataset_checksums") or {})
    items = [
        ("study", joined("study")),
        ("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("runs", f"{len(runs)} (" + ", ".join(f"{n} {s}" for s, n in statuses.items()) + ")"),
        ("methods", ", ".join(groups)),
        ("seeds", ", ".join(str(s) for s in seeds) or "–"),
        ("model / data", f"{joined('model')} on {joined('dataset')}"),
        ("rulab", joined("rulab_version")),
        ("torch", joined("torch_version")),
        ("git commit", joined("git_commit")),
        ("device", joined("device")),
        ("wall time", wall),
    ]
    if checks:
        items.append(("data MD5", "; ".join(f"{k} {v[:12]}…" for k, v in sorted(checks.items()))))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    sub = f'<p class="sub">{_e(description)}</p>' if description else ""
    return f"<header><h1>{_e(title)}</h1>{sub}<dl class=\"meta\">{dl}</dl></header>"


def _method_section(
    group: str, runs: Sequence[Mapping[str, Any]], recs: Sequence[Mapping[str, Any]], curves: Sequence[Mapping[str, Any]],
    detector: str, max_points: int, paper: str,
) -> str:
    parts = [f'<section id="{_anchor(group)}"><h2>{_e(group)}</h2>']
    seeds = sorted({r["seed"] for r in runs if r.get("seed") is not None})
    parts.append(f'<p class="sub">method {_e(", ".join(_uniq(r["method"] for r in runs)) or "–")} · model {_e(", ".join(_uniq(r["model"] for r in runs)) or "–")} · '
                 f"{len(runs)} run(s), seeds {_e(', '.join(map(str, seeds)) or '–')} · tables: mean ± std over seeds (hover a number for its seeds and bootstrap interval)</p>")

    # ---- tables (side by side where they fit)
    ood = [r for r in recs if r["kind"] == "ood"]
    blocks = [
        _id_block(recs, _ID_CAPTION + "; temperature fitted on the validation split"),
        *_ood_blocks(ood, _uniq([detector] + [r["detector"] for r in ood]), metrics=("auroc", "fpr95_id")),
        _farconf_block(recs),
    ]
    blocks = [b for b in blocks if b]
    if blocks:
        parts.append('<div class="tables">' + "".join(f"<div>{b}</div>" for b in blocks) + "</div>")
    if paper:
        parts.append(paper)

    # ---- figures from the arrays of the lowest seed that has them
    figs: list[str] = []
    arrays: dict[str, Any] = {}
    tag = ""
    for r in sorted(runs, key=lambda r: (r.get("seed") is None, r.get("seed"))):
        f = _arrays_file(r)
        arrays = _load_arrays(f) if f is not None else {}
        if arrays:
            tag = f" (seed {r['seed']})"
            break
    if arrays:
        figs += _array_figures(arrays, detector, max_points, tag)
    stats, clean = _shift_stats(recs)
    if stats:
        figs.append(_figure(plots.severity(stats, clean), "accuracy and ECE against shift severity per corruption (mean ± std over seeds; dashed: clean test set)", wide=True))
    pts = _curve_points(curves)
    if pts:
        figs.append(_figure(plots.training_curves(pts), "training and validation curves (thin: each seed; thick: mean)", wide=len(pts) > 2))
    figs = [f for f in figs if f]
    if figs:
        parts.append('<h3>Figures</h3><div class="figs">' + "".join(figs) + "</div>")

    # ---- provenance of the runs
    rows = "".join(
        f"<tr><th scope=\"row\">{_e(r['name'])}</th><td>{_e(r['seed'])}</td><td>{_e(r['status'])}</td><td>{_e(r['run_id'])}</td>"
        f"<td>{_e((r.get('finished_at') or '')[:19].replace('T', ' '))}</td><td>{_e(r.get('device', ''))}</td><td>{_e(r.get('checkpoint', ''))}</td></tr>"
        for r in runs
    )
    parts.append('<details><summary>runs of this method</summary><div class="tw"><table class="results"><thead><tr><th>name</th><th>seed</th><th>status</th>'
                 f"<th>run id</th><th>finished (UTC)</th><th>device</th><th>checkpoint</th></tr></thead><tbody>{rows}</tbody></table></div></details>")
    parts.append("</section>")
    return "".join(parts)


def build_report(
    db: str | os.PathLike[str] = DEFAULT_DB,
    study: str | None = None,
    out: str | os.PathLike[str] | None = None,
    run_ids: Sequence[str] | None = None,
    detector: str = "msp",
    paper_tables: Sequence[PaperTable] = (),
    max_points: int = 400,
    title: str | None = None,
) -> Path:
    """Write the self-contained HTML report of the runs in ``db`` and return its path.

    Args:
        db: the results database.
        study: only the runs of this study (default: every run in the database).
        out: the HTML file (default ``report.html`` beside the database).
        run_ids: only these runs (e.g. the cells of one ``run_study`` call).
        detector: the detector whose ROC curves and histograms are drawn (falls back to the first one stored).
        paper_tables: hook for paper-style tables: functions ``f(ResultTable) -> "<table>..."`` called with each
            method's mean results (:func:`mean_table`); their HTML goes into that method's section.
        max_points: curves are downsampled to at most this many points.
        title: page title (default ``rulab report: <study>``).

    Raises:
        StoreError: no database, or no runs in it.
        RulabError: matplotlib is missing (``pip install 'rulab[report]'``).
    """
    t0 = time.time()
    db = Path(db)
    if not db.exists():
        raise StoreError(f"there is no results database at {db}; run a study first (`rulab study fmnist-default`) or pass --db")
    out = Path(out) if out is not None else db.parent / "report.html"
    store = ResultStore(db)
    runs = store.runs(**({"study": study} if study else {}))
    if run_ids is not None:
        keep = set(run_ids)
        runs = [r for r in runs if r["run_id"] in keep]
    if not runs:
        where = f" for study '{study}'" if study else ""
        known = sorted({r["study"] for r in store.runs() if r["study"]})
        if known:
            raise StoreError(f"{db} holds no runs{where}; studies in it: {', '.join(known)} (pass one with --study)")
        raise StoreError(f"{db} holds no runs{where}; run `rulab study fmnist-default --db {db}` (or `rulab eval CHECKPOINT --db {db}`) first")
    ids = [r["run_id"] for r in runs]
    records = store.results(run_id=ids)
    curves = store.curves(run_id=ids)
    store.close()
    description = ""
    if study:
        from rulab.registry import STUDIES

        if study in STUDIES:
            description = STUDIES.create(study).description

    groups = _uniq(group_of(r) for r in runs)
    runs_of = {g: [r for r in runs if group_of(r) == g] for g in groups}
    recs_of = {g: [r for r in records if group_of(r) == g] for g in groups}
    curves_by_run: dict[str, list[Mapping[str, Any]]] = {}
    for c in curves:
        curves_by_run.setdefault(c["run_id"], []).append(c)

    # ---- comparison
    summary = summary_pivot(records)
    comp = ['<section id="comparison"><h2>Comparison of methods</h2>']
    if summary.columns:
        n_max = max((summary.seeds(r) for r in summary.rows), default=0)
        comp.append(_table(pivot_html(summary)))
        if n_max and n_max < 10:
            comp.append(f'<p class="note">With {n_max} seed(s) the bootstrap intervals in the tooltips are crude; the std (ddof=1) is the number to read.</p>')
        figs = [_figure(plots.comparison_bars(summary), "summary measures per method (error bars: std over seeds)", wide=True)]
        sbm = _shift_by_method(recs_of)
        if sbm:
            figs.append(_figure(plots.shift_by_method(sbm), "mean accuracy over the severity-graded corruptions against severity, per method"))
        comp.append('<div class="figs">' + "".join(f for f in figs if f) + "</div>")
    else:
        comp.append('<p class="note">No evaluation results are stored for these runs yet.</p>')
    if study:  # a paper study (rulab.presets.paper.PaperStudy) adds its paper-style tables
        from rulab.reports.paper_tables import study_paper_html

        comp.append(study_paper_html(study, recs_of))
    comp.append("</section>")

    sections = []
    for g in groups:
        paper = ""
        if paper_tables:
            mt = mean_table(recs_of[g], {"method": g, "study": study or ""})
            paper = "".join(_table(f(mt)) for f in paper_tables)
            paper = f"<h3>Paper tables</h3>{paper}" if paper else ""
        group_curves = [c for r in runs_of[g] for c in curves_by_run.get(r["run_id"], [])]
        sections.append(_method_section(g, runs_of[g], recs_of[g], group_curves, detector, max_points, paper))

    page_title = title or f"rulab report: {study or 'all runs'}"
    toc = '<nav class="toc"><a href="#comparison">comparison</a>' + "".join(f'<a href="#{_anchor(g)}">{_e(g)}</a>' for g in groups) + "</nav>"
    body = (
        _header(page_title, description, runs, groups) + toc + "".join(comp) + "".join(sections)
        + f"<footer>Generated by rulab from {_e(db)} in {time.time() - t0:.1f} s. Values are stored as fractions; tables show percent with 2 decimals "
        "for fraction metrics. Every number is also in the database (`rulab results`).</footer>"
    )
    return _write_page(out, page_title, body)
