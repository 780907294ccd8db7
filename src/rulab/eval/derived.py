"""Evaluations derived from trained runs: MC dropout on one run, a deep ensemble of several (docs/uncertainty.md).

Both evaluate an averaged predictive (:class:`rulab.models.ensemble.MemberAverage`) with the ordinary evaluation
and are stored as runs of their own in the results database, next to the runs they come from:

* the **detectors** are the run's ``eval.detectors`` plus the two member scores (``mutual_info``, ``disagreement``);
  for an ensemble, which has no single linear head, the detectors that read the head's weights (``"head"`` in
  ``requires``) are left out and the omission is recorded in ``table.meta["skipped"]`` (:func:`member_detectors`);
* the **run row** carries a name and a method label of its own (``fmnist-dropout-s0+mc20`` in group
  ``fmnist-dropout+mc20``; ``fmnist-plain-ens-s0-s1-s2`` in group ``fmnist-plain+ensemble``), so that reports and
  summaries show it as a method beside the single runs, ``parent_run`` naming the run it was derived from (the first
  member of an ensemble) and the config holding the members (:func:`record_derived`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rulab.errors import ConfigError
from rulab.registry import DETECTORS, UnknownNameError
from rulab.results.store import ResultStore
from rulab.results.table import ResultTable

__all__ = ["MEMBER_DETECTORS", "member_detectors", "derived_label", "record_derived"]

MEMBER_DETECTORS: tuple[str, ...] = ("mutual_info", "disagreement")
"""The scores an averaged predictive adds to the run's detectors (the predictive entropy and the maximum mean
probability are ``entropy`` and ``msp`` on its averaged logits, already among the defaults)."""

_SEED_SUFFIX = re.compile(r"-s\d+$")


def member_detectors(
    names: Sequence[str], detector_kwargs: Mapping[str, Mapping[str, Any]], linear_head: bool
) -> tuple[tuple[str, ...], dict[str, Mapping[str, Any]], dict[str, str]]:
    """The detectors an averaged predictive is evaluated with, from a run's ``eval.detectors``.

    Args:
        names: the run's detectors.
        detector_kwargs: their constructor arguments (``eval.detector_kwargs``).
        linear_head: whether the averaged model has one linear head (MC dropout) or not (an ensemble).

    Returns:
        ``(names, kwargs, skipped)``: ``names`` without the head-reading detectors when there is no linear head, plus
        :data:`MEMBER_DETECTORS`; the kwargs of the detectors kept; ``{"detector/<name>": why}`` for those left out.
    """
    kept, skipped = [], {}
    for n in names:
        try:
            reads = DETECTORS.get(n).requires
        except UnknownNameError as err:
            raise ConfigError(str(err)) from None
        if "head" in reads and not linear_head:
            skipped[f"detector/{n}"] = "reads one linear head's weights; an ensemble has one head per member"
        else:
            kept.append(n)
    kept += [n for n in MEMBER_DETECTORS if n not in kept]
    return tuple(kept), {k: v for k, v in detector_kwargs.items() if k in kept}, skipped


def derived_label(cfg: Mapping[str, Any], suffix: str) -> str:
    """The method group of a derived evaluation: the run's preset (or its name less ``-s<seed>``) plus ``suffix``
    (``"+mc20"``, ``"+ensemble"``)."""
    base = str(cfg.get("preset") or "") or _SEED_SUFFIX.sub("", str(cfg.get("name", "")))
    return f"{base}{suffix}"


def record_derived(
    db: str | os.PathLike[str] | None,
    table: ResultTable,
    config: Mapping[str, Any],
    config_hash: str,
    *,
    name: str,
    label: str,
    parent_run: str,
    checkpoint: str,
    meta: Mapping[str, Any] | None = None,
    study: str = "",
) -> str | None:
    """Store a derived evaluation as a run of its own (module docstring); returns its run id (None without ``db``).

    Args:
        db: the results database (None: nothing is stored).
        table: the evaluation's rows.
        config: the config dict recorded for the run (the run's, with ``eval.mc_dropout`` or an ``ensemble`` section).
        config_hash: the hash that, with ``name``, makes the run id (:func:`rulab.results.store.run_id_for`).
        name: the run's name; label: its method group (the ``preset`` column); parent_run: the run it derives from.
        checkpoint: the checkpoint (MC dropout) or the ensemble's directory (an ensemble): where reports find the
            evaluation's arrays.
        meta: provenance (``rulab_version``, ``torch_version``, ``git_commit``, ``device``).
        study: the study the run belongs to.
    """
    if db is None:
        return None
    d = {**dict(config), "name": name, "preset": label, "config_hash": config_hash}
    store = ResultStore(db)
    try:
        run_id = store.start_run(
            d, name=name, study=study, parent_run=parent_run, checkpoint=checkpoint, meta=meta, status="running"
        )
        store.write_results(run_id, table)
        store.finish_run(run_id, "finished", checkpoint=checkpoint, meta=meta)
    finally:
        store.close()
    return run_id
