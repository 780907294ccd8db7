"""W1 (Hendrycks, Lee & Mazeika 2019, "Using pre-training can improve model robustness and uncertainty", ICML):
the OOD table of MSP (AUROC, AUPR-Out at an OOD:ID ratio of 1:5, FPR95 with OOD positive) per OOD set and their mean,
"Normal" vs "Pre-Train" columns, and the calibration table (test error, RMS, MAD, Soft-F1 of the raw logits), with the
paper's numbers beside ours."""

from __future__ import annotations

from collections.abc import Sequence

from rulab.registry import PAPER_TABLES
from rulab.reports.papers.table import (
    PaperRow,
    PaperTable,
    Results,
    Runs,
    cell,
    ordered,
    paper_cell,
    per_run_mean,
    records,
    seed_note,
    set_name,
)

__all__ = ["W1_REFERENCE", "hendrycks2019_tables"]

W1_REFERENCE: dict[str, dict[str, dict[str, dict[str, str]]]] = {
    "cifar10": {
        "Normal": {"auroc": "91.5", "aupr_out": "63.4", "error": "5.32", "rms": "6.4", "mad": "2.9"},
        "Pre-Train": {"auroc": "94.5", "aupr_out": "73.5", "error": "3.64", "rms": "2.9", "mad": "1.2"},
    },
    "cifar100": {
        "Normal": {"auroc": "69.4", "aupr_out": "29.7", "error": "23.91", "rms": "13.3", "mad": "10.3"},
        "Pre-Train": {"auroc": "83.1", "aupr_out": "52.7", "error": "20.82", "rms": "3.6", "mad": "2.5"},
    },
    "tinyimagenet": {
        "Normal": {"auroc": "71.8", "aupr_out": "30.8", "error": "36.48"},
        "Pre-Train": {"auroc": "73.9", "aupr_out": "31.0", "error": "34.51"},
    },
}
"""W1 paper numbers (Hendrycks et al. 2019, percent): mean AUROC / AUPR over the OOD sets, test error of the shipped
checkpoints (``uncertainty/*/snapshots/``), ID calibration RMS / MAD (T = 1, top bin dropped). Keyed by reference,
then column label."""


_W1_ORDER = (
    "gaussian",
    "rademacher",
    "blobs",
    "dtd",
    "textures",
    "svhn",
    "places365",
    "lsun_resize",
    "cifar10",
    "cifar100",
)


@PAPER_TABLES.register("hendrycks2019")
def hendrycks2019_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """W1's OOD table (MSP: AUROC, AUPR-Out at 1:5, FPR95 with OOD positive, per OOD set and their mean) and its
    calibration table (test error, RMS, MAD, Soft-F1 of the raw logits), with the paper's numbers for ``reference``.

    Args:
        results: preset → its records (or a ResultTable).
        columns: ``((label, preset), ...)``, e.g. ``(("Normal", "hendrycks2019-cifar10"), ("Pre-Train", ...))``.
        reference: a key of :data:`W1_REFERENCE` or ``""``.
    """
    runs = {label: Runs(records(results.get(preset, ()))) for label, preset in columns}
    labels = [label for label, _ in columns]
    ref = W1_REFERENCE.get(reference, {})
    metrics = (("AUROC ↑", "auroc"), ("AUPR ↑", "aupr_out"), ("FPR95 ↓", "fpr95_ood"))
    sets: list[str] = []
    for r in runs.values():
        sets += [s for s in r.datasets("ood", "msp", "auroc") if s not in sets]
    sets = ordered(sets, _W1_ORDER)
    rows = []
    for s in sets:
        rows.append(
            PaperRow(
                set_name(s), tuple(cell(runs[lb].per_run("ood", m, s, "msp")) for _, m in metrics for lb in labels)
            )
        )
    mean_cells = []
    for _, m in metrics:
        for lb in labels:
            parts = [runs[lb].per_run("ood", m, s, "msp") for s in sets]
            mean_cells.append(cell(per_run_mean([p for p in parts if p]) if all(parts) else []))
    rows.append(PaperRow("Mean", tuple(mean_cells)))
    if ref:
        rows.append(
            PaperRow(
                "Mean (paper)",
                tuple(
                    paper_cell(ref[lb][m]) if lb in ref and m in ref[lb] else None for _, m in metrics for lb in labels
                ),
                paper=True,
            )
        )
    ood = PaperTable(
        title="OOD detection with MSP (%): AUROC, AUPR-Out at an OOD:ID ratio of 1:5, FPR95 with OOD as positive "
        "(W1, uncertainty/CIFAR/test.py)",
        row_header="OOD set",
        columns=tuple(labels) * len(metrics),
        groups=tuple((name, len(labels)) for name, _ in metrics),
        rows=tuple(rows),
        notes=(
            seed_note(runs),
            "Mean = unweighted mean over the OOD sets, per run."
            + (" Paper: Hendrycks et al. 2019 (FPR95 not reported)." if ref else ""),
        ),
    )
    cal_rows = []
    for label, metric in (("Test error", "error"), ("RMS", "rms"), ("MAD", "mad"), ("Soft-F1", "soft_f1")):
        cells = []
        for lb in labels:
            if metric == "error":
                acc = runs[lb].per_run("id", "acc", None, "")
                cells.append(cell({k: 1.0 - v for k, v in acc.items()}))
            else:
                cells.append(cell(runs[lb].per_run("id", metric, None, "")))
        cal_rows.append(PaperRow(label, tuple(cells)))
        if ref and any(metric in ref.get(lb, {}) for lb in labels):
            cal_rows.append(
                PaperRow(
                    f"{label} (paper)",
                    tuple(paper_cell(ref[lb][metric]) if metric in ref.get(lb, {}) else None for lb in labels),
                    paper=True,
                )
            )
    cal = PaperTable(
        title="Test error and in-distribution calibration (%): RMS and MAD with adaptive bins of 100, Soft-F1; "
        "raw logits (T = 1) (W1, utils/calibration_tools.py)",
        row_header="",
        columns=tuple(labels),
        rows=tuple(cal_rows),
        notes=(
            seed_note(runs),
            "Parity presets drop the top-confidence bin as W1 did."
            + (" Paper: Hendrycks et al. 2019; test errors of the shipped checkpoints." if ref else ""),
        ),
    )
    return [ood, cal]
