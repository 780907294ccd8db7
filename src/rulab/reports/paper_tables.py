"""Paper-style tables: a study's results laid out as the tables of the four reproduced works (W1-W4), with the papers' own numbers
(listed with their sources in docs/protocols/, "Reference numbers") beside ours where the setting matches.

================  =========================================================================================
``hendrycks2019``  W1: AUROC / AUPR (AUPR-Out at 1:5) / FPR95 (OOD positive, ``fpr95_ood``) of MSP per OOD set and
                   their mean, "Normal" vs "Pre-Train" columns; then test error and ID calibration (RMS, MAD,
                   Soft-F1; raw logits, T = 1)
``coursework``     W2: accuracy (%) and RMSE (``rms_uniform10``, a fraction as W2 reports it) on the clean test set,
                   per brightness factor and blur σ and their means, one row per model
``hein2019``       W3: MMC / AUROC / FPR@95 (``fpr95_id``) per OOD set, W3's noise, adversarial noise and
                   adversarial samples for Plain / CEDA / ACET (fractions, as W3's README); then test error and
                   α-scaling (median α for 99.9% confidence, % overconfident after clipping)
``odin``           W4: FPR at 95% TPR / detection error / AUROC / AUPR-In / AUPR-Out, Baseline (MSP) / ODIN per OOD
                   set, one table per model; ODIN rows are ``odin_paper`` (ODIN's per-set ε) when stored, else ``odin``
================  =========================================================================================

Input: the stored result records of each preset (``ResultStore.results``: dicts with ``run_id``, ``kind``,
``dataset``, ``shift``, ``severity``, ``detector``, ``metric``, ``value``) or :class:`~rulab.eval.results.ResultTable`
objects (one run each). Every cell is the mean ± std (ddof 1) over runs (seeds); a derived cell (a mean over OOD sets,
an error = 1 − accuracy) is computed per run first. Paper numbers are strings exactly as printed in the source and are
shown in rows labelled "(paper)".

A :class:`rulab.presets.paper.PaperStudy` names its layout (``paper_table``), which preset fills which column and
the reference key; :func:`study_tables` builds its tables (the builder of layout ``x`` is the function
``x_tables`` of this module), :func:`study_paper_html` is what the HTML report calls and
:func:`study_paper_markdown` renders the same tables for a README.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulab.eval.results import ResultTable
from rulab.results.aggregate import mean_std

__all__ = [
    "Cell",
    "PaperRow",
    "PaperTable",
    "W1_REFERENCE",
    "W2_REFERENCE",
    "W3_REFERENCE",
    "W4_REFERENCE",
    "hendrycks2019_tables",
    "coursework_tables",
    "hein2019_tables",
    "odin_tables",
    "study_tables",
    "study_paper_html",
    "study_paper_markdown",
]

Records = Mapping[str, Any]
Results = Mapping[str, "Sequence[Records] | ResultTable"]


# --------------------------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes:
        mean: the value as stored (a fraction for fraction metrics), NaN when missing.
        std: std over runs (ddof 1), NaN for one run.
        n: number of runs.
        scale: display factor (100 for percent, 1 for fractions and plain numbers).
        fmt: ``format`` spec of the displayed number (``".2f"``, ``".3f"``, ``".3g"``).
        text: the exact text of a paper number (then ``mean`` is its value, for ``data-mean``).
    """

    mean: float
    std: float = math.nan
    n: int = 0
    scale: float = 100.0
    fmt: str = ".2f"
    text: str = ""

    @property
    def paper(self) -> bool:
        return bool(self.text)

    def display(self) -> str:
        """``mean ± std`` in display units (``–`` when missing; just the mean for a single run)."""
        if self.text:
            return self.text
        if self.mean is None or math.isnan(self.mean):
            return "–"
        out = format(self.mean * self.scale, self.fmt)
        if self.n > 1 and not math.isnan(self.std):
            out += " ± " + format(self.std * self.scale, self.fmt)
        return out


def paper_cell(text: str, scale: float = 100.0) -> Cell:
    """A paper number as printed (``"91.5"``); ``scale`` converts it back to a stored value for ``data-mean``."""
    return Cell(float(text) / scale, scale=scale, text=text)


@dataclass(frozen=True)
class PaperRow:
    """A labelled row; ``paper`` rows hold the source's numbers."""

    label: str
    cells: tuple[Cell | None, ...]
    paper: bool = False


@dataclass(frozen=True)
class PaperTable:
    """A table in a paper's layout.

    Attributes:
        title: caption (what, which metric convention).
        row_header: header of the label column.
        columns: one label per value column.
        groups: an optional top header row, ``((label, span), ...)`` covering ``columns``.
        rows: ours and the paper's rows.
        notes: sentences appended to the caption.
    """

    title: str
    row_header: str
    columns: tuple[str, ...]
    rows: tuple[PaperRow, ...]
    groups: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = field(default=())

    def cell(self, row: str, column: str) -> Cell | None:
        """The cell at row label ``row`` and flat column label (``"AUROC Normal"`` or just ``"Normal"``)."""
        flat = self.flat_columns()
        j = flat.index(column) if column in flat else self.columns.index(column)
        for r in self.rows:
            if r.label == row:
                return r.cells[j]
        raise KeyError(f"no row '{row}' in table '{self.title}'")

    def flat_columns(self) -> list[str]:
        """Column labels prefixed by their group (``"AUROC Normal"``); the plain labels without groups."""
        if not self.groups:
            return list(self.columns)
        out: list[str] = []
        i = 0
        for label, span in self.groups:
            out += [f"{label} {c}".strip() for c in self.columns[i : i + span]]
            i += span
        return out

    def html(self) -> str:
        """An HTML ``<table>`` (the report's ``results`` style); paper rows are muted and italic."""
        e = _e
        head = ""
        if self.groups:
            head += "<tr><th></th>" + "".join(f'<th class="num" colspan="{span}">{e(label)}</th>' for label, span in self.groups) + "</tr>"
        head += f"<tr><th>{e(self.row_header)}</th>" + "".join(f'<th class="num">{e(c)}</th>' for c in self.columns) + "</tr>"
        body = []
        for r in self.rows:
            style = ' class="paper" style="color:#59636e;font-style:italic"' if r.paper else ""
            tds = []
            for c in r.cells:
                if c is None or (not c.paper and math.isnan(c.mean)):
                    tds.append('<td class="num missing">–</td>')
                else:
                    extra = f' data-n="{c.n}"' if not c.paper else ' data-paper="1"'
                    tds.append(f'<td class="num" data-mean="{c.mean!r}"{extra}>{e(c.display())}</td>')
            body.append(f'<tr{style}><th scope="row">{e(r.label)}</th>{"".join(tds)}</tr>')
        cap = self.title + ("; " + " ".join(self.notes) if self.notes else "")
        return f'<table class="results paper"><caption>{e(cap)}</caption><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'

    def markdown(self) -> str:
        """A GitHub-flavoured markdown table with the caption above it and the notes below."""
        cols = self.flat_columns()
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = [f"**{esc(self.title)}**", "", "| " + " | ".join([esc(self.row_header)] + [esc(c) for c in cols]) + " |",
                 "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|"]
        for r in self.rows:
            cells = ["–" if c is None else c.display() for c in r.cells]
            label = f"*{esc(r.label)}*" if r.paper else esc(r.label)
            lines.append("| " + " | ".join([label] + [esc(c) for c in cells]) + " |")
        if self.notes:
            lines += ["", " ".join(self.notes)]
        return "\n".join(lines) + "\n"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# --------------------------------------------------------------------------------------------- reading results


def _records(results: Sequence[Records] | ResultTable) -> list[Records]:
    if isinstance(results, ResultTable):
        run = str(results.meta.get("run", "run"))
        return [{"run_id": run, "kind": r.kind, "dataset": r.dataset, "shift": r.shift, "severity": r.severity,
                 "detector": r.detector, "metric": r.metric, "value": r.value} for r in results]
    return list(results)


class _Runs:
    """The records of one preset, indexed by key, with per-run lookups."""

    def __init__(self, records: Iterable[Records]) -> None:
        self.values: dict[tuple[str, ...], dict[str, float]] = {}
        self.runs: list[str] = []
        for r in records:
            run = str(r.get("run_id", ""))
            if run not in self.runs:
                self.runs.append(run)
            key = (str(r["kind"]), str(r.get("dataset", "")), str(r.get("shift", "")), str(r.get("severity", "")),
                   str(r.get("detector", "")), str(r["metric"]))
            v = r["value"]
            self.values.setdefault(key, {})[run] = math.nan if v is None else float(v)

    def per_run(self, kind: str, metric: str, dataset: str | None = None, detector: str | None = None, shift: str = "",
                severity: str = "") -> dict[str, float]:
        """``{run: value}`` of the single key matching (``dataset`` / ``detector`` None = any, first match)."""
        for (k, d, s, sev, det, m), vals in self.values.items():
            if k == kind and m == metric and s == shift and sev == severity and (dataset is None or d == dataset) and (detector is None or det == detector):
                return vals
        return {}

    def datasets(self, kind: str, detector: str, metric: str) -> list[str]:
        return list(dict.fromkeys(d for (k, d, _s, _sev, det, m) in self.values if k == kind and det == detector and m == metric))

    def severities(self, shift: str, metric: str) -> list[str]:
        sevs = {sev for (k, _d, s, sev, _det, m) in self.values if k == "shift" and s == shift and m == metric and sev not in ("mean", "")}
        return sorted(sevs, key=float)


def _cell(vals: Mapping[str, float] | Iterable[float], scale: float = 100.0, fmt: str = ".2f") -> Cell:
    v = list(vals.values()) if isinstance(vals, Mapping) else list(vals)
    mean, std, n = mean_std(v)
    return Cell(mean, std, n, scale, fmt)


def _per_run_mean(parts: Sequence[Mapping[str, float]]) -> list[float]:
    """Per run, the mean over ``parts`` (runs missing a part are left out)."""
    if not parts:
        return []
    runs = set(parts[0]).intersection(*parts[1:])
    return [sum(p[r] for p in parts) / len(parts) for r in sorted(runs)]


def _seed_note(runs: Mapping[str, _Runs]) -> str:
    counts = sorted({len(r.runs) for r in runs.values()})
    return f"ours: mean ± std over {'/'.join(str(c) for c in counts)} seed(s)."


_NAMES = {
    "gaussian": "Gaussian", "rademacher": "Rademacher", "blobs": "Blobs", "dtd": "Textures", "textures": "Textures (skimage)",
    "svhn": "SVHN", "places365": "Places365", "lsun_resize": "LSUN (resize)", "lsun_crop": "LSUN (crop)", "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100", "digits": "Digits (sklearn)", "uniform": "Uniform", "hein": "Noise", "lsun_classroom": "LSUN CR",
    "tin_crop": "TinyImageNet (crop)", "tin_resize": "TinyImageNet (resize)", "isun": "iSUN", "gaussian_odin": "Gaussian",
    "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "tiny_imagenet": "Tiny ImageNet", "photos": "Photos (skimage)",
}
"""Display names of OOD sets and datasets (data)."""


def _ordered(names: Sequence[str], order: Sequence[str]) -> list[str]:
    """``names`` in the paper's ``order``; names it does not list follow in their own order."""
    return [n for n in order if n in names] + [n for n in names if n not in order]


def _name(set_name: str) -> str:
    return _NAMES.get(set_name, set_name)


# --------------------------------------------------------------------------------------------- reference numbers

W1_REFERENCE: dict[str, dict[str, dict[str, dict[str, str]]]] = {
    "cifar10": {"Normal": {"auroc": "91.5", "aupr_out": "63.4", "error": "5.32", "rms": "6.4", "mad": "2.9"},
                "Pre-Train": {"auroc": "94.5", "aupr_out": "73.5", "error": "3.64", "rms": "2.9", "mad": "1.2"}},
    "cifar100": {"Normal": {"auroc": "69.4", "aupr_out": "29.7", "error": "23.91", "rms": "13.3", "mad": "10.3"},
                 "Pre-Train": {"auroc": "83.1", "aupr_out": "52.7", "error": "20.82", "rms": "3.6", "mad": "2.5"}},
    "tinyimagenet": {"Normal": {"auroc": "71.8", "aupr_out": "30.8", "error": "36.48"},
                     "Pre-Train": {"auroc": "73.9", "aupr_out": "31.0", "error": "34.51"}},
}
"""W1 paper numbers (Hendrycks et al. 2019, percent): mean AUROC / AUPR over the OOD sets, test error of the shipped
checkpoints (``uncertainty/*/snapshots/``), ID calibration RMS / MAD (T = 1, top bin dropped). Keyed by reference, then column label."""

_W2_PATH_LEVELS = ("0.8", "0.9", "1.1", "1.2")
_W2_PETS_LEVELS = ("0.6", "0.8", "1.2", "1.4")
_BLUR_LEVELS = ("0.3", "0.5", "0.7", "0.9")


def _w2(levels: tuple[str, ...], clean: str, bright: tuple[str, ...], bmean: str, blur: tuple[str, ...], blmean: str,
        rmse: tuple[str, str, str]) -> dict[str, dict[str, str]]:
    acc = {"clean": clean, "brightness_factor/mean": bmean, "gaussian_blur_sigma/mean": blmean}
    acc.update({f"brightness_factor/{lv}": v for lv, v in zip(levels, bright) if v})
    acc.update({f"gaussian_blur_sigma/{lv}": v for lv, v in zip(_BLUR_LEVELS, blur) if v})
    return {"acc": acc, "rms_uniform10": {"clean": rmse[0], "brightness_factor/mean": rmse[1], "gaussian_blur_sigma/mean": rmse[2]}}


W2_REFERENCE: dict[str, dict[str, dict[str, dict[str, str]]]] = {
    "pathmnist": {
        "Basic": _w2(_W2_PATH_LEVELS, "82.3", ("34.7", "58.8", "31.3", "20.8"), "36.4", ("82.5", "73.8", "59.6", "54.2"), "67.5", ("0.145", "0.603", "0.278")),
        "MixUp + Aug": _w2(_W2_PATH_LEVELS, "85.9", ("46.2", "65.9", "55.0", "28.1"), "48.8", ("85.8", "76.0", "60.5", "50.1"), "68.1", ("0.040", "0.302", "0.168")),
        "MixUp + Aug + PT": _w2(_W2_PATH_LEVELS, "87.6", ("46.6", "72.2", "52.9", "29.4"), "50.3", ("87.9", "83.0", "69.4", "57.1"), "74.3", ("0.033", "0.299", "0.111")),
    },
    "pets": {
        "Scratch": _w2(_W2_PETS_LEVELS, "73.7", ("66.2", "72.7", "68.6", "62.4"), "67.5", ("73.6", "71.3", "64.4", "56.4"), "66.4", ("0.055", "0.050", "0.060")),
        "Supervised": _w2(_W2_PETS_LEVELS, "96.9", ("96.1", "96.2", "96.5", "94.9"), "96.0", ("96.3", "96.3", "94.3", "93.0"), "95.0", ("0.155", "0.149", "0.158")),
        "Barlow Twins": _w2(_W2_PETS_LEVELS, "93.6", ("91.1", "92.8", "93.4", "92.4"), "92.4", ("92.4", "92.0", "86.3", "82.9"), "88.4", ("0.218", "0.207", "0.195")),
    },
}
"""W2 report numbers (Tables 1-4 pathMNIST, reproduced by its code; Tables 5-8 Pets, report only): accuracy in percent
per ``<corruption>/<level>``, ``<corruption>/mean`` and ``clean``; RMSE (10-bin) as a fraction. The Pets RMSE values
are assigned to the models in the order of the report's Table 6."""


def _w3(**rows: tuple[str, str, str]) -> dict[str, tuple[str, str, str]]:
    return rows


W3_REFERENCE: dict[str, dict[str, Any]] = {
    "svhn": {
        "error": {"Plain": "3.53", "CEDA": "3.50", "ACET": "3.52"},
        "id_mmc": {"Plain": "0.980", "CEDA": "0.977", "ACET": "0.978"},
        "rows": {
            "cifar10": {"Plain": ("0.732", "0.938", "0.348"), "CEDA": ("0.551", "0.960", "0.209"), "ACET": ("0.435", "0.973", "0.140")},
            "cifar100": {"Plain": ("0.730", "0.935", "0.350"), "CEDA": ("0.527", "0.959", "0.205"), "ACET": ("0.414", "0.971", "0.139")},
            "lsun_classroom": {"Plain": ("0.722", "0.945", "0.324"), "CEDA": ("0.364", "0.984", "0.084"), "ACET": ("0.148", "0.997", "0.012")},
            "ImageNet−": {"Plain": ("0.725", "0.939", "0.340"), "CEDA": ("0.574", "0.955", "0.232"), "ACET": ("0.368", "0.977", "0.113")},
            "hein": {"Plain": ("0.720", "0.943", "0.325"), "CEDA": ("0.100", "1.000", "0.000"), "ACET": ("0.100", "1.000", "0.000")},
            "adv_noise": {"Plain": ("1.000", "0.004", "1.000"), "CEDA": ("0.946", "0.062", "0.940"), "ACET": ("0.101", "1.000", "0.000")},
            "adv_samples": {"Plain": ("1.000", "0.004", "1.000"), "CEDA": ("0.995", "0.009", "0.994"), "ACET": ("0.369", "0.778", "0.279")},
        },
        "alpha": {"Plain": ("28.1", "99.9"), "ACET": ("49.8", "50.2")},
    },
    "cifar100": {
        "error": {"Plain": "31.97", "CEDA": "32.74", "ACET": "32.24"},
        "id_mmc": {"Plain": "0.751", "CEDA": "0.734", "ACET": "0.728"},
        "rows": {
            "svhn": {"Plain": ("0.570", "0.710", "0.865"), "CEDA": ("0.290", "0.874", "0.410"), "ACET": ("0.234", "0.912", "0.345")},
            "cifar10": {"Plain": ("0.560", "0.718", "0.856"), "CEDA": ("0.547", "0.711", "0.855"), "ACET": ("0.530", "0.720", "0.860")},
            "lsun_classroom": {"Plain": ("0.592", "0.690", "0.887"), "CEDA": ("0.581", "0.678", "0.887"), "ACET": ("0.554", "0.698", "0.881")},
            "ImageNet−": {"Plain": ("0.531", "0.744", "0.827"), "CEDA": ("0.504", "0.749", "0.808"), "ACET": ("0.492", "0.752", "0.819")},
            "hein": {"Plain": ("0.614", "0.672", "0.928"), "CEDA": ("0.010", "1.000", "0.000"), "ACET": ("0.010", "1.000", "0.000")},
            "adv_noise": {"Plain": ("1.000", "0.000", "1.000"), "CEDA": ("0.985", "0.015", "0.985"), "ACET": ("0.013", "0.998", "0.003")},
            "adv_samples": {"Plain": ("0.999", "0.010", "1.000"), "CEDA": ("0.999", "0.012", "1.000"), "ACET": ("0.863", "0.267", "0.975")},
        },
        "alpha": {"Plain": ("9.9", "99.8"), "ACET": ("9.9", "0.0")},
    },
    "mnist": {"alpha": {"Plain": ("1.5", "98.7"), "ACET": ("3.0e15", "0.0")}},
    "cifar10": {"alpha": {"Plain": ("8.1", "99.9"), "ACET": ("45.3", "3.4")}},
}
"""W3 README numbers (and the paper's Table 2 for α-scaling): test error (%), ID MMC, per OOD row (MMC, AUROC, FPR@95) as fractions,
α-scaling (median α, % overconfident after clipping) for Plain and ACET. MNIST and CIFAR-10 OOD tables are in the
paper only and are not reproduced here. Rows are keyed by our set names (``hein`` = W3's noise)."""

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
        "34.7/4.3 10.0/4.7 95.3/99.1 96.4/99.1 93.8/99.1", "40.8/7.5 11.5/6.1 94.1/98.5 95.1/98.6 92.4/98.5",
        "39.3/8.7 10.2/6.0 94.8/98.2 96.0/98.5 93.1/97.8", "33.6/3.8 9.7/4.4 95.4/99.2 96.4/99.3 94.0/99.2",
        "37.2/6.3 10.8/5.5 94.8/98.8 95.9/98.9 93.1/98.8", "23.5/0.0 5.3/0.5 96.5/99.9 97.8/100.0 93.0/99.9",
        "12.3/0.0 4.7/0.2 97.5/100.0 98.3/100.0 95.9/100.0"),
    "densenet-cifar100": _w4(
        "66.6/28.0 27.1/13.2 81.2/94.3 82.9/94.5 80.1/94.4", "82.5/58.2 34.4/23.0 71.5/85.0 73.8/85.5 68.9/84.0",
        "59.7/17.3 23.3/9.5 85.4/96.7 86.9/96.9 84.4/96.5", "83.2/60.5 35.2/23.0 70.8/85.3 74.0/86.4 67.9/83.7",
        "84.9/64.9 36.1/24.0 69.6/84.0 72.4/85.1 66.6/81.8", "100.0/99.8 35.7/15.9 43.2/83.0 63.2/89.6 41.9/68.9",
        "100.0/100.0 41.4/35.5 30.5/45.9 53.3/64.7 37.6/43.0"),
    "wrn-cifar10": _w4(
        "38.9/23.4 12.5/11.6 92.9/94.2 92.5/92.8 91.9/94.7", "45.6/25.5 14.8/13.4 91.0/92.1 89.7/89.0 89.9/93.6",
        "35.0/21.8 10.8/9.8 94.5/95.9 95.1/95.8 93.1/95.5", "35.0/17.6 11.4/9.7 93.9/95.4 93.8/93.8 92.8/96.1",
        "40.6/21.3 13.2/11.5 92.5/93.7 91.7/91.2 91.5/94.9", "1.6/0.0 3.2/0.2 99.2/100.0 99.3/100.0 98.9/100.0",
        "0.3/0.0 2.4/0.1 99.5/100.0 99.6/100.0 99.3/100.0"),
    "wrn-cifar100": _w4(
        "67.1/42.7 25.9/16.0 82.4/91.8 84.1/92.5 80.7/91.0", "79.3/51.6 32.2/20.7 74.2/87.8 75.4/88.2 71.9/87.2",
        "74.0/35.7 26.8/16.0 80.6/91.8 83.3/91.8 77.5/91.6", "76.7/46.5 29.2/18.5 77.4/89.5 79.1/89.8 74.6/89.2",
        "79.8/50.8 30.8/19.5 75.7/88.4 77.5/88.9 72.7/87.6", "21.0/0.0 7.2/0.3 96.5/100.0 97.6/100.0 92.9/99.9",
        "28.3/0.0 6.1/0.2 95.7/99.9 97.4/100.0 89.3/99.8"),
}
"""ODIN's Table 2 (Liang et al. 2018, percent): per model, OOD set and metric the pair (Baseline, ODIN)."""


# --------------------------------------------------------------------------------------------- W1


_W1_ORDER = ("gaussian", "rademacher", "blobs", "dtd", "textures", "svhn", "places365", "lsun_resize", "cifar10", "cifar100")


def hendrycks2019_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """W1's OOD table (MSP: AUROC, AUPR-Out at 1:5, FPR95 with OOD positive, per OOD set and their mean) and its
    calibration table (test error, RMS, MAD, Soft-F1 of the raw logits), with the paper's numbers for ``reference``.

    Args:
        results: preset → its records (or a ResultTable).
        columns: ``((label, preset), ...)``, e.g. ``(("Normal", "hendrycks2019-cifar10"), ("Pre-Train", ...))``.
        reference: a key of :data:`W1_REFERENCE` or ``""``.
    """
    runs = {label: _Runs(_records(results.get(preset, ()))) for label, preset in columns}
    labels = [label for label, _ in columns]
    ref = W1_REFERENCE.get(reference, {})
    metrics = (("AUROC ↑", "auroc"), ("AUPR ↑", "aupr_out"), ("FPR95 ↓", "fpr95_ood"))
    sets: list[str] = []
    for r in runs.values():
        sets += [s for s in r.datasets("ood", "msp", "auroc") if s not in sets]
    sets = _ordered(sets, _W1_ORDER)
    rows = []
    for s in sets:
        rows.append(PaperRow(_name(s), tuple(_cell(runs[lb].per_run("ood", m, s, "msp")) for _, m in metrics for lb in labels)))
    mean_cells = []
    for _, m in metrics:
        for lb in labels:
            parts = [runs[lb].per_run("ood", m, s, "msp") for s in sets]
            mean_cells.append(_cell(_per_run_mean([p for p in parts if p]) if all(parts) else []))
    rows.append(PaperRow("Mean", tuple(mean_cells)))
    if ref:
        rows.append(PaperRow("Mean (paper)", tuple(paper_cell(ref[lb][m]) if lb in ref and m in ref[lb] else None for _, m in metrics for lb in labels), paper=True))
    ood = PaperTable(
        title="OOD detection with MSP (%): AUROC, AUPR-Out at an OOD:ID ratio of 1:5, FPR95 with OOD as positive (W1, uncertainty/CIFAR/test.py)",
        row_header="OOD set", columns=tuple(labels) * len(metrics), groups=tuple((name, len(labels)) for name, _ in metrics), rows=tuple(rows),
        notes=(_seed_note(runs), "Mean = unweighted mean over the OOD sets, per run." + (" Paper: Hendrycks et al. 2019 (FPR95 not reported)." if ref else "")),
    )
    cal_rows = []
    for label, metric in (("Test error", "error"), ("RMS", "rms"), ("MAD", "mad"), ("Soft-F1", "soft_f1")):
        cells = []
        for lb in labels:
            if metric == "error":
                acc = runs[lb].per_run("id", "acc", None, "")
                cells.append(_cell({k: 1.0 - v for k, v in acc.items()}))
            else:
                cells.append(_cell(runs[lb].per_run("id", metric, None, "")))
        cal_rows.append(PaperRow(label, tuple(cells)))
        if ref and any(metric in ref.get(lb, {}) for lb in labels):
            cal_rows.append(PaperRow(f"{label} (paper)", tuple(paper_cell(ref[lb][metric]) if metric in ref.get(lb, {}) else None for lb in labels), paper=True))
    cal = PaperTable(
        title="Test error and in-distribution calibration (%): RMS and MAD with adaptive bins of 100, Soft-F1; raw logits (T = 1) (W1, utils/calibration_tools.py)",
        row_header="", columns=tuple(labels), rows=tuple(cal_rows),
        notes=(_seed_note(runs), "Parity presets drop the top-confidence bin as W1 did." + (" Paper: Hendrycks et al. 2019; test errors of the shipped checkpoints." if ref else "")),
    )
    return [ood, cal]


# --------------------------------------------------------------------------------------------- W2


def coursework_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """W2's tables: accuracy (%) and RMSE (10 equal-width bins, a fraction) on the clean test set, per brightness
    factor and blur σ, and the mean over each grid (W2 report §7, Tables 1-8), one row per model."""
    runs = {label: _Runs(_records(results.get(preset, ()))) for label, preset in columns}
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
    groups = (("", 1), ("Brightness", len(levels["brightness_factor"]) + 1), ("Gaussian blur", len(levels["gaussian_blur_sigma"]) + 1))
    tables = []
    for metric, title, scale, fmt in (("acc", "Accuracy (%)", 100.0, ".1f"), ("rms_uniform10", "RMSE (10 equal-width bins, fraction)", 1.0, ".3f")):
        rows = []
        for label in runs:
            cells = tuple(_cell(runs[label].per_run("shift", metric, None, "", shift, sev), scale, fmt) for _, shift, sev in cols)
            rows.append(PaperRow(label, cells))
            paper = ref.get(label, {}).get(metric, {})
            if paper:
                keys = ["clean" if shift == "clean" else f"{shift}/{sev}" for _, shift, sev in cols]
                rows.append(PaperRow(f"{label} (paper)", tuple(paper_cell(paper[k], scale) if k in paper else None for k in keys), paper=True))
        tables.append(PaperTable(
            title=f"{title} under W2's brightness factors and Gaussian blur (kernel 5) (W2 report §7)",
            row_header="Model", columns=tuple(c[0] for c in cols), groups=groups, rows=tuple(rows),
            notes=(_seed_note(runs), "Means are over the grid's levels (clean excluded)." + (" Paper: W2 report Tables 1-8." if ref else "")),
        ))
    return tables


# --------------------------------------------------------------------------------------------- W3


def hein2019_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """W3's table: MMC / AUROC / FPR@95 (``fpr95_id``) per OOD set, noise, adversarial noise and adversarial samples
    for each model (fractions, 3 decimals), the ID MMC; then test error (%) and α-scaling (W3's README tables and the
    paper's Table 2)."""
    runs = {label: _Runs(_records(results.get(preset, ()))) for label, preset in columns}
    labels = [label for label, _ in columns]
    ref = W3_REFERENCE.get(reference, {})
    trio = (("MMC", "mmc"), ("AUROC", "auroc"), ("FPR@95", "fpr95_id"))
    sets: list[str] = []
    for r in runs.values():
        sets += [s for s in r.datasets("ood", "msp", "auroc") if s not in sets and s != "hein"]
    sources = [(_name(s), s, "ood", "msp") for s in sets] + [("Noise", "hein", "ood", "msp"), ("Adv. Noise", "adv_noise", "farconf", ""),
                                                            ("Adv. Samples", "adv_samples", "farconf", "")]
    rows = []
    id_cells: list[Cell | None] = []
    for lb in labels:
        id_cells += [_cell(runs[lb].per_run("id", "mmc", None, ""), 1.0, ".3f"), None, None]
    rows.append(PaperRow("ID (MMC)", tuple(id_cells)))
    if "id_mmc" in ref:
        rows.append(PaperRow("ID (MMC) (paper)", tuple(c for lb in labels for c in (paper_cell(ref["id_mmc"][lb], 1.0) if lb in ref["id_mmc"] else None, None, None)), paper=True))
    ref_rows = ref.get("rows", {})
    for label, ds, kind, det in sources:
        rows.append(PaperRow(label, tuple(_cell(runs[lb].per_run(kind, m, ds, det), 1.0, ".3f") for lb in labels for _, m in trio)))
        if ds in ref_rows:
            rows.append(PaperRow(f"{label} (paper)", tuple(paper_cell(ref_rows[ds][lb][i], 1.0) if lb in ref_rows[ds] else None
                                                          for lb in labels for i in range(3)), paper=True))
    for ds in ref_rows:
        if ds not in sets and ds not in ("hein", "adv_noise", "adv_samples"):
            rows.append(PaperRow(f"{_name(ds)} (paper)", tuple(paper_cell(ref_rows[ds][lb][i], 1.0) if lb in ref_rows[ds] else None
                                                              for lb in labels for i in range(3)), paper=True))
    ood = PaperTable(
        title="MMC / AUROC / FPR@95 of MSP (fractions; FPR at 95% TPR of the ID set) on OOD sets, W3's noise, adversarial noise and adversarial samples (W3, evaluation.py)",
        row_header="", columns=tuple(name for _ in labels for name, _ in trio), groups=tuple((lb, 3) for lb in labels), rows=tuple(rows),
        notes=(_seed_note(runs), "Adv. Samples: non-resisted adversarial test images only." + (" Paper: W3 README tables (ImageNet− is not public)." if ref else "")),
    )
    extra_rows = []
    err = []
    for lb in labels:
        acc = runs[lb].per_run("id", "acc", None, "")
        err.append(_cell({k: 1.0 - v for k, v in acc.items()}))
    extra_rows.append(PaperRow("Test error (%)", tuple(err)))
    if "error" in ref:
        extra_rows.append(PaperRow("Test error (%) (paper)", tuple(paper_cell(ref["error"][lb]) if lb in ref["error"] else None for lb in labels), paper=True))
    extra_rows.append(PaperRow("Median α for 99.9% confidence", tuple(_cell(runs[lb].per_run("farconf", "alpha_median", "alpha_scaling", ""), 1.0, ".3g") for lb in labels)))
    alpha = ref.get("alpha", {})
    if alpha:
        extra_rows.append(PaperRow("Median α (paper)", tuple(paper_cell(alpha[lb][0], 1.0) if lb in alpha else None for lb in labels), paper=True))
    extra_rows.append(PaperRow("% overconfident (> 95%) after clipping", tuple(_cell(runs[lb].per_run("farconf", "overconf_frac", "alpha_scaling", ""), 100.0, ".1f") for lb in labels)))
    if alpha:
        extra_rows.append(PaperRow("% overconfident (paper)", tuple(paper_cell(alpha[lb][1]) if lb in alpha else None for lb in labels), paper=True))
    far = PaperTable(
        title="Test error and α-scaling of uniform noise (W3 Table 2)", row_header="", columns=tuple(labels), rows=tuple(extra_rows),
        notes=(_seed_note(runs),),
    )
    return [ood, far]


# --------------------------------------------------------------------------------------------- W4


def odin_tables(results: Results, columns: Sequence[tuple[str, str]], reference: str = "") -> list[PaperTable]:
    """ODIN's Table 2 layout, one table per model: FPR at 95% TPR (``fpr95_id``), detection error, AUROC, AUPR-In,
    AUPR-Out, each Baseline (MSP) / ODIN, per OOD set (Liang et al. 2018, Table 2; percent)."""
    ref = W4_REFERENCE.get(reference, {})
    heads = (("FPR at 95% TPR ↓", "fpr95_id"), ("Detection error ↓", "detection_error"), ("AUROC ↑", "auroc"), ("AUPR-In ↑", "aupr_in"), ("AUPR-Out ↑", "aupr_out"))
    tables = []
    for label, preset in columns:
        r = _Runs(_records(results.get(preset, ())))
        odin = "odin_paper" if r.datasets("ood", "odin_paper", "auroc") else "odin"
        sets = r.datasets("ood", "msp", "auroc")
        sets = _ordered(sets, _ODIN_SETS)
        rows = []
        for s in sets:
            rows.append(PaperRow(_name(s), tuple(_cell(r.per_run("ood", m, s, det)) for _, m in heads for det in ("msp", odin))))
            if s in ref:
                rows.append(PaperRow(f"{_name(s)} (paper)", tuple(paper_cell(ref[s][m][i]) for _, m in heads for i in (0, 1)), paper=True))
        note = "ODIN with the per-set ε of ODIN's README (T = 1000)." if odin == "odin_paper" else "ODIN with the evaluation's (T, ε) (tuned on validation-OOD data, or T = 1000, ε = 0.0014 without it)."
        tables.append(PaperTable(
            title=f"{label}: Baseline (MSP) / ODIN, % (W4)", row_header="OOD set",
            columns=("Baseline", "ODIN") * len(heads), groups=tuple((h, 2) for h, _ in heads), rows=tuple(rows),
            notes=(f"ours: mean ± std over {len(r.runs)} seed(s).", note, "Exact metrics (not ODIN's threshold grid)." + (" Paper: ICLR Table 2." if ref else "")),
        ))
    return tables


# --------------------------------------------------------------------------------------------- studies


def study_tables(study: Any, results: Results) -> list[PaperTable]:
    """The paper tables of a :class:`~rulab.presets.paper.PaperStudy` (or its registered name) from per-preset results;
    ``[]`` for a study without a paper layout."""
    if isinstance(study, str):
        from rulab.registry import STUDIES

        if study not in STUDIES:
            return []
        study = STUDIES.create(study)
    kind = getattr(study, "paper_table", "")
    if not kind:
        return []
    builder = globals()[f"{kind}_tables"]  # the layout named by the study (PAPER_TABLES), see the module docstring
    return builder(results, study.paper_columns, study.paper_reference)


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
    from rulab.results.aggregate import group_of
    from rulab.results.store import ResultStore

    with ResultStore(Path(db)) as store:
        runs = store.runs(study=study)
        records = store.results(run_id=[r["run_id"] for r in runs]) if runs else []
    group = {r["run_id"]: group_of(r) for r in runs}
    by_preset: dict[str, list[Records]] = {}
    for rec in records:
        by_preset.setdefault(group.get(rec["run_id"], ""), []).append(rec)
    return "\n".join(t.markdown() for t in study_tables(study, by_preset))
