"""W4 (Liang, Li & Srikant 2018, "Enhancing the reliability of out-of-distribution image detection in neural
networks" (ODIN), ICLR, Table 2): FPR at 95% TPR / detection error / AUROC / AUPR-In / AUPR-Out, Baseline (MSP) /
ODIN per OOD set, one table per model, with the paper's numbers beside ours, and the (T, ε) ODIN used on each set
(rows ``odin_t`` / ``odin_eps``: chosen per set under the ``odin-paper`` protocol, the paper's). ODIN columns are the
``odin`` rows when they were tuned per set, else ``odin_paper`` (ODIN's README ε at T = 1000) when stored, else
``odin``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rulab.presets.odin import ODIN_EPSILON_TABLE
from rulab.registry import PAPER_TABLES, PROTOCOLS
from rulab.reports.papers.table import (
    PaperRow,
    PaperTable,
    Results,
    Runs,
    cell,
    ordered,
    paper_cell,
    records,
    set_name,
)
from rulab.results.table import ResultTable

__all__ = ["W4_REFERENCE", "odin_tables"]

_W4_METRICS = ("fpr95_id", "detection_error", "auroc", "aupr_in", "aupr_out")
_ODIN_SETS = ("tin_crop", "tin_resize", "lsun_crop", "lsun_resize", "isun", "uniform", "gaussian_odin")


def _w4(*rows: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Rows ``"FPR DetErr AUROC AUPR-In AUPR-Out"`` of ``base/odin`` pairs in :data:`_ODIN_SETS` order."""
    out = {}
    for name, row in zip(_ODIN_SETS, rows):
        pairs = [tuple(p.split("/")) for p in row.split()]
        out[name] = {m: (b, o) for m, (b, o) in zip(_W4_METRICS, pairs)}
    return out


W4_REFERENCE: dict[str, dict[str, dict[str, tuple[str, str]]]] = {
    "densenet-cifar10": _w4(
        "34.7/4.3 10.0/4.7 95.3/99.1 96.4/99.1 93.8/99.1",
        "40.8/7.5 11.5/6.1 94.1/98.5 95.1/98.6 92.4/98.5",
        "39.3/8.7 10.2/6.0 94.8/98.2 96.0/98.5 93.1/97.8",
        "33.6/3.8 9.7/4.4 95.4/99.2 96.4/99.3 94.0/99.2",
        "37.2/6.3 10.8/5.5 94.8/98.8 95.9/98.9 93.1/98.8",
        "23.5/0.0 5.3/0.5 96.5/99.9 97.8/100.0 93.0/99.9",
        "12.3/0.0 4.7/0.2 97.5/100.0 98.3/100.0 95.9/100.0",
    ),
    "densenet-cifar100": _w4(
        "66.6/28.0 27.1/13.2 81.2/94.3 82.9/94.5 80.1/94.4",
        "82.5/58.2 34.4/23.0 71.5/85.0 73.8/85.5 68.9/84.0",
        "59.7/17.3 23.3/9.5 85.4/96.7 86.9/96.9 84.4/96.5",
        "83.2/60.5 35.2/23.0 70.8/85.3 74.0/86.4 67.9/83.7",
        "84.9/64.9 36.1/24.0 69.6/84.0 72.4/85.1 66.6/81.8",
        "100.0/99.8 35.7/15.9 43.2/83.0 63.2/89.6 41.9/68.9",
        "100.0/100.0 41.4/35.5 30.5/45.9 53.3/64.7 37.6/43.0",
    ),
    "wrn-cifar10": _w4(
        "38.9/23.4 12.5/11.6 92.9/94.2 92.5/92.8 91.9/94.7",
        "45.6/25.5 14.8/13.4 91.0/92.1 89.7/89.0 89.9/93.6",
        "35.0/21.8 10.8/9.8 94.5/95.9 95.1/95.8 93.1/95.5",
        "35.0/17.6 11.4/9.7 93.9/95.4 93.8/93.8 92.8/96.1",
        "40.6/21.3 13.2/11.5 92.5/93.7 91.7/91.2 91.5/94.9",
        "1.6/0.0 3.2/0.2 99.2/100.0 99.3/100.0 98.9/100.0",
        "0.3/0.0 2.4/0.1 99.5/100.0 99.6/100.0 99.3/100.0",
    ),
    "wrn-cifar100": _w4(
        "67.1/42.7 25.9/16.0 82.4/91.8 84.1/92.5 80.7/91.0",
        "79.3/51.6 32.2/20.7 74.2/87.8 75.4/88.2 71.9/87.2",
        "74.0/35.7 26.8/16.0 80.6/91.8 83.3/91.8 77.5/91.6",
        "76.7/46.5 29.2/18.5 77.4/89.5 79.1/89.8 74.6/89.2",
        "79.8/50.8 30.8/19.5 75.7/88.4 77.5/88.9 72.7/87.6",
        "21.0/0.0 7.2/0.3 96.5/100.0 97.6/100.0 92.9/99.9",
        "28.3/0.0 6.1/0.2 95.7/99.9 97.4/100.0 89.3/99.8",
    ),
}
"""ODIN's Table 2 (Liang et al. 2018, percent): per model, OOD set and metric the pair (Baseline, ODIN)."""


def _tuned_per_set(recs: object) -> bool:
    """Whether the stored ``odin`` rows were scored under a protocol that tunes per OOD set (``odin-paper``; the
    protocol's name is in each detection row's ``extra``)."""
    if isinstance(recs, ResultTable):
        extras = [r.extra for r in recs if r.detector == "odin"]
    else:
        extras = [rec.get("extra") or {} for rec in recs if isinstance(rec, Mapping) and rec.get("detector") == "odin"]  # type: ignore[union-attr]
    names = {e.get("protocol") for e in extras if isinstance(e, Mapping) and e.get("protocol")}
    return any(n in PROTOCOLS and PROTOCOLS.create(n).tunes_per_set for n in names)


@PAPER_TABLES.register("odin")
def odin_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """ODIN's Table 2 layout, one table per model: FPR at 95% TPR (``fpr95_id``), detection error, AUROC, AUPR-In,
    AUPR-Out, each Baseline (MSP) / ODIN, per OOD set (Liang et al. 2018, Table 2; percent)."""
    ref = W4_REFERENCE.get(reference, {})
    heads = (
        ("FPR at 95% TPR ↓", "fpr95_id"),
        ("Detection error ↓", "detection_error"),
        ("AUROC ↑", "auroc"),
        ("AUPR-In ↑", "aupr_in"),
        ("AUPR-Out ↑", "aupr_out"),
    )
    tables = []
    for label, preset in columns:
        r = Runs(records(results.get(preset, ())))
        per_set = _tuned_per_set(results.get(preset, ()))
        odin = "odin" if per_set or not r.datasets("ood", "odin_paper", "auroc") else "odin_paper"
        has_hp = bool(r.datasets("ood", odin, "odin_t"))
        sets = r.datasets("ood", "msp", "auroc")
        sets = ordered(sets, _ODIN_SETS)
        rows = []
        for s in sets:
            hp = (
                cell(r.per_run("ood", "odin_t", s, odin), 1.0, ".4g"),
                cell(r.per_run("ood", "odin_eps", s, odin), 1.0, ".4g"),
            )
            rows.append(
                PaperRow(
                    set_name(s),
                    (hp if has_hp else ())
                    + tuple(cell(r.per_run("ood", m, s, det)) for _, m in heads for det in ("msp", odin)),
                )
            )
            if s in ref:
                readme_eps = ODIN_EPSILON_TABLE.get(reference, {}).get(s)
                paper_hp = (
                    (paper_cell("1000", 1.0), paper_cell(f"{readme_eps:g}", 1.0) if readme_eps is not None else None)
                    if has_hp
                    else ()
                )
                rows.append(
                    PaperRow(
                        f"{set_name(s)} (paper)",
                        paper_hp + tuple(paper_cell(ref[s][m][i]) for _, m in heads for i in (0, 1)),
                        paper=True,
                    )
                )
        if odin == "odin_paper":
            note = "ODIN with the per-set ε of ODIN's README (T = 1000)."
        elif per_set:
            note = (
                "ODIN with (T, ε) tuned per OOD set on its first 1,000 images and the ID test set's, lowest FPR at 95% TPR; "
                "those images are not scored (odin-paper protocol, as the paper)."
            )
        else:
            note = (
                "ODIN with the evaluation's (T, ε): tuned on validation-OOD data, or T = 1000, ε = 0.0014 without it."
            )
        if has_hp and ref:
            note += " Paper (T, ε): the per-set values of ODIN's README (T = 1000 everywhere)."
        tables.append(
            PaperTable(
                title=f"{label}: Baseline (MSP) / ODIN, % (W4)",
                row_header="OOD set",
                columns=(("T", "ε") if has_hp else ()) + ("Baseline", "ODIN") * len(heads),
                groups=((("ODIN (T, ε)", 2),) if has_hp else ()) + tuple((h, 2) for h, _ in heads),
                rows=tuple(rows),
                notes=(
                    f"ours: mean ± std over {len(r.runs)} seed(s).",
                    note,
                    "Exact metrics (not ODIN's threshold grid)." + (" Paper: ICLR Table 2." if ref else ""),
                ),
            )
        )
    return tables
