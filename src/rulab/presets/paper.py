"""What the paper presets share: a :class:`PaperStudy` (a study that names its paper-style table), small config
helpers and :func:`register_preset` for presets generated in a loop.

A :class:`PaperStudy` is a :class:`~rulab.presets.study_spec.Study` plus three fields of data that tell
:mod:`rulab.reports.papers` how to lay its results out like the paper's table: which table, which preset fills
which column, and which of the paper's reference numbers (docs/protocols/, "Reference numbers") sit beside
ours. The report reads
them from the registered study, so the study and its table are declared in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rulab.config import RunCfg
from rulab.presets.study_spec import Study
from rulab.registry import PRESETS

__all__ = ["PaperStudy", "with_eval", "with_train", "with_optim", "with_data", "register_preset"]


@dataclass(frozen=True)
class PaperStudy(Study):
    """A study laid out as one of the reproduced works' tables in the report.

    Attributes:
        paper_table: a layout registered in :data:`rulab.registry.PAPER_TABLES` (``hendrycks2019``, ``coursework``,
            ``hein2019``, ``odin``; one module each in :mod:`rulab.reports.papers`).
        paper_columns: ``((label, preset), ...)``: the paper's model columns (W1 "Normal" / "Pre-Train", W3 "Plain" /
            "CEDA" / "ACET", W2's model rows, W4's model) and the preset whose runs fill each.
        paper_reference: the key of the paper's reference numbers beside ours (``"cifar10"``, ``"pathmnist"``,
            ``"svhn"``, ``"densenet-cifar10"``, ...), or ``""`` when the setting differs from the paper (CPU scale).
    """

    paper_table: str = ""
    paper_columns: tuple[tuple[str, str], ...] = ()
    paper_reference: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.paper_table:  # that it is registered is checked by the study planner (reports sit above presets)
            raise ValueError(
                f"study '{self.name}' names no paper table; set paper_table to a layout of rulab.reports.papers"
            )
        unknown = [p for _, p in self.paper_columns if p not in self.presets]
        if unknown or not self.paper_columns:
            raise ValueError(
                f"study '{self.name}': paper columns must name presets of the study, got {unknown or 'none'}"
            )


def with_eval(cfg: RunCfg, **kw: object) -> RunCfg:
    """``cfg`` with ``eval`` fields replaced."""
    return replace(cfg, eval=replace(cfg.eval, **kw))


def with_train(cfg: RunCfg, **kw: object) -> RunCfg:
    """``cfg`` with ``train`` fields replaced."""
    return replace(cfg, train=replace(cfg.train, **kw))


def with_optim(cfg: RunCfg, **kw: object) -> RunCfg:
    """``cfg`` with ``optim`` fields replaced."""
    return replace(cfg, optim=replace(cfg.optim, **kw))


def with_data(cfg: RunCfg, **kw: object) -> RunCfg:
    """``cfg`` with ``data`` fields replaced."""
    return replace(cfg, data=replace(cfg.data, **kw))


def register_preset(name: str, make: Callable[[], RunCfg], doc: str) -> None:
    """Register the preset ``name`` in ``PRESETS``: a zero-argument factory returning ``make()``.

    For the paper modules' presets that are generated in a loop (one per data set, method or architecture). The
    factory is named after the preset (``hein2019-mnist-plain`` → ``hein2019_mnist_plain``) and ``doc`` is its
    docstring, which ``rulab presets`` shows.
    """

    def factory() -> RunCfg:
        return make()

    factory.__doc__ = doc
    factory.__name__ = name.replace("-", "_")
    PRESETS.register(name)(factory)
