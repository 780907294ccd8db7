"""The Python API: every command-line action is one call here.

>>> import rulab.api as api
>>> run_dir = api.train("fmnist-plain", overrides=["train.epochs=1"], track="tensorboard")
>>> table = api.evaluate_checkpoint(run_dir, benchmark="fmnist", shift="", farconf=False)
>>> print(table.summary())

Your own model and data (any ``nn.Module`` mapping images to logits, see :mod:`rulab.eval.user`):

>>> table = api.evaluate(net, id_test=(x, y), ood={"svhn": x_svhn, "noise": "gaussian"}, mean=MEAN, std=STD)
>>> table.report("report.html")
>>> run_dir = api.convert("weights.pt", model="torchvision:resnet18", mean=MEAN, std=STD)  # then `rulab eval run_dir`
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rulab.config import RunCfg, load_config
from rulab.results.table import ResultTable
from rulab.eval.user import evaluate_model as evaluate
from rulab.train.convert import convert

__all__ = ["train", "config", "evaluate", "evaluate_checkpoint", "convert", "eval_dir", "study", "results", "report"]


def config(preset: str | None = None, path: str | None = None, overrides: Sequence[str] = ()) -> RunCfg:
    """Resolve and validate a run configuration (preset → YAML → overrides)."""
    return load_config(preset, path, overrides)


def train(
    cfg: RunCfg | str, resume: bool = False, overrides: Sequence[str] = (), progress: bool = True, track: str | Sequence[str] | None = None,
) -> Path:
    """Train a run (a :class:`RunCfg` or a preset name plus overrides); returns its run directory.

    ``track``: experiment trackers, ``"tensorboard,mlflow"`` or a list of names (:mod:`rulab.tracking`); they get
    the config, the per-epoch curves and the checkpoint.
    """
    from rulab.train.loop import fit

    if isinstance(cfg, str):
        cfg = load_config(cfg, overrides=overrides)
    if track:
        from rulab.tracking import train_tracked

        return train_tracked(cfg, track, resume=resume, progress=progress)
    return fit(cfg, resume=resume, progress=progress)


def eval_dir(checkpoint: str | os.PathLike[str], benchmark: str) -> Path:
    """``<run_dir>/eval/<benchmark>``: where :func:`evaluate_checkpoint` writes its files."""
    p = Path(checkpoint)
    run_dir = p if p.is_dir() else p.parent
    return run_dir / "eval" / benchmark


def _eval_config(meta: dict[str, Any], overrides: Sequence[str], **explicit: Any) -> RunCfg:
    """The run's stored config with ``overrides`` (dotted keys of the whole config) and the explicit eval arguments."""
    from rulab.config import apply_overrides, from_dict, validate
    from rulab.errors import CheckpointError, ConfigError

    stored = meta.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError("the checkpoint has no stored run config, so its data splits cannot be rebuilt; evaluate it with rulab.eval.evaluate.evaluate(model, ...)")
    try:
        cfg = from_dict(RunCfg, stored)
    except ConfigError as err:
        raise CheckpointError(f"the checkpoint's stored config no longer loads ({err}); evaluate it with rulab.eval.evaluate.evaluate(model, ...)") from None
    cfg = apply_overrides(cfg, [o if "." in o.split("=", 1)[0].lstrip("-") else f"eval.{o.lstrip('-')}" for o in overrides])
    ev = cfg.eval
    if explicit.get("detectors") is not None:
        det = explicit["detectors"]
        det = tuple(d.strip() for d in det.split(",") if d.strip()) if isinstance(det, str) else tuple(det)
        # the stored per-detector arguments of the detectors still run (a study's ODIN grid) are kept, the rest dropped
        ev = replace(ev, detectors=det, detector_kwargs={k: v for k, v in ev.detector_kwargs.items() if k in det})
    for k in ("benchmark", "shift", "farconf", "protocol"):
        if explicit.get(k) is not None:
            ev = replace(ev, **{k: explicit[k]})
    cfg = replace(cfg, eval=ev)
    # only the evaluation part needs checking now; e.g. a fine-tuned run's parent checkpoint may have moved
    validate(replace(cfg, train=replace(cfg.train, init_from="", reset_head=False)))
    return cfg


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
) -> ResultTable:
    """Evaluate a trained checkpoint on a benchmark and write ``<run_dir>/eval/<benchmark>/{results.csv,
    arrays.safetensors,summary.txt,meta.json}`` atomically.

    The model is rebuilt from the checkpoint alone; the data splits are rebuilt from the config stored in it with the
    same seed, so the validation split (temperature scaling, detector tuning) is the run's own held-out split.

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

    Returns:
        The :class:`ResultTable`.
    """
    import sys

    from rulab.config import to_dict
    from rulab.data.splits import load_splits
    from rulab.errors import ConfigError
    from rulab.eval.evaluate import evaluate, resolve_benchmark
    from rulab.io import atomic_write_json, atomic_write_text
    from rulab.checkpoint import checkpoint_hash, load_model, read_meta, resolve_checkpoint
    from rulab.distributed import resolve_device

    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    cfg = _eval_config(meta, overrides, benchmark=benchmark, shift=shift, farconf=farconf, detectors=detectors, protocol=protocol)
    bench = resolve_benchmark(cfg.eval.benchmark)
    if bench.id_dataset != cfg.data.dataset:
        raise ConfigError(f"benchmark '{bench.name}' tests on '{bench.id_dataset}' but the checkpoint was trained on '{cfg.data.dataset}'; choose a benchmark for {cfg.data.dataset} (`rulab list benchmarks`)")
    dev = resolve_device(device or cfg.device)
    model, _ = load_model(ckpt, dev)
    splits = load_splits(cfg.data, cfg.seed)
    out_dir = eval_dir(ckpt, bench.name)

    def stage(text: str) -> None:
        if progress:
            print(f"[rulab eval] {text}", file=sys.stderr, flush=True)

    table = evaluate(
        model,
        shift_cache=_shift_cache() if cache else None,
        benchmark=bench,
        eval_cfg=cfg.eval,
        train=splits.train,
        val=splits.val,
        test=splits.test,
        seed=cfg.seed,
        cache_dir=out_dir.parent / "cache" if cache else None,
        parity=cfg.parity,
        model_key=checkpoint_hash(ckpt),
        on_stage=stage,
    )
    table.meta.update({"checkpoint": str(ckpt), "run": cfg.name, "eval_config": to_dict(cfg.eval)})
    table.to_csv(out_dir / "results.csv")
    table.save_arrays(out_dir / "arrays.safetensors")
    atomic_write_text(out_dir / "summary.txt", table.summary() + "\n")
    atomic_write_json(out_dir / "meta.json", table.meta)
    _record(db, table, meta, ckpt)
    return table


_SHIFT_CACHE: Any = None


def _shift_cache() -> Any:
    """The process-wide cache of shifted test sets (memory + ``$RULAB_DATA/shift-cache`` on disk)."""
    global _SHIFT_CACHE
    if _SHIFT_CACHE is None:
        from rulab.data.fetch import dataset_root
        from rulab.eval.shift import ShiftCache

        _SHIFT_CACHE = ShiftCache(dataset_root() / "shift-cache", memory=True)
    return _SHIFT_CACHE


def _record(db: str | os.PathLike[str] | None, table: ResultTable, meta: dict[str, Any], ckpt: Path) -> None:
    """Store an evaluation in the SQLite results store (docs/results-store.md) under the checkpoint's run.

    The run row is keyed like a study's (``<name>-<config hash>``), so evaluating a study's run again updates its rows
    instead of duplicating them.
    """
    if db is None:
        return
    from rulab.config import RunCfg, from_dict
    from rulab.results.store import ResultStore

    cfg = from_dict(RunCfg, meta["config"])
    store = ResultStore(db)
    run_id = store.start_run(cfg, checkpoint=str(ckpt), meta=meta, status="running")
    store.write_curves(run_id, meta.get("history", []))
    store.write_results(run_id, table)
    store.finish_run(run_id, "finished", checkpoint=str(ckpt), meta=meta)


def study(
    name: Any,
    seeds: Sequence[int] | None = None,
    out_dir: str = "runs",
    db: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    evaluate: Callable[..., Any] | bool | None = None,
    report: bool | None = None,
) -> Any:
    """Run a study (a registered name such as ``"fmnist-default"`` or a :class:`rulab.presets.study_spec.Study`).

    Trains and evaluates every (preset, seed) cell into ``<out_dir>/results.db`` (or ``db``), skipping finished
    cells, then writes ``<out_dir>/report.html``; with ``progress`` it prints the summary table, the report's
    path and the time. Returns a :class:`rulab.study.StudyResult`. See :func:`rulab.study.run_study`.
    """
    from rulab.study import run_study

    return run_study(name, out_dir=out_dir, db=db, seeds=seeds, overrides=overrides, progress=progress, evaluate=evaluate, report=report)


def results(db: str | Path = "runs/results.db", frame: bool = False, **filters: Any) -> Any:
    """Stored results joined with their runs (list of dicts, or a pandas DataFrame with ``frame=True``).

    Filters are column equalities, e.g. ``results(study="fmnist-default", kind="ood", metric="auroc")``; see
    :meth:`rulab.results.store.ResultStore.results`.
    """
    from rulab.errors import StoreError
    from rulab.results.store import ResultStore

    if not Path(db).exists():
        raise StoreError(f"there is no results database at {db}; run a study first (`rulab study fmnist-default`)")
    with ResultStore(db) as store:
        return store.results(frame=frame, **filters)


def report(db: str | Path = "runs/results.db", study: str | None = None, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Write the single-file HTML report of a results database; returns its path (see :func:`rulab.reports.build_report`)."""
    from rulab.reports import build_report

    return build_report(db, study=study, out=out, **kwargs)
