"""The results store (SQLite), aggregation over seeds and table exports (docs/results-store.md).

>>> from rulab.results import ResultStore, summary_pivot, render
>>> store = ResultStore("runs/results.db")
>>> print(render(summary_pivot(store.results(study="fmnist-default")), "md"))
"""

from rulab.results.aggregate import (
    SUMMARY_MEASURES,
    Aggregate,
    Measure,
    Pivot,
    Stat,
    aggregate,
    bootstrap_ci,
    describe,
    mean_std,
    pivot,
    summary_pivot,
)
from rulab.results.export import (
    format_stat,
    format_value,
    render,
    results_pivot,
    to_csv,
    to_latex,
    to_markdown,
    to_text,
)
from rulab.results.store import DEFAULT_DB, SCHEMA_VERSION, ResultStore, run_id_for

__all__ = [
    "ResultStore",
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "run_id_for",
    "Stat",
    "Aggregate",
    "Measure",
    "Pivot",
    "SUMMARY_MEASURES",
    "aggregate",
    "bootstrap_ci",
    "describe",
    "mean_std",
    "pivot",
    "summary_pivot",
    "format_stat",
    "format_value",
    "render",
    "results_pivot",
    "to_csv",
    "to_latex",
    "to_markdown",
    "to_text",
]
