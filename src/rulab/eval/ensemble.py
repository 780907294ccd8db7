"""``rulab eval --ensemble RUN RUN ...``: evaluate a deep ensemble of finished runs (Lakshminarayanan et al. 2017,
arXiv:1612.01474) with the full evaluation, and store it as a run of its own.

The members (typically one method's seeds) are rebuilt from their checkpoints (:func:`rulab.eval.checkpoint.load_run`'s
path) and averaged by :class:`rulab.models.ensemble.Ensemble`; :func:`rulab.eval.evaluate.run_evaluation` then runs
unchanged on the averaged predictive: calibration (raw and temperature-scaled), OOD detection with the members' detectors
plus mutual information and disagreement (:mod:`rulab.eval.derived`), the shift suite and the far-away tests (PGD on
the ensemble's mean confidence). Files go to ``<out>/<name>/eval/<benchmark>/`` beside an ``ensemble.json`` that
lists the members; the database gets the run ``<name>`` in group ``<preset>+ensemble``, its parent the first member.

Data: the members must have trained on the same dataset and classes. The ensemble's test set, OOD seed and training
split (where detectors fit) are the first member's. Its **validation split** (temperature scaling, detector tuning) is
the part of the first member's validation split that every member held out when that part holds at least the
benchmark's ``n_val_id`` images (members trained with the same split, e.g. ``data.val_split=tail``); otherwise
(members whose seeds drew different validation splits, as a study's seeds do) the first member's whole validation
split, most of which the other members trained on: the temperature and the tuned hyperparameters are then fitted
on images the ensemble partly knows, which can make them worse but never makes a test number optimistic, since the
test set stays unseen by every member. ``table.meta["ensemble"]["validation"]`` says which.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rulab.checkpoint import checkpoint_hash, load_model, read_meta, resolve_checkpoint
from rulab.config import RunCfg, config_hash, from_dict, to_dict
from rulab.data.splits import load_splits
from rulab.data.tensors import TensorDataset
from rulab.distributed import resolve_device
from rulab.errors import ConfigError
from rulab.eval.checkpoint import eval_config, eval_dir, shared_shift_cache
from rulab.eval.derived import derived_label, member_detectors, record_derived
from rulab.eval.evaluate import resolve_benchmark, run_evaluation
from rulab.io import atomic_write_json, atomic_write_text
from rulab.models.ensemble import Ensemble
from rulab.results.store import run_id_for
from rulab.results.table import ResultTable

__all__ = ["EnsemblePlan", "plan_ensemble", "evaluate_ensemble", "member_caches"]


@dataclass(frozen=True)
class EnsemblePlan:
    """What an ensemble evaluation will be, from the members' checkpoints alone (no model is loaded).

    Attributes:
        checkpoints: the members' ``model.safetensors``, in the order given.
        metas: their metadata (:func:`rulab.checkpoint.read_meta`).
        cfgs: their stored configs with the evaluation's overrides applied (checked).
        member_ids: the members' run ids in the results database.
        name: the ensemble's run name; label: its method group; out_dir: its directory.
        config: the config recorded for it (the first member's, ``seed`` None, plus an ``ensemble`` section).
        config_hash: the hash of the members' checkpoints and the evaluation config; run_id: ``<name>-<hash>``.
    """

    checkpoints: tuple[Path, ...]
    metas: tuple[dict[str, Any], ...]
    cfgs: tuple[RunCfg, ...]
    member_ids: tuple[str, ...]
    name: str
    label: str
    out_dir: Path
    config: dict[str, Any]
    config_hash: str
    run_id: str


def member_caches(plan: EnsemblePlan, benchmark: str) -> tuple[tuple[Path, str], ...]:
    """Each member's extraction cache as its own evaluation wrote it: ``(<run dir>/eval/cache, checkpoint hash)``, in
    member order. The ensemble's evaluation composes what the members already computed on the same data (the test
    set, the shifted test sets) from these instead of running the members again (:func:`rulab.eval.extract.extract`)."""
    hashes = plan.config["ensemble"]["checkpoint_hashes"]
    return tuple((eval_dir(c, benchmark).parent / "cache", str(h)) for c, h in zip(plan.checkpoints, hashes))


def _base(cfg: RunCfg) -> str:
    return derived_label({"preset": cfg.preset, "name": cfg.name}, "")


def plan_ensemble(
    runs: Sequence[str | os.PathLike[str]],
    overrides: Sequence[str] = (),
    name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    **explicit: Any,
) -> EnsemblePlan:
    """Check the members and name the ensemble (see :func:`evaluate_ensemble` for the arguments).

    Raises:
        ConfigError: fewer than two runs, a run listed twice, or members trained on different data.
        CheckpointError: a member without a checkpoint or a stored config.
    """
    if len(runs) < 2:
        raise ConfigError(
            f"an ensemble needs at least two runs, got {len(runs)}; list the member run directories, e.g. --ensemble runs/fmnist-plain-s0 runs/fmnist-plain-s1"
        )
    ckpts = [resolve_checkpoint(r) for r in runs]
    hashes = [checkpoint_hash(c) for c in ckpts]
    seen: dict[str, Path] = {}
    for c, h in zip(ckpts, hashes):
        if h in seen:
            raise ConfigError(
                f"{c} and {seen[h]} hold the same weights, so the ensemble would count one network twice; list each member once"
            )
        seen[h] = c
    metas = [read_meta(c) for c in ckpts]
    cfgs = [eval_config(m, overrides, **explicit) for m in metas]
    first = cfgs[0]
    for c, cfg in zip(ckpts[1:], cfgs[1:]):
        a, b = first.data, cfg.data
        if (a.dataset, tuple(a.classes), tuple(a.exclude_classes)) != (
            b.dataset,
            tuple(b.classes),
            tuple(b.exclude_classes),
        ):
            raise ConfigError(
                f"ensemble members must be trained on the same data, but {ckpts[0].parent.name} used {a.dataset} classes "
                f"{list(a.classes) or 'all'} and {c.parent.name} {b.dataset} classes {list(b.classes) or 'all'}"
            )
    stored = [from_dict(RunCfg, m["config"]) for m in metas]
    member_ids = tuple(run_id_for(s.name, config_hash(s)) for s in stored)
    bases = {_base(s) for s in stored}
    seeds = [s.seed for s in stored]
    if name is None:
        base = bases.pop() if len(bases) == 1 else "ensemble"
        tag = "-".join(f"s{s}" for s in seeds) if len(set(seeds)) == len(seeds) else f"m{len(ckpts)}"
        name = f"{base}-ens-{tag}"
    label = f"{_base(stored[0])}+ensemble" if len({_base(s) for s in stored}) == 1 else "ensemble"
    eval_dict = to_dict(first.eval)
    blob = json.dumps(
        {"members": sorted(hashes), "eval": eval_dict, "parity": first.parity}, sort_keys=True, default=str
    )
    chash = hashlib.sha256(blob.encode()).hexdigest()[:12]
    config = {
        **to_dict(first),
        "name": name,
        "seed": None,
        "ensemble": {
            "members": list(member_ids),
            "checkpoints": [str(c) for c in ckpts],
            "checkpoint_hashes": hashes,
            "seeds": seeds,
        },
    }
    where = Path(out_dir) if out_dir is not None else ckpts[0].parent.parent
    return EnsemblePlan(
        tuple(ckpts),
        tuple(metas),
        tuple(cfgs),
        member_ids,
        name,
        label,
        where / name,
        config,
        chash,
        run_id_for(name, chash),
    )


def _rows(ds: TensorDataset) -> list[bytes]:
    return [bytes(r) for r in ds.x.reshape(len(ds), -1).numpy()]


def _validation(
    plan: EnsemblePlan, val: TensorDataset | None, n_val_id: int
) -> tuple[TensorDataset | None, dict[str, Any]]:
    """The ensemble's validation split and a note on it (module docstring)."""
    if val is None or not len(val):
        return val, {"split": "none"}
    held = [set(_rows(s.val)) for s in (load_splits(c.data, c.seed) for c in plan.cfgs[1:]) if s.val is not None]
    rows = _rows(val)
    common = [i for i, r in enumerate(rows) if all(r in h for h in held)] if len(held) == len(plan.cfgs) - 1 else []
    info = {"first_member_val": len(val), "held_out_by_all": len(common)}
    if len(common) >= n_val_id:
        import torch

        return val.subset(torch.tensor(common), name=f"{val.name}:common"), {
            **info,
            "split": "held out by every member",
        }
    note = (
        f"the first member's validation split ({len(val)} images); only {len(common)} of them were held out by every "
        "member, so the temperature and the tuned hyperparameters are fitted on images most members trained on"
    )
    return val, {**info, "split": "first member's", "note": note}


def evaluate_ensemble(
    runs: Sequence[str | os.PathLike[str]],
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
    name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    study: str = "",
) -> ResultTable:
    """Evaluate the deep ensemble of finished runs and write ``<out_dir>/<name>/eval/<benchmark>/{results.csv,
    arrays.safetensors,summary.txt,meta.json}`` and ``<out_dir>/<name>/ensemble.json`` (module docstring).

    Args:
        runs: two or more run directories (or their ``model.safetensors``) trained on the same data.
        benchmark: as in :func:`rulab.eval.checkpoint.evaluate_checkpoint`.
        shift: as in :func:`rulab.eval.checkpoint.evaluate_checkpoint`.
        farconf: as in :func:`rulab.eval.checkpoint.evaluate_checkpoint`.
        protocol: as in :func:`rulab.eval.checkpoint.evaluate_checkpoint`.
        overrides: as in :func:`rulab.eval.checkpoint.evaluate_checkpoint`, applied to every member's stored config
            (the first member's evaluation settings are used).
        device: as in :func:`rulab.eval.checkpoint.evaluate_checkpoint`.
        detectors: names, or one comma-separated string; default: the first member's ``eval.detectors`` less those
            that read one linear head, plus ``mutual_info`` and ``disagreement``.
        db: the results database to store the ensemble's run in (None: none).
        cache: keep the ensemble's extracted outputs under ``<out_dir>/<name>/eval/cache`` and reuse shifted test sets.
        progress: print stage names to stderr.
        name: the ensemble's run name (default ``<preset>-ens-s0-s1-...`` from the members' preset and seeds).
        out_dir: where its directory goes (default: the directory holding the first member's run directory).
        study: the study its run row belongs to.

    Returns:
        The :class:`ResultTable`; ``meta["ensemble"]`` lists the members and the validation split used.
    """
    explicit = {
        "benchmark": benchmark,
        "shift": shift,
        "farconf": farconf,
        "detectors": detectors,
        "protocol": protocol,
    }
    plan = plan_ensemble(runs, overrides, name, out_dir, **explicit)
    cfg = plan.cfgs[0]
    bench = resolve_benchmark(cfg.eval.benchmark)
    if bench.id_dataset != cfg.data.dataset:
        raise ConfigError(
            f"benchmark '{bench.name}' tests on '{bench.id_dataset}' but the members were trained on "
            f"'{cfg.data.dataset}'; choose a benchmark for {cfg.data.dataset} (`rulab list benchmarks`)"
        )

    def stage(text: str) -> None:
        if progress:
            print(f"[rulab eval --ensemble] {text}", file=sys.stderr, flush=True)

    dev = resolve_device(device or cfg.device)
    stage(f"loading {len(plan.checkpoints)} members")
    models = [load_model(c, dev)[0] for c in plan.checkpoints]
    ensemble = Ensemble(models)
    splits = load_splits(cfg.data, cfg.seed)
    val, val_info = _validation(plan, splits.val, bench.n_val_id)
    eval_cfg, skipped = cfg.eval, {}
    if detectors is None:
        names, kwargs, skipped = member_detectors(eval_cfg.detectors, eval_cfg.detector_kwargs, linear_head=False)
        eval_cfg = replace(eval_cfg, detectors=names, detector_kwargs=kwargs)
    ens_dir = plan.out_dir
    out = ens_dir / "eval" / bench.name
    table = run_evaluation(
        ensemble,
        shift_cache=shared_shift_cache() if cache else None,
        benchmark=bench,
        eval_cfg=eval_cfg,
        train=splits.train,
        val=val,
        test=splits.test,
        seed=cfg.seed,
        cache_dir=ens_dir / "eval" / "cache" if cache else None,
        parity=cfg.parity,
        model_key=f"ens{len(models)}-{plan.config_hash}",
        on_stage=stage,
        members_from=member_caches(plan, bench.name) if cache else (),
    )
    members = [
        {"run": m["config"].get("name", ""), "run_id": i, "checkpoint": str(c)}
        for m, i, c in zip(plan.metas, plan.member_ids, plan.checkpoints)
    ]
    table.meta["skipped"] = {**table.meta.get("skipped", {}), **skipped}
    table.meta.update(
        {
            "run": plan.name,
            "eval_config": to_dict(eval_cfg),
            "ensemble": {
                "members": members,
                "validation": val_info,
                "dir": str(ens_dir),
                "run_id": plan.run_id,
                "features": "the members' features concatenated",
            },
        }
    )
    atomic_write_json(
        ens_dir / "ensemble.json",
        {
            "name": plan.name,
            "label": plan.label,
            "run_id": plan.run_id,
            "members": members,
            "config_hash": plan.config_hash,
        },
    )
    table.to_csv(out / "results.csv")
    table.save_arrays(out / "arrays.safetensors")
    atomic_write_text(out / "summary.txt", table.summary() + "\n")
    atomic_write_json(out / "meta.json", table.meta)
    meta0 = plan.metas[0]
    record_derived(
        db,
        table,
        plan.config,
        plan.config_hash,
        name=plan.name,
        label=plan.label,
        parent_run=plan.member_ids[0],
        checkpoint=str(ens_dir),
        meta=meta0,
        study=study,
    )
    return table
