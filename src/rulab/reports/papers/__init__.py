"""Paper-style tables: a study's results laid out as the tables of the four reproduced works (W1-W4), with the
papers' own numbers beside ours where the setting matches.

One module per paper, each holding its builder (registered in :data:`rulab.registry.PAPER_TABLES` under the layout
name) and, beside it, the paper's reference numbers:

================  =========================================================================================
``hendrycks2019``  W1 (:mod:`.hendrycks2019`): AUROC / AUPR-Out at 1:5 / FPR95 (OOD positive) of MSP per OOD set and
                   their mean, "Normal" vs "Pre-Train"; then test error and ID calibration (RMS, MAD, Soft-F1)
``coursework``     W2 (:mod:`.coursework`): accuracy and RMSE (10 bins) per brightness factor and blur σ, per model
``hein2019``       W3 (:mod:`.hein2019`): MMC / AUROC / FPR@95 per OOD set, noise, adversarial noise and samples for
                   Plain / CEDA / ACET; then test error and α-scaling
``odin``           W4 (:mod:`.odin`): FPR at 95% TPR / detection error / AUROC / AUPR-In / AUPR-Out, Baseline / ODIN
================  =========================================================================================

A builder is ``f(results, columns, reference) -> list[PaperTable]``: ``results`` maps each preset to its stored
records (:data:`~rulab.reports.papers.table.Results`), ``columns`` is ``((label, preset), ...)`` and ``reference``
the key of the paper's numbers (``""`` for none). A :class:`rulab.presets.paper.PaperStudy` names its layout
(``paper_table``), columns and reference; :func:`study_tables` builds its tables, :func:`study_paper_html` is what
the HTML report calls and :func:`study_paper_markdown` renders the same tables for a README. A new paper is one
module here (its builder registered with ``@PAPER_TABLES.register("name")``) and its test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rulab.registry import PAPER_TABLES, STUDIES
from rulab.reports.papers.table import Cell, PaperRow, PaperTable, Records, Results, paper_cell
from rulab.results.aggregate import group_of
from rulab.results.store import ResultStore

__all__ = ["Cell", "PaperRow", "PaperTable", "paper_cell", "study_tables", "study_paper_html", "study_paper_markdown"]


def study_tables(study: Any, results: Results) -> list[PaperTable]:
    """The paper tables of a :class:`~rulab.presets.paper.PaperStudy` (or its registered name) from per-preset results;
    ``[]`` for a study without a paper layout.

    Raises:
        UnknownNameError: the study names a layout that is not registered in :data:`rulab.registry.PAPER_TABLES`.
    """
    if isinstance(study, str):
        if study not in STUDIES:
            return []
        study = STUDIES.create(study)
    kind = getattr(study, "paper_table", "")
    if not kind:
        return []
    return PAPER_TABLES.get(kind)(results, study.paper_columns, study.paper_reference)


def study_paper_html(study: str | None, records_by_preset: Mapping[str, Sequence[Records]]) -> str:
    """The report's "Paper tables" block for ``study`` (``""`` when it declares none or nothing is stored)."""
    if not study:
        return ""
    tables = study_tables(study, records_by_preset)
    if not tables or not any(records_by_preset.values()):
        return ""
    body = "".join(f'<div class="tw">{t.html()}</div>' for t in tables)
    return f"<h3>Paper tables</h3>{body}"


def study_paper_markdown(db: str | os.PathLike[str], study: str) -> str:
    """The paper tables of ``study`` from a results database, as markdown (for a README or the docs)."""
    with ResultStore(Path(db), read_only=True) as store:
        runs = store.runs(study=study)
        records = store.results(run_id=[r["run_id"] for r in runs]) if runs else []
    group = {r["run_id"]: group_of(r) for r in runs}
    by_preset: dict[str, list[Records]] = {}
    for rec in records:
        by_preset.setdefault(group.get(rec["run_id"], ""), []).append(rec)
    return "\n".join(t.markdown() for t in study_tables(study, by_preset))
