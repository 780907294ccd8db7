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

__all__ = ["W1_REFERENCE", "W1_ADV_REFERENCE", "CALIBRATION", "hendrycks2019_tables", "hendrycks2019_adv_tables"]

CALIBRATION = "calibration:"
"""Label prefix of a paper column that fills the calibration table (see :func:`hendrycks2019_tables`)."""

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

    W1 measured OOD detection on models trained on every training image and calibration on models trained with a
    held-out split: a column labelled ``"calibration:<label>"`` fills the calibration table's ``<label>`` column
    (RMS, MAD, Soft-F1), the others the OOD table and the test error. Without calibration columns the OOD columns
    fill both tables.

    Args:
        results: preset → its records (or a ResultTable).
        columns: ``((label, preset), ...)``, e.g. ``(("Normal", "hendrycks2019-cifar10"), ("Pre-Train", ...),
            ("calibration:Normal", "hendrycks2019-cifar10-calibration"), ...)``.
        reference: a key of :data:`W1_REFERENCE` or ``""``.
    """
    cal_columns = [(label[len(CALIBRATION) :], preset) for label, preset in columns if label.startswith(CALIBRATION)]
    columns = [(label, preset) for label, preset in columns if not label.startswith(CALIBRATION)]
    runs = {label: Runs(records(results.get(preset, ()))) for label, preset in columns}
    cal_runs = {label: Runs(records(results.get(preset, ()))) for label, preset in cal_columns} or runs
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
            elif lb in cal_runs:
                cells.append(cell(cal_runs[lb].per_run("id", metric, None, "")))
            else:
                cells.append(None)
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
            (
                "Test error: the OOD models (every training image); RMS, MAD, Soft-F1: the calibration models (validation "
                "split held out), as W1 measured them. "
                if cal_columns
                else ""
            )
            + "Parity presets drop the top-confidence bin as W1 did."
            + (" Paper: Hendrycks et al. 2019; test errors of the shipped checkpoints." if ref else ""),
        ),
    )
    return [ood, cal]


W1_ADV_REFERENCE: dict[str, dict[str, dict[str, str]]] = {
    "cifar10": {
        "Normal Training": {"clean_acc": "96.0", "adv_acc": "0.0"},
        "Adversarial Training": {"clean_acc": "87.3", "adv_acc": "45.8"},
        "Adv. Pre-Training and Tuning": {"clean_acc": "87.1", "adv_acc": "57.4"},
    },
    "cifar100": {
        "Normal Training": {"clean_acc": "81.0", "adv_acc": "0.0"},
        "Adversarial Training": {"clean_acc": "59.1", "adv_acc": "24.3"},
        "Adv. Pre-Training and Tuning": {"clean_acc": "59.2", "adv_acc": "33.5"},
    },
}
"""W1's adversarial table (Hendrycks et al. 2019, Table 2; percent): clean accuracy and accuracy under PGD-20 at
ε = 8/255 of WRN-28-10, keyed by reference, then column label."""


@PAPER_TABLES.register("hendrycks2019-adv")
def hendrycks2019_adv_tables(
    results: Results, columns: Sequence[tuple[str, str]], reference: str = ""
) -> list[PaperTable]:
    """W1's adversarial table (Table 2): per model, the clean accuracy and the accuracy under L∞ PGD of the same test
    images (the ``adv_samples`` rows ``clean_acc`` and ``adv_acc``), side by side, with the paper's numbers.

    Args:
        results: preset → its records (or a ResultTable).
        columns: ``((label, preset), ...)``: "Normal Training", "Adversarial Training", "Adv. Pre-Training and Tuning".
        reference: a key of :data:`W1_ADV_REFERENCE` or ``""``.
    """
    recs_of = {label: list(records(results.get(preset, ()))) for label, preset in columns}
    runs = {label: Runs(recs) for label, recs in recs_of.items()}
    ref = W1_ADV_REFERENCE.get(reference, {})
    rows = []
    attack = ""
    for label, _ in columns:
        recs = [r for r in recs_of[label] if r["kind"] == "farconf" and r["metric"] == "adv_acc"]
        if recs and not attack:
            e = recs[0].get("extra") or {}
            if e.get("eps") is not None:
                attack = (
                    f"PGD-{e.get('steps')} at ε = {float(e['eps']) * 255:.3g}/255, step {float(e.get('step_size', 0)) * 255:.3g}/255, "
                    f"{e.get('restarts', 1)} random start(s), {recs[0].get('n', 0)} test images"
                )
        rows.append(
            PaperRow(
                label,
                tuple(cell(runs[label].per_run("farconf", m, "adv_samples", "")) for m in ("clean_acc", "adv_acc")),
            )
        )
        if label in ref:
            rows.append(
                PaperRow(
                    f"{label} (paper)", tuple(paper_cell(ref[label][m]) for m in ("clean_acc", "adv_acc")), paper=True
                )
            )
    table = PaperTable(
        title="Adversarial robustness (%): clean accuracy and accuracy under L∞ PGD of the same images (W1, Table 2)",
        row_header="",
        columns=("Clean", "Adversarial"),
        rows=tuple(rows),
        notes=(
            seed_note(runs),
            (f"Attack: {attack}." if attack else "Attack: the run's eval.adv_* settings.")
            + (" Paper: Hendrycks et al. 2019, WRN-28-10, PGD-20 at ε = 8/255." if ref else ""),
        ),
    )
    return [table]
