"""The single-file HTML report of ONE evaluation (a :class:`~rulab.results.table.ResultTable` in memory, no database).

``evaluation_report(table, "report.html")`` (``rulab.reports.evaluation_report``) writes the same kind of self-contained page
as :func:`rulab.reports.build_report` (inline CSS, figures as base64 PNG, no script): what was evaluated, the
accuracy / calibration table raw and temperature-scaled, the OOD detection tables per detector and OOD set (every
number with its 95% bootstrap interval over test images when the evaluation computed one), the shift and far-away tables, and the figures drawn from the table's arrays: ROC and precision-recall curves, score
histograms ID vs each OOD set, reliability diagrams before and after temperature scaling, accuracy and ECE against
shift severity, and the far-away curves. Whatever the table lacks is left out without an error.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from rulab.reports import plots
from rulab.reports.blocks import (
    array_figures,
    escape,
    farconf_block,
    figure_html,
    id_block,
    ood_blocks,
    pivot_html,
    records_pivot,
    scrolling,
    shift_stats,
    write_page,
)
from rulab.results.replicates import table_replicates
from rulab.results.table import ResultTable

__all__ = ["evaluation_report"]


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


def evaluation_report(
    table: ResultTable,
    out: str | os.PathLike[str],
    title: str | None = None,
    detector: str = "msp",
    max_points: int = 400,
) -> Path:
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
    parts = [
        f'<header><h1>{escape(page_title)}</h1><dl class="meta">'
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in _meta_items(table))
        + "</dl></header>"
    ]

    ood = [r for r in recs if r["kind"] == "ood"]
    reps = table_replicates(table)
    blocks = [
        id_block(recs),
        *ood_blocks(ood, list(dict.fromkeys([detector] + [r["detector"] for r in ood])), replicates=reps),
    ]
    sh = [r for r in recs if r["kind"] == "shift" and r["metric"] == "acc" and r["detector"] == ""]
    if sh:
        p = records_pivot(sh, "shift", "severity", metric="acc", row_header="shift")
        blocks.append(
            "<h3>Accuracy under covariate shift (%)</h3>"
            + scrolling(
                pivot_html(p, caption="per corruption and level; 'mean' is over its levels", seeds_column=False)
            )
        )
    blocks.append(farconf_block(recs))
    blocks = [b for b in blocks if b]
    if blocks:
        parts.append(
            '<section><h2>Results</h2><div class="tables">'
            + "".join(f"<div>{b}</div>" for b in blocks)
            + "</div></section>"
        )

    figs = array_figures(table.arrays, detector, max_points)
    stats, clean = shift_stats(recs)
    if stats:
        figs.append(
            figure_html(
                plots.severity(stats, clean),
                "accuracy and ECE against shift severity per corruption (dashed: clean test set)",
                wide=True,
            )
        )
    figs = [f for f in figs if f]
    if figs:
        parts.append('<section><h2>Figures</h2><div class="figs">' + "".join(figs) + "</div></section>")
    parts.append(
        f"<footer>Generated by rulab in {time.time() - t0:.1f} s from one evaluation ({len(table)} numbers). Values are stored as "
        "fractions; tables show percent with 2 decimals for fraction metrics. `table.to_csv()` has every number.</footer>"
    )
    return write_page(Path(out), page_title, "".join(parts))
