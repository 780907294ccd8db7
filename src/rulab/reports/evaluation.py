"""The single-file HTML report of ONE evaluation (a :class:`~rulab.eval.results.ResultTable` in memory, no database).

``evaluation_report(table, "report.html")`` (also ``table.report(path)``) writes the same kind of self-contained page
as :func:`rulab.reports.build_report` (inline CSS, figures as base64 PNG, no script): what was evaluated, the
accuracy / calibration table raw and temperature-scaled, the OOD detection tables per detector and OOD set, the
shift and far-away tables, and the figures drawn from the table's arrays: ROC and precision-recall curves, score
histograms ID vs each OOD set, reliability diagrams before and after temperature scaling, accuracy and ECE against
shift severity, and the far-away curves. Whatever the table lacks is left out without an error.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rulab.eval.results import ResultTable
from rulab.reports import plots
from rulab.reports.html import _CSS, ID_METRICS, _e, _figure, _shift_stats, _table
from rulab.reports.tables import pivot_html, records_pivot

__all__ = ["evaluation_report"]

_OOD_TABLES = (
    ("auroc", "AUROC (%)", "higher is better; ID is the positive class"),
    ("fpr95_id", "FPR at 95% TPR (%)", "fraction of OOD accepted at the threshold keeping 95% of ID; lower is better"),
    ("aupr_in", "AUPR-In (%)", "ID positive; read it beside the OOD:ID ratio"),
    ("aupr_out", "AUPR-Out (%)", "OOD positive, scores negated"),
    ("detection_error", "detection error (%)", "min over thresholds of ½(1 − TPR) + ½ FPR; lower is better"),
)


def _meta_items(table: ResultTable) -> list[tuple[str, str]]:
    m = table.meta
    items = [("generated", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    for key in ("model", "checkpoint", "run", "benchmark", "protocol", "seed", "parity", "model_key"):
        if m.get(key) not in (None, ""):
            items.append((key, str(m[key])))
    if m.get("normalisation"):
        items.append(("normalisation", json.dumps(m["normalisation"])))
    if m.get("sizes"):
        items.append(("sizes", ", ".join(f"{k} {v}" for k, v in m["sizes"].items())))
    if m.get("temperature") is not None:
        items.append(("temperature", f"{m['temperature']:.4f} (fitted on the validation split)"))
    for det, hp in (m.get("detectors") or {}).items():
        if hp:
            items.append((f"detector {det}", ", ".join(f"{k}={v}" for k, v in hp.items())))
    for what, why in (m.get("skipped") or {}).items():
        items.append((f"skipped {what}", str(why)))
    if m.get("timing"):
        items.append(("time", f"{sum(m['timing'].values()):.1f} s"))
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def evaluation_report(table: ResultTable, out: str | os.PathLike[str], title: str | None = None, detector: str = "msp", max_points: int = 400) -> Path:
    """Write the self-contained HTML report of one evaluation and return its path.

    Args:
        table: the result of :func:`rulab.evaluate` / :func:`rulab.api.evaluate_checkpoint` (rows, ``meta``,
            ``arrays``).
        out: the ``.html`` file (written atomically).
        title: page title (default ``rulab evaluation: <model or run>``).
        detector: whose ROC curves and score histograms are drawn (falls back to the first one in the arrays).
        max_points: curves are downsampled to at most this many points.

    Raises:
        RulabError: matplotlib is missing (``pip install 'rulab[report]'``).
    """
    t0 = time.time()
    recs = [{**r, "run_id": "eval"} for r in table.records()]
    name = table.meta.get("run") or table.meta.get("model") or "model"
    page_title = title or f"rulab evaluation: {name}"
    parts = [f"<header><h1>{_e(page_title)}</h1><dl class=\"meta\">" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _meta_items(table)) + "</dl></header>"]

    blocks: list[str] = []
    idr = [r for r in recs if r["kind"] == "id"]
    if idr:
        p = records_pivot(idr, "metric", "detector", col_labels={"": "raw logits", "ts": "temperature-scaled"}, row_order=ID_METRICS, col_order=("", "ts"), row_header="metric")
        blocks.append("<h3>Accuracy and calibration on the ID test set</h3>" + _table(pivot_html(
            p, caption="ECE/MCE: 15 uniform bins; RMS/MAD: adaptive bins of 100; rms_uniform10: 10 uniform bins (W2)", seeds_column=False)))
    ood = [r for r in recs if r["kind"] == "ood"]
    dets = list(dict.fromkeys([detector] + [r["detector"] for r in ood]))
    for metric, head, note in _OOD_TABLES:
        sel = [r for r in ood if r["metric"] == metric]
        if sel:
            ratio = {r["dataset"]: r["value"] for r in ood if r["metric"] == "ood_ratio"}
            if metric.startswith("aupr") and ratio:
                note += "; OOD:ID ratio " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items())
            p = records_pivot(sel, "detector", "dataset", metric=metric, row_order=dets, mean_column="mean", row_header="detector")
            blocks.append(f"<h3>OOD detection: {_e(head)}</h3>" + _table(pivot_html(p, caption=note, seeds_column=False)))
    sh = [r for r in recs if r["kind"] == "shift" and r["metric"] == "acc" and r["detector"] == ""]
    if sh:
        p = records_pivot(sh, "shift", "severity", metric="acc", row_header="shift")
        blocks.append("<h3>Accuracy under covariate shift (%)</h3>" + _table(pivot_html(p, caption="per corruption and level; 'mean' is over its levels", seeds_column=False)))
    far = [r for r in recs if r["kind"] == "farconf"]
    if far:
        rows = [{**r, "set": r["dataset"] + (f" / {r['detector']}" if r["detector"] else "")} for r in far]
        p = records_pivot(rows, "set", "metric", row_header="set")
        blocks.append("<h3>Far-away and worst-case confidence</h3>" + _table(pivot_html(p, caption="MMC: mean max-confidence; lower on noise is better", seeds_column=False)))
    if blocks:
        parts.append('<section><h2>Results</h2><div class="tables">' + "".join(f"<div>{b}</div>" for b in blocks) + "</div></section>")

    arrays = table.arrays
    figs: list[str] = []
    score_dets = list(dict.fromkeys(k.split("/")[1] for k in arrays if k.startswith("scores/") and k.count("/") == 2))
    det = detector if detector in score_dets else (score_dets[0] if score_dets else None)
    if det is not None and f"scores/{det}/id" in arrays:
        import numpy as np

        def arr(v: Any) -> Any:
            return np.asarray(v.double().numpy() if hasattr(v, "double") else v, dtype=float)

        s_id = arr(arrays[f"scores/{det}/id"])
        sets = {k.split("/", 2)[2]: arr(v) for k, v in arrays.items() if k.startswith(f"scores/{det}/") and k != f"scores/{det}/id"}
        if sets:
            figs.append(_figure(plots.roc_pr({k: (s_id, v) for k, v in sets.items()}, det, max_points), f"ROC and precision-recall curves of the {det} score per OOD set", wide=True))
            figs.append(_figure(plots.score_histograms(s_id, sets, det), f"{det} score histograms: ID test set vs each OOD set", wide=True))
    if "id/logits" in arrays and "id/labels" in arrays:
        t = arrays.get("ts/temperature")
        temp = float(t.reshape(-1)[0]) if t is not None and t.numel() else None
        figs.append(_figure(plots.reliability(arrays["id/logits"], arrays["id/labels"], temp), "reliability diagrams before and after temperature scaling"))
    figs.append(_figure(plots.farconf_curves(arrays, max_points), "far-away confidence: alpha scaling and adversarial noise"))
    stats, clean = _shift_stats([r for r in recs if r["kind"] != "shift" or _is_number(r["severity"])])  # not the "mean" rows
    if stats:
        figs.append(_figure(plots.severity(stats, clean), "accuracy and ECE against shift severity per corruption (dashed: clean test set)", wide=True))
    figs = [f for f in figs if f]
    if figs:
        parts.append('<section><h2>Figures</h2><div class="figs">' + "".join(figs) + "</div></section>")
    parts.append(f"<footer>Generated by rulab in {time.time() - t0:.1f} s from one evaluation ({len(table)} numbers). Values are stored as "
                 "fractions; tables show percent with 2 decimals for fraction metrics. `table.to_csv()` has every number.</footer>")
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(page_title)}</title><style>{_CSS}</style></head><body><main>{''.join(parts)}</main></body></html>\n"
    )
    from rulab.io import atomic_write_text

    path = Path(out)
    atomic_write_text(path, doc)
    return path
