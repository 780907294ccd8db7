"""The model of a paper-style table and the reading of stored results that every paper's builder shares.

A :class:`PaperTable` is a caption, column labels (optionally grouped) and rows of :class:`Cell`; rows labelled
"(paper)" hold a paper's own numbers as printed. The builders in this package read the stored result records of
each preset (``ResultStore.results``: dicts with ``run_id``, ``kind``, ``dataset``, ``shift``, ``severity``,
``detector``, ``metric``, ``value``) or :class:`~rulab.results.table.ResultTable` objects (one run each) through
:class:`Runs`; every cell is the mean ± std (ddof 1) over runs (seeds), and a derived cell (a mean over OOD sets, an
error = 1 − accuracy) is computed per run first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rulab.reports.blocks import escape
from rulab.results.aggregate import mean_std
from rulab.results.table import ResultTable

__all__ = [
    "Records",
    "Results",
    "Cell",
    "paper_cell",
    "PaperRow",
    "PaperTable",
    "Runs",
    "records",
    "cell",
    "per_run_mean",
    "seed_note",
    "SET_NAMES",
    "set_name",
    "ordered",
]

Records = Mapping[str, Any]
"""One stored result record."""
Results = Mapping[str, "Sequence[Records] | ResultTable"]
"""Preset name → its records (or one run's ResultTable)."""


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
        e = escape
        head = ""
        if self.groups:
            head += (
                "<tr><th></th>"
                + "".join(f'<th class="num" colspan="{span}">{e(label)}</th>' for label, span in self.groups)
                + "</tr>"
            )
        head += (
            f"<tr><th>{e(self.row_header)}</th>"
            + "".join(f'<th class="num">{e(c)}</th>' for c in self.columns)
            + "</tr>"
        )
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
        caption, body_html = f"<caption>{e(cap)}</caption>", "".join(body)
        return f'<table class="results paper">{caption}<thead>{head}</thead><tbody>{body_html}</tbody></table>'

    def markdown(self) -> str:
        """A GitHub-flavoured markdown table with the caption above it and the notes below."""
        cols = self.flat_columns()
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = [
            f"**{esc(self.title)}**",
            "",
            "| " + " | ".join([esc(self.row_header)] + [esc(c) for c in cols]) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(cols)) + "|",
        ]
        for r in self.rows:
            cells = ["–" if c is None else c.display() for c in r.cells]
            label = f"*{esc(r.label)}*" if r.paper else esc(r.label)
            lines.append("| " + " | ".join([label] + [esc(c) for c in cells]) + " |")
        if self.notes:
            lines += ["", " ".join(self.notes)]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- reading results


def records(results: Sequence[Records] | ResultTable) -> list[Records]:
    """The records of one preset (a ResultTable becomes records of the run named in its ``meta``)."""
    if isinstance(results, ResultTable):
        run = str(results.meta.get("run", "run"))
        return [
            {
                "run_id": run,
                "kind": r.kind,
                "dataset": r.dataset,
                "shift": r.shift,
                "severity": r.severity,
                "detector": r.detector,
                "metric": r.metric,
                "value": r.value,
            }
            for r in results
        ]
    return list(results)


class Runs:
    """The records of one preset, indexed by key, with per-run lookups."""

    def __init__(self, recs: Iterable[Records]) -> None:
        self.values: dict[tuple[str, ...], dict[str, float]] = {}
        self.runs: list[str] = []
        for r in recs:
            run = str(r.get("run_id", ""))
            if run not in self.runs:
                self.runs.append(run)
            key = (
                str(r["kind"]),
                str(r.get("dataset", "")),
                str(r.get("shift", "")),
                str(r.get("severity", "")),
                str(r.get("detector", "")),
                str(r["metric"]),
            )
            v = r["value"]
            self.values.setdefault(key, {})[run] = math.nan if v is None else float(v)

    def per_run(
        self,
        kind: str,
        metric: str,
        dataset: str | None = None,
        detector: str | None = None,
        shift: str = "",
        severity: str = "",
    ) -> dict[str, float]:
        """``{run: value}`` of the single key matching (``dataset`` / ``detector`` None = any, first match)."""
        for (k, d, s, sev, det, m), vals in self.values.items():
            if (
                k == kind
                and m == metric
                and s == shift
                and sev == severity
                and (dataset is None or d == dataset)
                and (detector is None or det == detector)
            ):
                return vals
        return {}

    def datasets(self, kind: str, detector: str, metric: str) -> list[str]:
        return list(
            dict.fromkeys(
                d for (k, d, _s, _sev, det, m) in self.values if k == kind and det == detector and m == metric
            )
        )

    def severities(self, shift: str, metric: str) -> list[str]:
        sevs = {
            sev
            for (k, _d, s, sev, _det, m) in self.values
            if k == "shift" and s == shift and m == metric and sev not in ("mean", "")
        }
        return sorted(sevs, key=float)


def cell(vals: Mapping[str, float] | Iterable[float], scale: float = 100.0, fmt: str = ".2f") -> Cell:
    """A :class:`Cell` of the mean ± std (ddof 1) of per-run values (``{run: value}`` or a list)."""
    v = list(vals.values()) if isinstance(vals, Mapping) else list(vals)
    mean, std, n = mean_std(v)
    return Cell(mean, std, n, scale, fmt)


def per_run_mean(parts: Sequence[Mapping[str, float]]) -> list[float]:
    """Per run, the mean over ``parts`` (runs missing a part are left out)."""
    if not parts:
        return []
    runs = set(parts[0]).intersection(*parts[1:])
    return [sum(p[r] for p in parts) / len(parts) for r in sorted(runs)]


def seed_note(runs: Mapping[str, Runs]) -> str:
    """The caption sentence saying over how many seeds our cells are averaged."""
    counts = sorted({len(r.runs) for r in runs.values()})
    return f"ours: mean ± std over {'/'.join(str(c) for c in counts)} seed(s)."


SET_NAMES = {
    "gaussian": "Gaussian",
    "rademacher": "Rademacher",
    "blobs": "Blobs",
    "dtd": "Textures",
    "textures": "Textures (skimage)",
    "svhn": "SVHN",
    "places365": "Places365",
    "lsun_resize": "LSUN (resize)",
    "lsun_crop": "LSUN (crop)",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "digits": "Digits (sklearn)",
    "uniform": "Uniform",
    "hein": "Noise",
    "lsun_classroom": "LSUN CR",
    "tin_crop": "TinyImageNet (crop)",
    "tin_resize": "TinyImageNet (resize)",
    "isun": "iSUN",
    "gaussian_odin": "Gaussian",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "tiny_imagenet": "Tiny ImageNet",
    "photos": "Photos (skimage)",
    "emnist": "EMNIST letters",
    "imagenet_minus": "ImageNet−",
}
"""Display names of OOD sets and datasets (data)."""


def ordered(names: Sequence[str], order: Sequence[str]) -> list[str]:
    """``names`` in the paper's ``order``; names it does not list follow in their own order."""
    return [n for n in order if n in names] + [n for n in names if n not in order]


def set_name(name: str) -> str:
    """The display name of an OOD set or dataset (its registry name when :data:`SET_NAMES` has none)."""
    return SET_NAMES.get(name, name)
