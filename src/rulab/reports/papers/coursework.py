"""W2 (the brightness / blur course project): accuracy (%) and RMSE (``rms_uniform10``, a fraction as W2 reports it)
on the clean test set, per brightness factor and blur σ and their means, one row per model, with the report's
numbers beside ours."""

from __future__ import annotations

from collections.abc import Sequence

from rulab.registry import PAPER_TABLES
from rulab.reports.papers.table import (
    PaperRow,
    PaperTable,
    Results,
    Runs,
    cell,
    paper_cell,
    records,
    seed_note,
)

__all__ = ["W2_REFERENCE", "coursework_tables"]

_W2_PATH_LEVELS = ("0.8", "0.9", "1.1", "1.2")
_W2_PETS_LEVELS = ("0.6", "0.8", "1.2", "1.4")
_BLUR_LEVELS = ("0.3", "0.5", "0.7", "0.9")


def _w2(
    levels: tuple[str, ...],
    clean: str,
    bright: tuple[str, ...],
    bmean: str,
    blur: tuple[str, ...],
    blmean: str,
    rmse: tuple[str, str, str],
) -> dict[str, dict[str, str]]:
    acc = {"clean": clean, "brightness_factor/mean": bmean, "gaussian_blur_sigma/mean": blmean}
    acc.update({f"brightness_factor/{lv}": v for lv, v in zip(levels, bright) if v})
    acc.update({f"gaussian_blur_sigma/{lv}": v for lv, v in zip(_BLUR_LEVELS, blur) if v})
    return {
        "acc": acc,
        "rms_uniform10": {"clean": rmse[0], "brightness_factor/mean": rmse[1], "gaussian_blur_sigma/mean": rmse[2]},
    }


W2_REFERENCE: dict[str, dict[str, dict[str, dict[str, str]]]] = {
    "pathmnist": {
        "Basic": _w2(
            _W2_PATH_LEVELS,
            "82.3",
            ("34.7", "58.8", "31.3", "20.8"),
            "36.4",
            ("82.5", "73.8", "59.6", "54.2"),
            "67.5",
            ("0.145", "0.603", "0.278"),
        ),
        "MixUp + Aug": _w2(
            _W2_PATH_LEVELS,
            "85.9",
            ("46.2", "65.9", "55.0", "28.1"),
            "48.8",
            ("85.8", "76.0", "60.5", "50.1"),
            "68.1",
            ("0.040", "0.302", "0.168"),
        ),
        "MixUp + Aug + PT": _w2(
            _W2_PATH_LEVELS,
            "87.6",
            ("46.6", "72.2", "52.9", "29.4"),
            "50.3",
            ("87.9", "83.0", "69.4", "57.1"),
            "74.3",
            ("0.033", "0.299", "0.111"),
        ),
    },
    "pets": {
        "Scratch": _w2(
            _W2_PETS_LEVELS,
            "73.7",
            ("66.2", "72.7", "68.6", "62.4"),
            "67.5",
            ("73.6", "71.3", "64.4", "56.4"),
            "66.4",
            ("0.055", "0.050", "0.060"),
        ),
        "Supervised": _w2(
            _W2_PETS_LEVELS,
            "96.9",
            ("96.1", "96.2", "96.5", "94.9"),
            "96.0",
            ("96.3", "96.3", "94.3", "93.0"),
            "95.0",
            ("0.155", "0.149", "0.158"),
        ),
        "Barlow Twins": _w2(
            _W2_PETS_LEVELS,
            "93.6",
            ("91.1", "92.8", "93.4", "92.4"),
            "92.4",
            ("92.4", "92.0", "86.3", "82.9"),
            "88.4",
            ("0.218", "0.207", "0.195"),
        ),
    },
}
"""W2 report numbers (Tables 1-4 pathMNIST, reproduced by its code; Tables 5-8 Pets, report only): accuracy in percent
per ``<corruption>/<level>``, ``<corruption>/mean`` and ``clean``; RMSE (10-bin) as a fraction. The Pets RMSE values
are assigned to the models in the order of the report's Table 6."""


@PAPER_TABLES.register("coursework")
def coursework_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """W2's tables: accuracy (%) and RMSE (10 equal-width bins, a fraction) on the clean test set, per brightness
    factor and blur σ, and the mean over each grid (W2 report §7, Tables 1-8), one row per model."""
    runs = {label: Runs(records(results.get(preset, ()))) for label, preset in columns}
    ref = W2_REFERENCE.get(reference, {})
    levels: dict[str, list[str]] = {}
    for shift in ("brightness_factor", "gaussian_blur_sigma"):
        found: list[str] = []
        for r in runs.values():
            found += [lv for lv in r.severities(shift, "acc") if lv not in found]
        levels[shift] = sorted(found, key=float)
    cols: list[tuple[str, str, str]] = [("Clean", "clean", "0")]
    for shift, short in (("brightness_factor", "f"), ("gaussian_blur_sigma", "σ")):
        cols += [(f"{short} = {lv}", shift, lv) for lv in levels[shift]]
        cols.append(("Brightness mean" if shift == "brightness_factor" else "Blur mean", shift, "mean"))
    groups = (
        ("", 1),
        ("Brightness", len(levels["brightness_factor"]) + 1),
        ("Gaussian blur", len(levels["gaussian_blur_sigma"]) + 1),
    )
    tables = []
    for metric, title, scale, fmt in (
        ("acc", "Accuracy (%)", 100.0, ".1f"),
        ("rms_uniform10", "RMSE (10 equal-width bins, fraction)", 1.0, ".3f"),
    ):
        rows = []
        for label in runs:
            cells = tuple(
                cell(runs[label].per_run("shift", metric, None, "", shift, sev), scale, fmt) for _, shift, sev in cols
            )
            rows.append(PaperRow(label, cells))
            paper = ref.get(label, {}).get(metric, {})
            if paper:
                keys = ["clean" if shift == "clean" else f"{shift}/{sev}" for _, shift, sev in cols]
                rows.append(
                    PaperRow(
                        f"{label} (paper)",
                        tuple(paper_cell(paper[k], scale) if k in paper else None for k in keys),
                        paper=True,
                    )
                )
        tables.append(
            PaperTable(
                title=f"{title} under W2's brightness factors and Gaussian blur (kernel 5) (W2 report §7)",
                row_header="Model",
                columns=tuple(c[0] for c in cols),
                groups=groups,
                rows=tuple(rows),
                notes=(
                    seed_note(runs),
                    "Means are over the grid's levels (clean excluded)."
                    + (" Paper: W2 report Tables 1-8." if ref else ""),
                ),
            )
        )
    return tables
