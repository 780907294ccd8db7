"""The single-file HTML report (docs/guide/reports.md): a view of the results database.

``build_report(db, study=...)`` writes one self-contained ``.html`` file: CSS inline, figures inlined as base64 PNG,
no script and no external asset, so it can be mailed or archived as it is. Sections:

* a header: study, date, versions, git commits, devices, seeds, datasets and wall time;
* the comparison of methods: the summary table (mean ± std over seeds with 95% intervals), the paired differences of
  every method to the baseline (the study's ``compare_to``, else the first method with results;
  :func:`rulab.results.compare.compare_pivot`), bar charts, accuracy
  against shift severity per method, and, for a paper study, the paper-style tables of :mod:`rulab.reports.papers`;
* per method: the accuracy / calibration table (raw and temperature-scaled), OOD AUROC and FPR95 per detector and
  OOD set, the far-away table, ROC and precision-recall curves, score histograms ID vs each OOD set, reliability
  diagrams before and after temperature scaling, accuracy and ECE against severity per corruption, alpha-scaling /
  adversarial-noise curves, and training / validation curves;
* the two-moons toy's confidence maps when ``toy2d/`` lies beside the database (``rulab toy2d``, :mod:`rulab.reports.toy2d`).

Tables come from the ``results`` and ``curves`` tables (mean ± std over seeds, intervals from
:mod:`rulab.results.aggregate`, which also reads the bootstrap replicates kept in the arrays files); curves and histograms come from the
arrays each evaluation saved in ``<run_dir>/eval/<benchmark>/arrays.safetensors`` (keys ``scores/<detector>/id``,
``scores/<detector>/<ood set>``, ``id/logits``, ``id/labels``, ``ts/temperature``, ``farconf/...``) of the
lowest seed that has them; whatever is missing is left out without an error. The blocks these sections are made of
are in :mod:`rulab.reports.blocks`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rulab.errors import StoreError
from rulab.registry import STUDIES
from rulab.reports import plots
from rulab.reports.blocks import (
    ID_CAPTION,
    array_figures,
    distinct,
    escape,
    farconf_block,
    figure_html,
    id_block,
    ood_blocks,
    pivot_html,
    robust_accuracy_block,
    scrolling,
    shift_stats,
    write_page,
)
from rulab.reports.papers import study_paper_html
from rulab.reports.tables import PaperTable
from rulab.reports.toy2d import TOY2D_DIR, toy2d_section
from rulab.results.aggregate import Stat, describe, group_of, summary_pivot
from rulab.results.compare import compare_pivot
from rulab.results.replicates import ArrayReplicates, arrays_file
from rulab.results.store import DEFAULT_DB, ResultStore
from rulab.results.table import ResultTable, Row

__all__ = ["build_report", "mean_table"]

_CURVE_METRICS = ("loss", "acc", "nll", "ece")


def _anchor(name: str) -> str:
    return "m-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _arrays_file(run: Mapping[str, Any]) -> Path | None:
    return arrays_file(run)


def _load_arrays(path: Path) -> dict[str, Any]:
    try:
        return ResultTable.load_arrays(path)
    except Exception:  # noqa: BLE001 - a damaged arrays file only costs its figures
        return {}


def mean_table(records: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None = None) -> ResultTable:
    """The per-key mean over seeds of one method's records, as a ResultTable (``extra`` holds ``std`` and ``seeds``).

    This is what the paper-table hook receives.
    """
    groups: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        groups.setdefault((r["kind"], r["dataset"], r["shift"], r["severity"], r["detector"], r["metric"]), []).append(
            float(r["value"])
        )
    rows = []
    for (kind, dataset, shift, sev, det, metric), vals in groups.items():
        s = describe(vals)
        rows.append(Row(kind, metric, s.mean, dataset, shift, sev, det, s.n, {"std": s.std, "seeds": s.n}))
    return ResultTable(rows, meta=dict(meta or {}))


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
            pts.setdefault(c["metric"], {}).setdefault(c["split"], {}).setdefault(int(c["epoch"]), []).append(
                float(c["value"])
            )
    return pts


def _header(
    title: str, description: str, runs: Sequence[Mapping[str, Any]], groups: Sequence[str], build_s: float | None = None
) -> str:
    def joined(key: str) -> str:
        vals = distinct(r.get(key) for r in runs)
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
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    sub = f'<p class="sub">{escape(description)}</p>' if description else ""
    return f'<header><h1>{escape(title)}</h1>{sub}<dl class="meta">{dl}</dl></header>'


def _method_section(
    group: str,
    runs: Sequence[Mapping[str, Any]],
    recs: Sequence[Mapping[str, Any]],
    curves: Sequence[Mapping[str, Any]],
    detector: str,
    max_points: int,
    paper: str,
    replicates: ArrayReplicates | None = None,
) -> str:
    parts = [f'<section id="{_anchor(group)}"><h2>{escape(group)}</h2>']
    seeds = sorted({r["seed"] for r in runs if r.get("seed") is not None})
    parts.append(
        f'<p class="sub">method {escape(", ".join(distinct(r["method"] for r in runs)) or "–")} · model {escape(", ".join(distinct(r["model"] for r in runs)) or "–")} · '
        f"{len(runs)} run(s), seeds {escape(', '.join(map(str, seeds)) or '–')} · tables: mean ± std over seeds, 95% interval below "
        "(Student t over seeds; one seed: bootstrap over test images; hover a number for its seeds)</p>"
    )

    # ---- tables (side by side where they fit)
    ood = [r for r in recs if r["kind"] == "ood"]
    blocks = [
        id_block(recs, ID_CAPTION + "; temperature fitted on the validation split"),
        *ood_blocks(
            ood,
            distinct([detector] + [r["detector"] for r in ood]),
            metrics=("auroc", "fpr95_id"),
            replicates=replicates,
        ),
        farconf_block(recs),
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
        figs += array_figures(arrays, detector, max_points, tag)
    stats, clean = shift_stats(recs)
    if stats:
        figs.append(
            figure_html(
                plots.severity(stats, clean),
                "accuracy and ECE against shift severity per corruption (mean ± std over seeds; dashed: clean test set)",
                wide=True,
            )
        )
    pts = _curve_points(curves)
    if pts:
        figs.append(
            figure_html(
                plots.training_curves(pts),
                "training and validation curves (thin: each seed; thick: mean)",
                wide=len(pts) > 2,
            )
        )
    figs = [f for f in figs if f]
    if figs:
        parts.append('<h3>Figures</h3><div class="figs">' + "".join(figs) + "</div>")

    # ---- provenance of the runs
    rows = "".join(
        f'<tr><th scope="row">{escape(r["name"])}</th><td>{escape(r["seed"])}</td><td>{escape(r["status"])}</td><td>{escape(r["run_id"])}</td>'
        f"<td>{escape((r.get('finished_at') or '')[:19].replace('T', ' '))}</td><td>{escape(r.get('device', ''))}</td><td>{escape(r.get('checkpoint', ''))}</td></tr>"
        for r in runs
    )
    parts.append(
        '<details><summary>runs of this method</summary><div class="tw"><table class="results"><thead><tr><th>name</th><th>seed</th><th>status</th>'
        f"<th>run id</th><th>finished (UTC)</th><th>device</th><th>checkpoint</th></tr></thead><tbody>{rows}</tbody></table></div></details>"
    )
    parts.append("</section>")
    return "".join(parts)


def _t975(n: int) -> float:
    from rulab.metrics.bootstrap import t_quantile

    return t_quantile(0.975, n - 1)


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
        raise StoreError(
            f"there is no results database at {db}; run a study first (`rulab study fmnist-default`) or pass --db"
        )
    out = Path(out) if out is not None else db.parent / "report.html"
    store = ResultStore(db, read_only=True)  # a report only reads: works on a read-only file system or a full disk
    runs = store.runs(**({"study": study} if study else {}))
    if run_ids is not None:
        keep = set(run_ids)
        runs = [r for r in runs if r["run_id"] in keep]
    if not runs:
        where = f" for study '{study}'" if study else ""
        known = sorted({r["study"] for r in store.runs() if r["study"]})
        if known:
            raise StoreError(f"{db} holds no runs{where}; studies in it: {', '.join(known)} (pass one with --study)")
        raise StoreError(
            f"{db} holds no runs{where}; run `rulab study fmnist-default --db {db}` (or `rulab eval CHECKPOINT --db {db}`) first"
        )
    ids = [r["run_id"] for r in runs]
    records = store.results(run_id=ids)
    curves = store.curves(run_id=ids)
    store.close()
    description = ""
    if study and study in STUDIES:
        description = STUDIES.create(study).description

    groups = distinct(group_of(r) for r in runs)
    runs_of = {g: [r for r in runs if group_of(r) == g] for g in groups}
    recs_of = {g: [r for r in records if group_of(r) == g] for g in groups}
    curves_by_run: dict[str, list[Mapping[str, Any]]] = {}
    for c in curves:
        curves_by_run.setdefault(c["run_id"], []).append(c)

    # ---- comparison
    replicates = ArrayReplicates(runs)
    summary = summary_pivot(records, replicates=replicates)
    comp = ['<section id="comparison"><h2>Comparison of methods</h2>']
    if summary.columns:
        n_max = max((summary.seeds(r) for r in summary.rows), default=0)
        comp.append(scrolling(pivot_html(summary)))
        if n_max > 1:
            comp.append(
                f'<p class="note">The intervals are Student t intervals over {n_max} seeds (t = {_t975(n_max):.2f}): they say where '
                "the mean over training runs lies on these test sets, and they are wide because few seeds say little.</p>"
            )
        # the baseline: the study's compare_to, else the first method with results (a trained-only pre-training has none)
        scored = [g for g in groups if recs_of[g]]
        wanted = STUDIES.create(study).compare_to if study and study in STUDIES else ""
        baseline = wanted if wanted in scored else (scored[0] if scored else "")
        if len(scored) > 1:
            cmp = compare_pivot(records, baseline, replicates=replicates)
            comp.append(f"<h3>Paired differences to {escape(baseline)}</h3>" + scrolling(pivot_html(cmp)))
        figs = [
            figure_html(
                plots.comparison_bars(summary), "summary measures per method (error bars: std over seeds)", wide=True
            )
        ]
        sbm = _shift_by_method(recs_of)
        if sbm:
            figs.append(
                figure_html(
                    plots.shift_by_method(sbm),
                    "mean accuracy over the severity-graded corruptions against severity, per method",
                )
            )
        comp.append('<div class="figs">' + "".join(f for f in figs if f) + "</div>")
        comp.append(robust_accuracy_block(recs_of))
    else:
        comp.append('<p class="note">No evaluation results are stored for these runs yet.</p>')
    if study:  # a paper study (rulab.presets.paper.PaperStudy) adds its paper-style tables
        comp.append(study_paper_html(study, recs_of))
    comp.append("</section>")

    sections = []
    for g in groups:
        paper = ""
        if paper_tables:
            mt = mean_table(recs_of[g], {"method": g, "study": study or ""})
            paper = "".join(scrolling(f(mt)) for f in paper_tables)
            paper = f"<h3>Paper tables</h3>{paper}" if paper else ""
        group_curves = [c for r in runs_of[g] for c in curves_by_run.get(r["run_id"], [])]
        sections.append(
            _method_section(g, runs_of[g], recs_of[g], group_curves, detector, max_points, paper, replicates)
        )

    toy = toy2d_section(db.parent / TOY2D_DIR)  # `rulab toy2d --out <this directory>` (Hein et al. 2019, §3.7)
    page_title = title or f"rulab report: {study or 'all runs'}"
    toc = (
        '<nav class="toc"><a href="#comparison">comparison</a>'
        + "".join(f'<a href="#{_anchor(g)}">{escape(g)}</a>' for g in groups)
        + ('<a href="#toy2d">two-moons toy</a>' if toy else "")
        + "</nav>"
    )
    body = (
        _header(page_title, description, runs, groups)
        + toc
        + "".join(comp)
        + "".join(sections)
        + toy
        + f"<footer>Generated by rulab from {escape(db)} in {time.time() - t0:.1f} s. Values are stored as fractions; tables show percent with 2 decimals "
        "for fraction metrics. Every number is also in the database (`rulab results`).</footer>"
    )
    return write_page(out, page_title, body)
