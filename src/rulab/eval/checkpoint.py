"""``rulab eval <run_dir>``: evaluate a trained checkpoint on a benchmark and write its result files.

:func:`load_run` rebuilds everything an evaluation of a run needs from the checkpoint alone: the stored config (with
overrides, checked), the benchmark, the model and the run's own data splits (same seed, so the validation split is
the run's held-out split). :func:`evaluate_checkpoint` runs :func:`rulab.eval.evaluate.run_evaluation` on it and writes
``<run_dir>/eval/<benchmark>/{results.csv,arrays.safetensors,summary.txt,meta.json}``; the ODIN paper table
(:func:`rulab.presets.odin.evaluate_odin_table`) loads its runs with :func:`load_run` too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rulab.checkpoint import checkpoint_hash, eval_name, load_model, read_meta, resolve_checkpoint
from rulab.config import RunCfg, apply_overrides, config_hash, from_dict, to_dict
from rulab.data.fetch import dataset_root
from rulab.data.splits import Splits, load_splits
from rulab.distributed import resolve_device
from rulab.errors import CheckpointError, ConfigError
from rulab.eval.benchmarks import Benchmark
from rulab.eval.derived import derived_label, member_detectors, record_derived
from rulab.eval.evaluate import resolve_benchmark, run_evaluation
from rulab.eval.extract import linear_head
from rulab.eval.predict import model_device
from rulab.eval.shift import ShiftCache
from rulab.eval.validate import validate_run
from rulab.io import atomic_write_json, atomic_write_text, ensure_writable_dir, remove_stale_temps
from rulab.models.mc_dropout import MCDropout
from rulab.results.store import ResultStore, run_id_for
from rulab.results.table import ResultTable

__all__ = ["LoadedRun", "load_run", "evaluate_checkpoint", "eval_dir", "eval_name", "eval_config", "shared_shift_cache"]


def eval_dir(checkpoint: str | os.PathLike[str], benchmark: str, mc_dropout: int = 0) -> Path:
    """``<run_dir>/eval/<benchmark>`` (``<benchmark>+mc<T>`` with MC dropout): where :func:`evaluate_checkpoint`
    writes its files."""
    p = Path(checkpoint)
    run_dir = p if p.is_dir() else p.parent
    return run_dir / "eval" / eval_name(benchmark, mc_dropout)


def eval_config(meta: dict[str, Any], overrides: Sequence[str], **explicit: Any) -> RunCfg:
    """The run's stored config with ``overrides`` (dotted keys of the whole config) and the explicit eval arguments."""
    stored = meta.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(
            "the checkpoint has no stored run config, so its data splits cannot be rebuilt; "
            "evaluate it with rulab.eval.evaluate.run_evaluation(model, ...)"
        )
    try:
        cfg = from_dict(RunCfg, stored)
    except ConfigError as err:
        raise CheckpointError(
            f"the checkpoint's stored config no longer loads ({err}); "
            "evaluate it with rulab.eval.evaluate.run_evaluation(model, ...)"
        ) from None
    items = [o if "." in o.split("=", 1)[0].lstrip("-") else f"eval.{o.lstrip('-')}" for o in overrides]
    cfg = apply_overrides(cfg, items)
    ev = cfg.eval
    keys = {o.split("=", 1)[0].lstrip("-").strip() for o in items}
    if "eval.detectors" in keys and "eval.detector_kwargs" not in keys:
        # a new detector list drops the stored arguments of the detectors it leaves out (a study's ODIN grid), as
        # --detectors does; arguments the overrides set themselves are kept, so a typo there is still refused
        named = {k.split(".")[2] for k in keys if k.startswith("eval.detector_kwargs.") and k.count(".") >= 2}
        ev = replace(
            ev, detector_kwargs={k: v for k, v in ev.detector_kwargs.items() if k in ev.detectors or k in named}
        )
    if explicit.get("detectors") is not None:
        det = explicit["detectors"]
        det = tuple(d.strip() for d in det.split(",") if d.strip()) if isinstance(det, str) else tuple(det)
        # the stored per-detector arguments of the detectors still run (a study's ODIN grid) are kept, the rest dropped
        ev = replace(ev, detectors=det, detector_kwargs={k: v for k, v in ev.detector_kwargs.items() if k in det})
    for k in ("benchmark", "shift", "farconf", "protocol", "mc_dropout"):
        if explicit.get(k) is not None:
            ev = replace(ev, **{k: explicit[k]})
    cfg = replace(cfg, eval=ev)
    # only the evaluation part needs checking now; e.g. a fine-tuned run's parent checkpoint may have moved
    validate_run(replace(cfg, train=replace(cfg.train, init_from="", reset_head=False)))
    return cfg


@dataclass
class LoadedRun:
    """A trained run, rebuilt for evaluation by :func:`load_run`.

    Attributes:
        checkpoint: the run's ``model.safetensors``.
        meta: its metadata (:func:`rulab.checkpoint.read_meta`).
        cfg: the stored run config with the evaluation's overrides applied, checked.
        benchmark: the benchmark ``cfg.eval.benchmark`` names; its ID dataset is the one the run trained on.
        model: the classifier on the resolved device.
        splits: the run's train / validation / test splits, rebuilt with its seed.
    """

    checkpoint: Path
    meta: dict[str, Any]
    cfg: RunCfg
    benchmark: Benchmark
    model: nn.Module
    splits: Splits


def load_run(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    device: str | None = None,
    **explicit: Any,
) -> LoadedRun:
    """Checkpoint → stored config (+ overrides, checked) → benchmark → model → data splits.

    Args:
        path: a run directory or its ``model.safetensors``.
        overrides: config overrides, ``"eval.n_ood=500"`` (a bare ``"n_ood=500"`` means ``eval.n_ood``).
        device: ``auto``/``cpu``/``cuda``/``mps`` (default: the run's device setting).
        **explicit: ``benchmark``, ``shift``, ``farconf``, ``detectors``, ``protocol``, ``mc_dropout`` replacing the
            run's ``eval.*`` setting where not ``None`` (see :func:`evaluate_checkpoint`).

    Raises:
        CheckpointError: no checkpoint, or one without a loadable stored config.
        ConfigError: a bad override, or a benchmark for another dataset than the run's.
    """
    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    cfg = eval_config(meta, overrides, **explicit)
    bench = resolve_benchmark(cfg.eval.benchmark)
    if bench.id_dataset != cfg.data.dataset:
        raise ConfigError(
            f"benchmark '{bench.name}' tests on '{bench.id_dataset}' but the checkpoint was trained on "
            f"'{cfg.data.dataset}'; choose a benchmark for {cfg.data.dataset} (`rulab list benchmarks`)"
        )
    model, _ = load_model(ckpt, resolve_device(device or cfg.device))
    splits = load_splits(cfg.data, cfg.seed)
    return LoadedRun(ckpt, meta, cfg, bench, model, splits)


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    benchmark: str | None = None,
    shift: str | None = None,
    farconf: bool | None = None,
    detectors: str | Sequence[str] | None = None,
    protocol: str | None = None,
    overrides: Sequence[str] = (),
    db: str | os.PathLike[str] | None = None,
    device: str | None = None,
    cache: bool = True,
    progress: bool = True,
    mc_dropout: int | None = None,
    study: str = "",
) -> ResultTable:
    """Evaluate a trained checkpoint on a benchmark and write ``<run_dir>/eval/<benchmark>/{results.csv,
    arrays.safetensors,summary.txt,meta.json}`` atomically.

    The model is rebuilt from the checkpoint alone; the data splits are rebuilt from the config stored in it with the
    same seed, so the validation split (temperature scaling, detector tuning) is the run's own held-out split.

    With ``mc_dropout=T`` (or ``eval.mc_dropout`` in the run's config) the model evaluated is its MC-dropout
    predictive over T seeded passes (:class:`rulab.models.mc_dropout.MCDropout`, masks seeded by the run's seed):
    the files go to ``<run_dir>/eval/<benchmark>+mc<T>``, the detectors gain ``mutual_info`` and ``disagreement``
    (unless ``detectors`` names them explicitly), and the database gets a run of its own, ``<name>+mc<T>`` with the
    checkpoint's run as its parent (:mod:`rulab.eval.derived`).

    Args:
        path: a run directory or its ``model.safetensors``.
        benchmark: BENCHMARKS entry (default: the run's ``eval.benchmark``).
        shift: shift suite (``""`` for none; default: the run's ``eval.shift``).
        farconf: run the far-away / worst-case tests (default: the run's ``eval.farconf``).
        detectors: names, or one comma-separated string (default: the run's ``eval.detectors``).
        protocol: PROTOCOLS entry overriding the benchmark's.
        overrides: config overrides, ``"eval.n_ood=500"`` (a bare ``"n_ood=500"`` means ``eval.n_ood``).
        db: the results database to record the rows in (hook: see ``_record``).
        device: ``auto``/``cpu``/``cuda``/``mps`` (default: the run's device setting).
        cache: keep extracted logits/features under ``<run_dir>/eval/cache`` so re-evaluation skips the network, and
            keep shifted test sets under ``$RULAB_DATA/shift-cache`` (and in memory for this process) so that every
            checkpoint of a study reuses them.
        progress: print stage names to stderr.
        mc_dropout: T > 0 evaluates MC dropout with T passes; 0 the network as trained (default: the run's
            ``eval.mc_dropout``).
        study: the study an MC-dropout evaluation's run row belongs to (``rulab study``).

    Returns:
        The :class:`ResultTable`.
    """
    run = load_run(
        path,
        overrides,
        device,
        benchmark=benchmark,
        shift=shift,
        farconf=farconf,
        detectors=detectors,
        protocol=protocol,
        mc_dropout=mc_dropout,
    )
    ckpt, cfg, splits = run.checkpoint, run.cfg, run.splits
    passes = cfg.eval.mc_dropout
    out_dir = eval_dir(ckpt, run.benchmark.name, passes)
    # every output is checked before the work: a bad database or an unwritable directory fails now, not after it
    ensure_writable_dir(out_dir)
    remove_stale_temps(out_dir, older_than=_STALE_TEMP_S)
    store = ResultStore(db) if db is not None else None

    def stage(text: str) -> None:
        if progress:
            print(f"[rulab eval] {text}", file=sys.stderr, flush=True)

    model, eval_cfg, key, skipped = run.model, cfg.eval, checkpoint_hash(ckpt), {}
    if passes:
        model = MCDropout(run.model, passes, seed=cfg.seed)
        with torch.no_grad():  # one call on two images tells whether dropout acts inside the features (recorded below)
            model.eval()(splits.test.x[:2].to(model_device(run.model)).float() / 255)
        key = f"{key}+mc{passes}s{cfg.seed}"
        if detectors is None:  # the run's detectors plus the member scores; explicit detectors are taken as given
            names, kwargs, skipped = member_detectors(
                eval_cfg.detectors, eval_cfg.detector_kwargs, linear_head(model) is not None
            )
            eval_cfg = replace(eval_cfg, detectors=names, detector_kwargs=kwargs)
    table = run_evaluation(
        model,
        shift_cache=shared_shift_cache() if cache else None,
        benchmark=run.benchmark,
        eval_cfg=eval_cfg,
        train=splits.train,
        val=splits.val,
        test=splits.test,
        seed=cfg.seed,
        cache_dir=out_dir.parent / "cache" if cache else None,
        parity=cfg.parity,
        model_key=key,
        on_stage=stage,
    )
    kept = run.meta.get("kept")
    if isinstance(kept, dict) and kept.get("epoch"):  # train.keep_best: which epoch's weights these results are of
        table.add(
            "id",
            "checkpoint_epoch",
            float(kept["epoch"]),
            dataset=run.benchmark.id_dataset,
            n=int(kept.get("epochs", 0)),
            extra={"selected_by": kept.get("metric", ""), "value": kept.get("value")},
        )
        table.meta["kept"] = kept
    table.meta.update({"checkpoint": str(ckpt), "run": cfg.name, "eval_config": to_dict(eval_cfg)})
    if passes:
        table.meta["skipped"] = {**table.meta.get("skipped", {}), **skipped}
        table.meta["mc_dropout"] = {
            "passes": passes,
            "seed": cfg.seed,
            "layers": list(model.layers),
            "deterministic_features": model.deterministic_features,
        }
    table.to_csv(out_dir / "results.csv")
    table.save_arrays(out_dir / "arrays.safetensors")
    atomic_write_text(out_dir / "summary.txt", table.summary() + "\n")
    atomic_write_json(out_dir / "meta.json", table.meta)
    if store is not None:
        with store:
            if passes:
                _record_mc(store, table, run.meta, ckpt, passes, study)
            else:
                _record(store, table, run.meta, ckpt)
    return table


_STALE_TEMP_S = 3600.0
"""Temporary files in an evaluation's directory older than this were left by a killed process (a write takes
seconds); younger ones may belong to another evaluation of the same run that is writing now."""


_SHIFT_CACHE: ShiftCache | None = None


def shared_shift_cache() -> ShiftCache:
    """The process-wide cache of shifted test sets (memory + ``$RULAB_DATA/shift-cache`` on disk)."""
    global _SHIFT_CACHE
    if _SHIFT_CACHE is None:
        _SHIFT_CACHE = ShiftCache(dataset_root() / "shift-cache", memory=True)
    return _SHIFT_CACHE


def _record_mc(
    store: ResultStore, table: ResultTable, meta: dict[str, Any], ckpt: Path, passes: int, study: str
) -> None:
    """Store an MC-dropout evaluation as the run ``<name>+mc<T>`` (group ``<preset>+mc<T>``) whose parent is the
    checkpoint's run (:func:`rulab.eval.derived.record_derived`)."""
    base = from_dict(RunCfg, meta["config"])
    mc = replace(base, eval=replace(base.eval, mc_dropout=passes))
    config = to_dict(mc)
    record_derived(
        store.path,
        table,
        config,
        config_hash(mc),
        name=f"{base.name}+mc{passes}",
        label=derived_label(config, f"+mc{passes}"),
        parent_run=run_id_for(base.name, config_hash(base)),
        checkpoint=str(ckpt),
        meta=meta,
        study=study,
    )


def _record(store: ResultStore, table: ResultTable, meta: dict[str, Any], ckpt: Path) -> None:
    """Store an evaluation in the SQLite results store (docs/results-store.md) under the checkpoint's run.

    The run row is keyed like a study's (``<name>-<config hash>``), so evaluating a study's run again updates its rows
    instead of duplicating them.
    """
    cfg = from_dict(RunCfg, meta["config"])
    run_id = store.start_run(cfg, checkpoint=str(ckpt), meta=meta, status="running")
    store.write_curves(run_id, meta.get("history", []))
    store.write_results(run_id, table)
    store.finish_run(run_id, "finished", checkpoint=str(ckpt), meta=meta)
