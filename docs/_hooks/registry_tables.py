"""An mkdocs hook: the documentation's lists of detectors and metrics, generated from rulab's registries at build time.

A page holds a marker comment where a generated block goes; the block is built from the registry, so a new detector
or metric appears in the documentation without an edit to any page:

* ``<!-- rulab:detector-table -->``: one row per registered detector: name, score formula, what it fits on, its tuning
  grid, what it reads and its paper (the class attributes of :class:`rulab.detectors.base.Detector`);
* ``<!-- rulab:detector-hparams -->``: one row per registered detector: its hyperparameters with their defaults (the
  ``__init__`` arguments) and the grid each tuned one is searched over on validation data (:attr:`Detector.grid`);
* ``<!-- rulab:detector-reference -->``: one API-reference entry (``::: module``) per registered detector's module;
* ``<!-- rulab:metric-table -->``: one row per metric declared in :mod:`rulab.metrics.catalog`.

The hook imports rulab from the ``src`` directory beside ``mkdocs.yml`` (the checkout being documented, not an
installed copy). The source files are not changed.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def detector_table() -> str:
    """The Markdown table of every registered detector."""
    from rulab.registry import DETECTORS

    lines = [
        "| name | score `s(x)` (`z`: logits, `h`: penultimate features, `p = softmax(z)`) "
        "| fits on | tunes | reads | paper |",
        "|---|---|---|---|---|---|",
    ]
    for name in DETECTORS:
        cls = DETECTORS.get(name)
        tunes = ", ".join(f"`{k}`" for k in cls.grid) or "–"
        reads = ", ".join(sorted(cls.requires))
        fits = _cell(cls.fits_on) or "–"
        lines.append(f"| `{name}` | {_cell(cls.formula)} | {fits} | {tunes} | {reads} | {_cell(cls.paper)} |")
    return "\n".join(lines) + "\n"


def _values(values: Any) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def detector_hparams() -> str:
    """The Markdown table of every registered detector's hyperparameters (defaults) and tuning grid."""
    from rulab.registry import DETECTORS

    lines = ["| name | hyperparameters (default) | tuned on validation data over |", "|---|---|---|"]
    for name in DETECTORS:
        cls = DETECTORS.get(name)
        params = [
            p
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        hp = ", ".join(f"`{p.name}={p.default!r}`" for p in params if p.default is not inspect.Parameter.empty) or "–"
        grid = "; ".join(f"`{k}` ∈ {{{_values(v)}}}" for k, v in cls.grid.items()) or "–"
        lines.append(f"| `{name}` | {_cell(hp)} | {_cell(grid)} |")
    return "\n".join(lines) + "\n"


def detector_reference() -> str:
    """One ``::: module`` entry per module that registers a built-in detector, in name order."""
    from rulab.registry import DETECTORS

    modules = sorted(
        {DETECTORS.get(name).__module__ for name in DETECTORS if DETECTORS.get(name).__module__.startswith("rulab.")}
    )
    return "\n\n".join(f"::: {m}" for m in modules) + "\n"


def metric_table() -> str:
    """The Markdown table of every declared metric, in declaration order."""
    from rulab.metrics.catalog import metrics

    better = {True: "higher", False: "lower", None: "–"}
    lines = ["| metric | label | group | shown as | better | what it is |", "|---|---|---|---|---|---|"]
    for m in metrics():
        unit = "percent" if m.percent else "as stored"
        lines.append(
            f"| `{m.name}` | {_cell(m.label)} | {m.group} | {unit} | {better[m.higher_is_better]} "
            f"| {_cell(m.caption)} |"
        )
    return "\n".join(lines) + "\n"


MARKERS: dict[str, Callable[[], str]] = {
    "<!-- rulab:detector-table -->": detector_table,
    "<!-- rulab:detector-hparams -->": detector_hparams,
    "<!-- rulab:detector-reference -->": detector_reference,
    "<!-- rulab:metric-table -->": metric_table,
}


def on_config(config: Any) -> Any:
    """Put the checkout's ``src`` first on the import path, so the tables describe the code being documented."""
    src = str(Path(config.config_file_path).resolve().parent / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_page_markdown(markdown: str, page: Any = None, config: Any = None, files: Any = None) -> str:
    """Replace every marker in a page by its generated block."""
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
