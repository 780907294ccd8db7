"""Experiment tracking: TensorBoard event files and MLflow runs (``pip install 'rulab[tracking]'``).

A tracker is an object with ``log_metrics(step, metrics)``, the hook the training loop calls once per epoch
(:func:`rulab.train.loop.fit`, ``loggers=``), plus ``log_params``, ``log_table`` (an evaluation's
:class:`~rulab.results.table.ResultTable`), ``log_artifact`` and ``close``. Trackers are registered in
:data:`TRACKERS` and chosen by name: ``rulab train fmnist-plain --track tensorboard,mlflow``,
``rulab eval runs/x --track mlflow`` or ``rulab.api.train(cfg, track=["tensorboard"])``.

=================  ===================================================================================================
``tensorboard``    ``<run_dir>/tensorboard/`` event files: training curves (``train/loss``, ``val/acc``, ``lr``,
                   ...), the config as text, every evaluation number as a scalar (``eval/<kind>/<dataset>/...``) and
                   figures (reliability diagram, ROC curves) as images. View: ``tensorboard --logdir runs``.
``mlflow``         an MLflow run in experiment ``rulab`` (or ``$MLFLOW_EXPERIMENT_NAME``): the flattened config as
                   params, the curves and every evaluation number as metrics, ``results.csv``, ``summary.txt``,
                   ``report.html`` and the checkpoint as artifacts. The tracking store is ``$MLFLOW_TRACKING_URI``
                   or, by default, the local SQLite store ``./mlruns/mlflow.db`` with artifacts under
                   ``./mlruns/artifacts`` (MLflow 3 keeps plain-file stores in maintenance mode). View:
                   ``mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db``. The run id is kept in
                   ``<run_dir>/tracking.json`` so that a later ``rulab eval --track mlflow`` logs into the same run.
=================  ===================================================================================================

Metric names are built from the result table's key columns: ``<kind>/<dataset>/<shift>/<severity>/<detector>/<metric>``
with empty columns left out (``ood/digits/msp/auroc``, ``id/ts/ece``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rulab.config import to_dict
from rulab.errors import ConfigError, RulabError
from rulab.io import atomic_write_json
from rulab.registry import Registry
from rulab.reports import evaluation_report, plots

__all__ = [
    "TRACKERS",
    "Tracker",
    "TensorBoardTracker",
    "MLflowTracker",
    "make_trackers",
    "log_results",
    "train_tracked",
    "row_tag",
    "flatten_params",
]

TRACKERS: Registry[Any] = Registry("tracker")
"""Experiment trackers by name (``tensorboard``, ``mlflow``); each factory takes ``run_dir`` and ``run_name``."""

_STATE_FILE = "tracking.json"


def _missing(what: str) -> RulabError:
    return RulabError(f"the {what} tracker needs the {what} package; install it with: pip install 'rulab[tracking]'")


def row_tag(row: Any) -> str:
    """``<kind>/<dataset>/<shift>/<severity>/<detector>/<metric>`` of a result row, empty columns left out."""
    parts = [row.kind, row.dataset, row.shift, row.severity, row.detector, row.metric]
    return "/".join(str(p) for p in parts if p not in ("", None))


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dicts → ``{"optim.lr": "0.1", ...}`` (lists and values as JSON text)."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_params(v, key + "."))
        else:
            out[key] = v if isinstance(v, str) else json.dumps(v, default=str)
    return out


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def _curve_tag(key: str) -> str:
    """``train_loss`` → ``train/loss``, ``val_acc`` → ``val/acc``; other keys unchanged."""
    for split in ("train_", "val_"):
        if key.startswith(split):
            return f"{split[:-1]}/{key[len(split) :]}"
    return key


class Tracker:
    """Base class: every method is a no-op; subclasses implement what their backend stores."""

    name = "tracker"

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record the run's configuration (nested dicts are flattened with dots)."""

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record numeric ``metrics`` at ``step`` (the training loop calls this once per epoch)."""

    def log_table(self, table: Any, step: int = 0, figures: bool = True) -> None:
        """Record every number of an evaluation's ResultTable (and, with ``figures``, its plots)."""

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Keep a file (checkpoint, report) with the run."""

    def close(self, status: str = "FINISHED") -> None:
        """Flush and end the run (``status``: ``FINISHED`` or ``FAILED``)."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close("FAILED" if exc_type is not None else "FINISHED")


def _figures(table: Any) -> dict[str, Any]:
    """``{tag: HWC uint8 array}`` of the reliability diagram and the MSP ROC curves, when matplotlib is installed."""
    try:
        import matplotlib.image as mpimg
    except ImportError:
        return {}
    import base64
    import io

    a = table.arrays
    uris: dict[str, str] = {}
    if "id/logits" in a and "id/labels" in a:
        t = a.get("ts/temperature")
        temp = float(t.reshape(-1)[0]) if t is not None and len(t.reshape(-1)) else None
        uris["eval/reliability"] = plots.reliability(a["id/logits"], a["id/labels"], temp)
    dets = sorted({k.split("/")[1] for k in a if k.startswith("scores/") and k.count("/") == 2})
    det = "msp" if "msp" in dets else (dets[0] if dets else None)
    if det is not None and f"scores/{det}/id" in a:
        sets = {
            k.split("/", 2)[2]: (a[f"scores/{det}/id"], a[k])
            for k in a
            if k.startswith(f"scores/{det}/") and k != f"scores/{det}/id"
        }
        if sets:
            uris[f"eval/roc_{det}"] = plots.roc_pr(sets, det)
    out = {}
    for tag, uri in uris.items():
        png = base64.b64decode(uri.split(",", 1)[1])
        img = mpimg.imread(io.BytesIO(png), format="png")
        out[tag] = (img[..., :3] * 255).round().astype("uint8") if img.dtype != "uint8" else img[..., :3]
    return out


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    """TensorBoard event files in ``log_dir`` (default ``<run_dir>/tensorboard``).

    Args:
        run_dir: the run directory (where ``tensorboard/`` goes unless ``log_dir`` is given).
        run_name: unused (TensorBoard names runs by directory).
        log_dir: the event-file directory.
    """

    name = "tensorboard"

    def __init__(
        self, run_dir: str | os.PathLike[str] = ".", run_name: str = "", log_dir: str | os.PathLike[str] | None = None
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(str(self.log_dir))

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = flatten_params(params)
        text = "\n".join(f"    {k}: {v}" for k, v in flat.items())  # indented: a code block in TensorBoard's markdown
        self.writer.add_text("config", text, 0)

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        for k, v in _numeric(metrics).items():
            if k != "step":
                self.writer.add_scalar(_curve_tag(k), v, step)
        self.writer.flush()

    def log_table(self, table: Any, step: int = 0, figures: bool = True) -> None:
        for row in table:
            if math.isfinite(row.value):
                self.writer.add_scalar("eval/" + row_tag(row), row.value, step)
        if figures:
            for tag, img in _figures(table).items():
                self.writer.add_image(tag, img, step, dataformats="HWC")
        self.writer.add_text("eval/summary", "\n".join("    " + line for line in table.summary().splitlines()), step)
        self.writer.flush()

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()


def _default_mlflow_uri() -> tuple[str, str | None]:
    """``($MLFLOW_TRACKING_URI, None)`` or the local SQLite store ``./mlruns/mlflow.db`` and its artifact folder."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env, None
    root = Path("mlruns").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


_MLFLOW_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


def _mlflow_key(key: str) -> str:
    """MLflow allows alphanumerics, ``_ - . /`` and spaces in names; anything else becomes ``_``."""
    return _MLFLOW_BAD.sub("_", key)[:250]


@TRACKERS.register("mlflow")
class MLflowTracker(Tracker):
    """One MLflow run (see the module docstring for what is logged and where).

    Args:
        run_dir: the run directory: ``tracking.json`` there remembers the MLflow run id for later evaluations.
        run_name: the MLflow run name (default: the run directory's name).
        tracking_uri: the tracking store (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///./mlruns/mlflow.db``).
        experiment: the experiment name (default ``$MLFLOW_EXPERIMENT_NAME`` or ``rulab``).
        run_id: continue this MLflow run (default: the one recorded in ``<run_dir>/tracking.json`` for the same
            store, else a new run).
    """

    name = "mlflow"

    def __init__(
        self,
        run_dir: str | os.PathLike[str] | None = None,
        run_name: str = "",
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_id: str | None = None,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow") from None
        artifacts = None
        if tracking_uri is None:
            tracking_uri, artifacts = _default_mlflow_uri()
        self.tracking_uri = tracking_uri
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.client = MlflowClient(tracking_uri)
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "rulab"
        exp = self.client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id if exp is not None else self.client.create_experiment(name, artifact_location=artifacts)
        )
        state = self._state()
        if run_id is None and state.get("tracking_uri") == tracking_uri:
            run_id = state.get("run_id")
        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
            except Exception:  # noqa: BLE001 - a run deleted from the store: start a new one
                run_id = None
        if run_id is None:
            run_name = run_name or (self.run_dir.name if self.run_dir is not None else "")
            run_id = self.client.create_run(exp_id, run_name=run_name or None, tags={"rulab": "1"}).info.run_id
        self.run_id = run_id
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.run_dir / _STATE_FILE, {**state, "tracking_uri": tracking_uri, "run_id": run_id})

    def _state(self) -> dict[str, Any]:
        if self.run_dir is None or not (self.run_dir / _STATE_FILE).is_file():
            return {}
        try:
            return dict(json.loads((self.run_dir / _STATE_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return {}

    def _batch(self, metrics: Iterable[tuple[str, float, int]] = (), params: Mapping[str, str] | None = None) -> None:
        import time

        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ms = [Metric(_mlflow_key(k), v, now, step) for k, v, step in metrics]
        ps = [Param(_mlflow_key(k), v[:6000]) for k, v in (params or {}).items()]
        for i in range(0, max(len(ms), 1), 1000):
            if ms[i : i + 1000]:
                self.client.log_batch(self.run_id, metrics=ms[i : i + 1000])
        for i in range(0, len(ps), 100):
            self.client.log_batch(self.run_id, params=ps[i : i + 100])

    def log_params(self, params: Mapping[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        flat = flatten_params(params)
        self._batch(
            params={k: v for k, v in flat.items() if _mlflow_key(k) not in existing}
        )  # MLflow params are write-once

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        self._batch([(k, v, step) for k, v in _numeric(metrics).items() if k != "step"])

    def log_table(self, table: Any, step: int = 0, figures: bool = True) -> None:
        self._batch([("eval/" + row_tag(r), r.value, step) for r in table if math.isfinite(r.value)])
        with tempfile.TemporaryDirectory() as tmp:
            table.to_csv(Path(tmp) / "results.csv")
            (Path(tmp) / "summary.txt").write_text(table.summary() + "\n", encoding="utf-8")
            paths = [Path(tmp) / "results.csv", Path(tmp) / "summary.txt"]
            if figures:
                try:
                    paths.append(evaluation_report(table, Path(tmp) / "report.html"))
                except RulabError:  # matplotlib missing: the numbers are logged, the report is not
                    pass
            for p in paths:
                self.client.log_artifact(self.run_id, str(p), artifact_path="eval")

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def make_trackers(
    track: str | Sequence[str] | None, run_dir: str | os.PathLike[str], run_name: str = ""
) -> list[Tracker]:
    """Trackers by name: ``"tensorboard,mlflow"`` or ``["mlflow"]`` (empty: none).

    Raises:
        ConfigError: an unknown tracker name (the message lists the valid ones).
        RulabError: a tracker whose package is not installed (``pip install 'rulab[tracking]'``).
    """
    if not track:
        return []
    names = [n.strip() for n in track.split(",")] if isinstance(track, str) else [str(n).strip() for n in track]
    out: list[Tracker] = []
    for name in dict.fromkeys(n for n in names if n):
        if name not in TRACKERS:
            raise ConfigError(TRACKERS.unknown_message(name))
        out.append(TRACKERS.create(name, run_dir=run_dir, run_name=run_name))
    return out


def log_results(
    table: Any,
    track: str | Sequence[str] | Sequence[Tracker],
    run_dir: str | os.PathLike[str] = ".",
    run_name: str = "",
) -> None:
    """Log an evaluation's ResultTable to trackers (names, as for :func:`make_trackers`, or Tracker objects that stay
    open), e.g. ``log_results(rulab.evaluate(model, ...), "mlflow")``."""
    if isinstance(track, str) or (isinstance(track, Sequence) and all(isinstance(t, str) for t in track)):
        for t in make_trackers(track, run_dir, run_name):  # type: ignore[arg-type]
            with t:
                t.log_table(table)
        return
    for t in track:  # type: ignore[union-attr]
        t.log_table(table)  # type: ignore[union-attr]


def train_tracked(
    cfg: Any, track: str | Sequence[str], resume: bool = False, progress: bool = True, allow_config_change: bool = False
) -> Path:
    """:func:`rulab.train.loop.fit` with trackers: the config as params, every epoch's curves (the loop's
    ``loggers=`` hook), then the checkpoint, its metadata and the curves file as artifacts. Under ``torchrun`` only
    rank 0 tracks.

    Returns:
        The run directory.
    """
    from rulab.eval.validate import validate_run  # torch-heavy: rulab.tracking itself stays light to import
    from rulab.train.loop import fit, run_dir_of

    validate_run(cfg)  # a bad config fails before a tracking run is opened
    main = int(os.environ.get("RANK", "0")) == 0
    trackers = make_trackers(track, run_dir_of(cfg), cfg.name) if main else []
    ok = False
    try:
        for t in trackers:
            t.log_params(to_dict(cfg))
        run_dir = fit(cfg, resume=resume, progress=progress, loggers=trackers, allow_config_change=allow_config_change)
        for t in trackers:
            for name in ("model.safetensors", "meta.json", "config.yaml", "metrics.jsonl"):
                if (run_dir / name).is_file():
                    t.log_artifact(run_dir / name)
        ok = True
    finally:
        for t in trackers:
            t.close("FINISHED" if ok else "FAILED")
    return run_dir
