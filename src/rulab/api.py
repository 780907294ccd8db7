"""The Python API: every command-line action is one call here.

>>> import rulab.api as api
>>> run_dir = api.train("fmnist-plain", overrides=["train.epochs=1"], track="tensorboard")
>>> table = api.evaluate_checkpoint(run_dir, benchmark="fmnist", shift="", farconf=False)
>>> print(table.summary())
>>> mc = api.evaluate_checkpoint("runs/fmnist-dropout", mc_dropout=20)       # MC dropout, 20 seeded passes
>>> ens = api.evaluate_ensemble(["runs/fmnist-plain-s0", "runs/fmnist-plain-s1", "runs/fmnist-plain-s2"], db="runs/results.db")

Your own model and data (any ``nn.Module`` mapping images to logits, see :mod:`rulab.eval.user`):

>>> table = api.evaluate(net, id_test=(x, y), ood={"svhn": x_svhn, "noise": "gaussian"}, mean=MEAN, std=STD)
>>> rulab.reports.evaluation_report(table, "report.html")
>>> run_dir = api.convert("weights.pt", model="torchvision:resnet18", mean=MEAN, std=STD)  # then `rulab eval run_dir`
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rulab.config import RunCfg
from rulab.errors import StoreError
from rulab.eval.checkpoint import eval_dir, evaluate_checkpoint
from rulab.eval.ensemble import evaluate_ensemble
from rulab.eval.user import evaluate_model as evaluate
from rulab.presets import load_config
from rulab.reports import build_report
from rulab.results.store import ResultStore
from rulab.study import get_study, plan_cells, run_study
from rulab.study.status import study_status as status_of_study
from rulab.tracking import train_tracked
from rulab.train.convert import convert_weights
from rulab.train.loop import fit

__all__ = [
    "train",
    "config",
    "evaluate",
    "evaluate_checkpoint",
    "evaluate_ensemble",
    "convert",
    "eval_dir",
    "study",
    "study_status",
    "results",
    "report",
]


def config(preset: str | None = None, path: str | None = None, overrides: Sequence[str] = ()) -> RunCfg:
    """Resolve and validate a run configuration (preset → YAML → overrides)."""
    return load_config(preset, path, overrides)


def convert(
    weights: str | os.PathLike[str],
    model: str,
    *,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    preset: str | None = "fmnist-plain",
    config: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn a state_dict trained outside rulab into a rulab run directory that ``rulab eval`` reads
    (:mod:`rulab.train.convert`).

    Args:
        weights: ``.pt``/``.pth`` (``torch.save(model.state_dict(), path)``) or ``.safetensors``.
        model: a registered model name (``resnet18``) or ``torchvision:<arch>`` (any torchvision classifier).
        mean: per-channel mean of the input normalisation used in training, [0, 1] pixel units (``0`` with
            ``std=1`` for a model that took [0, 1] pixels). Required unless the weights hold ``normalize.*``.
        std: per-channel standard deviation of that normalisation.
        model_kwargs: further model keyword arguments (``stem="cifar"``; for ``torchvision:<arch>``:
            ``kwargs={...}`` of the torchvision builder, ``head``, ``feature_layer``).
        preset: the preset whose config (dataset, validation split, evaluation settings) the checkpoint records.
        config: a YAML config file instead of, or on top of, the preset.
        overrides: dotted config overrides (``data.val_size=1000``, ``eval.detectors=[msp,knn]``); ``model.*``
            overrides apply to the converted model.
        name: run name (default: the weights file's stem).
        out_dir: where the run directory goes (default: the config's ``out_dir``, ``runs``).
        overwrite: replace an existing checkpoint of the same name.

    Returns:
        The run directory (holding ``model.safetensors``, ``meta.json``, ``config.yaml``).

    Raises:
        RulabError: unreadable weights, keys or shapes that do not fit the architecture, no normalisation given,
            an existing run directory.
    """
    # model.* overrides apply to the converted model, not to the preset's own
    model_over = [o for o in overrides if o.lstrip("-").startswith("model.")]
    cfg = load_config(preset, config, [o for o in overrides if o not in model_over], check=False)
    return convert_weights(
        weights,
        model,
        cfg,
        mean=mean,
        std=std,
        model_kwargs=model_kwargs,
        model_overrides=model_over,
        name=name,
        out_dir=out_dir,
        overwrite=overwrite,
    )


def train(
    cfg: RunCfg | str,
    resume: bool = False,
    overrides: Sequence[str] = (),
    progress: bool = True,
    track: str | Sequence[str] | None = None,
    allow_config_change: bool = False,
) -> Path:
    """Train a run (a :class:`RunCfg` or a preset name plus overrides); returns its run directory.

    ``track``: experiment trackers, ``"tensorboard,mlflow"`` or a list of names (:mod:`rulab.tracking`); they get
    the config, the per-epoch curves and the checkpoint. ``resume`` continues an interrupted run with the config it
    was trained with; ``allow_config_change`` lets it continue with another one, recorded in the run's
    ``config_history`` (:func:`rulab.train.loop.fit`).
    """
    if isinstance(cfg, str):
        cfg = load_config(cfg, overrides=overrides)
    if track:
        return train_tracked(cfg, track, resume=resume, progress=progress, allow_config_change=allow_config_change)
    return fit(cfg, resume=resume, progress=progress, allow_config_change=allow_config_change)


def study(
    name: Any,
    seeds: Sequence[int] | None = None,
    out_dir: str = "runs",
    db: str | Path | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    evaluate: Callable[..., Any] | bool | None = None,
    report: bool | None = None,
    launcher: Any = None,
    ensemble: bool | None = None,
    mc_dropout: int | None = None,
) -> Any:
    """Run a study (a registered name such as ``"fmnist-default"``, a study YAML file or a
    :class:`rulab.presets.study_spec.Study`).

    Trains and evaluates every (preset, seed) cell into ``<out_dir>/results.db`` (or ``db``), skipping finished
    cells, then writes ``<out_dir>/report.html``; with ``progress`` it prints the summary table, the report's
    path and the time. ``launcher``: ``"local"`` (default), ``"slurm"`` (submitit) or ``"ray"``, or a
    :class:`rulab.presets.study_spec.LauncherCfg`; ``launcher.*`` items in ``overrides`` set its resources
    (``"launcher.slurm.partition=gpu"``). ``ensemble`` also evaluates each method's seeds as a deep ensemble,
    ``mc_dropout=T`` the runs with dropout with MC dropout (defaults: the study's). Returns a
    :class:`rulab.study.StudyResult`. See :func:`rulab.study.run_study`.
    """
    return run_study(
        name,
        out_dir=out_dir,
        db=db,
        seeds=seeds,
        overrides=overrides,
        progress=progress,
        evaluate=evaluate,
        report=report,
        launcher=launcher,
        ensemble=ensemble,
        mc_dropout=mc_dropout,
    )


def study_status(
    name: Any,
    seeds: Sequence[int] | None = None,
    out_dir: str = "runs",
    db: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> str:
    """Where each cell of a study stands (queued, running, finished, failed; job ids; failed cells' log tails), as
    ``rulab study NAME --status`` prints it, for a running or finished study under any launcher. It reads the
    database, the run directories and the cluster driver's state file, and changes none of them.
    """
    st = get_study(name)
    cells = plan_cells(st, seeds, out_dir, [o for o in overrides if not o.lstrip("-").startswith("launcher.")])
    return status_of_study(st.name, cells, Path(db) if db is not None else Path(out_dir) / "results.db", out_dir)


def results(db: str | Path = "runs/results.db", frame: bool = False, **filters: Any) -> Any:
    """Stored results joined with their runs (list of dicts, or a pandas DataFrame with ``frame=True``).

    Filters are column equalities, e.g. ``results(study="fmnist-default", kind="ood", metric="auroc")``; see
    :meth:`rulab.results.store.ResultStore.results`.
    """
    if not Path(db).exists():
        raise StoreError(f"there is no results database at {db}; run a study first (`rulab study fmnist-default`)")
    with ResultStore(db, read_only=True) as store:
        return store.results(frame=frame, **filters)


def report(
    db: str | Path = "runs/results.db", study: str | None = None, out: str | Path | None = None, **kwargs: Any
) -> Path:
    """Write the single-file HTML report of a results database; returns its path (see :func:`rulab.reports.build_report`)."""
    return build_report(db, study=study, out=out, **kwargs)
