"""The one training loop: ``fit(cfg) -> run directory`` (read it top to bottom, like nanoGPT's ``train.py``).

Every method is an objective (rulab.methods) run by this loop. What makes a run reproducible and resumable:

* the learning rate is a pure function of the step (:func:`rulab.train.optim.lr_at`);
* the batch order and augmentation are pure functions of (seed, epoch, batch) (:class:`TensorLoader`);
* the global RNG (dropout) and the method's generator are re-seeded from (seed, step) before every step (and the
  rank under DDP, so that ranks draw different noise);
* the training state (weights, optimizer moments, loss scaler, method modules, running sums) is saved atomically
  every ``checkpoint_every`` steps and at epoch ends; ``resume=True`` continues from the newest one and ends with
  bit-identical weights on CPU.

Under ``torchrun`` (docs/distributed.md) the model is wrapped in DDP, every rank trains on its slice of the global
batch, running sums and validation logits are gathered over ranks, and only rank 0 writes files.

One concern, kept in one file: the training loop itself, read top to bottom; its parts (optimiser, loader,
checkpoint files, DDP plumbing) live in their own modules.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import rulab
from rulab.checkpoint import (
    init_from_checkpoint,
    load_train_state,
    read_meta,
    read_train_record,
    save_model,
    save_train_state,
)
from rulab.checks import run_path
from rulab.config import KEEP_BEST, RunCfg, config_diff, config_hash, dump_yaml, from_dict, to_dict
from rulab.data.loader import TensorLoader, derive_seed, make_generator
from rulab.data.splits import Splits, load_splits
from rulab.distributed import DistInfo, all_reduce_sum, barrier, gather_rows, init_distributed, resolve_device
from rulab.errors import CheckpointError, ConfigError, RulabError, RulabWarning
from rulab.eval.predict import predict_distributed
from rulab.eval.validate import validate_run
from rulab.io import atomic_write_json, atomic_write_text, ensure_writable_dir, explain_os_error, remove_stale_temps
from rulab.lock import RunLock
from rulab.metrics.calibration import calibration_error
from rulab.registry import METHODS, MODELS, OOD_SETS
from rulab.train.optim import build_optimizer, lr_at

__all__ = ["fit", "build_model", "channel_stats", "run_dir_of", "provenance", "git_commit", "recorded_config"]


def run_dir_of(cfg: RunCfg) -> Path:
    """``<out_dir>/<name>``: where a run keeps its checkpoints, config and logs (the name is checked to be one
    directory name, :func:`rulab.checks.run_path`, so a run is never written outside ``out_dir``)."""
    return run_path(cfg.out_dir, cfg.name)


def git_commit() -> str:
    """The git commit of the rulab source tree (``+dirty`` if modified), or ``""`` outside a checkout."""
    src = Path(rulab.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(device: torch.device | str) -> dict[str, Any]:
    """What made a result: library and torch versions, git commit, device, host."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
    return {
        "rulab_version": rulab.__version__,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "device": f"{dev.type}:{name}",
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


def build_model(
    cfg: RunCfg,
    num_classes: int,
    input_shape: tuple[int, int, int],
    stats: tuple[list[float], list[float]] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Create the configured model for ``num_classes`` and ``input_shape`` = (C, H, W).

    The loop supplies ``num_classes``, ``in_channels`` and ``input_size`` where the entrypoint accepts them, and the
    training split's ``(mean, std)`` as ``stats`` when ``model.stats="train"``; ``model.kwargs`` from the config
    override nothing the data decides.

    Returns:
        ``(model, kwargs)`` with the full keyword arguments (stored in the checkpoint).
    """
    params = MODELS.parameters(cfg.model.name)
    kwargs: dict[str, Any] = dict(cfg.model.kwargs)
    if stats is not None:
        if not {"mean", "std"} <= set(params):
            raise ConfigError(
                f"model.stats=train sets the normalisation, but model '{cfg.model.name}' takes no mean/std; set model.stats to ''"
            )
        kwargs["mean"], kwargs["std"] = stats
    auto = {"num_classes": num_classes, "in_channels": input_shape[0], "input_size": input_shape[1]}
    for k, v in auto.items():
        if k in params:
            kwargs[k] = v
    return MODELS.create(cfg.model.name, **kwargs), kwargs


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of uint8 images in [0, 1] units (``model.stats="train"``).

    W2 normalised its from-scratch models by the statistics of the training images (report §5). Accumulated in
    float64 over chunks of images, so a large split needs no float copy.

    Args:
        x: ``uint8 [N, C, H, W]``.

    Returns:
        ``(mean, std)``, each a list of C floats.
    """
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].to(torch.float64).div_(255.0)
        total += xb.sum(dim=(0, 2, 3))
        total_sq += xb.pow(2).sum(dim=(0, 2, 3))
    count = x.numel() / c
    mean = total / count
    var = (total_sq / count - mean.pow(2)).clamp_min(0.0)
    return [float(v) for v in mean], [float(v) for v in var.sqrt()]


def _reset_head(model: nn.Module, how: str) -> None:
    """Initialise the fresh head of a fine-tuning run: ``"model"`` keeps the model's own initialisation, ``"pytorch"``
    runs ``nn.Linear.reset_parameters`` (weight and bias uniform in ±1/sqrt(fan_in); W1's ``tune.py`` builds a fresh
    ``nn.Linear``)."""
    if how == "model":
        return
    head = getattr(model, "fc", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError(
            f"train.head_init={how} resets an nn.Linear head called 'fc', which {type(model).__name__} does not have; use train.head_init=model"
        )
    head.reset_parameters()


def _keep_eval(module: nn.Module, args: Any) -> None:
    module.training = False


def _freeze_bn(model: nn.Module) -> None:
    """Put BatchNorm layers in eval mode with frozen affine parameters, for the whole run.

    A forward pre-hook re-asserts eval mode before every call, so a method that toggles the model's mode (e.g. PGD
    in ACET or adversarial training runs ``model.eval()`` then ``model.train()``) cannot unfreeze the running
    statistics (W2's ``val()`` did; see the register of convention 5 in docs/conventions.md).
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            if not getattr(m, "_rulab_frozen", False):
                m.register_forward_pre_hook(_keep_eval)
                m._rulab_frozen = True


def _evaluate(model: nn.Module, ds: Any, batch_size: int, channels_last: bool) -> dict[str, float]:
    """Accuracy, NLL and ECE (15 uniform bins) of ``model`` on ``ds``, sharded over ranks and gathered."""
    logits = predict_distributed(model, ds.x, batch_size=batch_size, channels_last=channels_last)["logits"]
    labels = ds.y
    conf, pred = logits.softmax(1).max(1)
    correct = (pred == labels).double()
    return {
        "acc": correct.mean().item(),
        "nll": F.cross_entropy(logits.double(), labels).item(),
        "ece": float(calibration_error(conf, correct, norm="l1", binning="uniform", n_bins=15)),
    }


def _check_same_run_dir(run_dir: Path, device: torch.device) -> None:
    """Under DDP: every rank must see the same run directory state (finished? resume step?), or resuming diverges."""
    try:
        latest = int((run_dir / "checkpoints" / "LATEST").read_text(encoding="utf-8").strip().split("-")[-1])
    except (OSError, ValueError):
        latest = -1
    seen = gather_rows(torch.tensor([[int((run_dir / "model.safetensors").exists()), latest]], device=device))
    if not bool((seen == seen[0]).all()):
        raise RulabError(
            f"the processes see different contents of {run_dir} (finished/resume step per rank: {seen.tolist()}); "
            "put out_dir on a filesystem shared by all nodes"
        )


def _reduce_sums(sums: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """The running training sums (loss, correct, n, batches) added over ranks; a copy of ``sums`` when not distributed."""
    if not info.enabled:
        return dict(sums)
    tot = all_reduce_sum(torch.tensor(list(sums.values()), dtype=torch.float64, device=device))
    return dict(zip(sums, tot.tolist()))


def _outlier_loader(
    method: Any, splits: Splits, cfg: RunCfg, info: DistInfo, device: torch.device
) -> TensorLoader | None:
    if method.batch_spec != "id+outliers":
        return None
    if not method.outliers:
        raise ConfigError(
            f"method '{cfg.method.name}' needs outliers; set method.kwargs.outliers to an OOD set ({', '.join(OOD_SETS.list())})"
        )
    pool = OOD_SETS.create(
        method.outliers, shape=splits.train.shape, n=method.outlier_pool, seed=derive_seed(cfg.seed, 0x0E)
    )
    shards = info.world_size * cfg.train.accum_steps  # the outlier batch is cut like the ID batch
    bs = max(shards, int(round(cfg.train.batch_size * method.outlier_batch_ratio)) // shards * shards)
    return TensorLoader(
        pool.x,
        pool.y,
        bs,
        shuffle=True,
        drop_last=True,
        augment=cfg.data.augment,
        seed=derive_seed(cfg.seed, 0x0E1),
        device=device,
        rank=info.rank,
        world_size=info.world_size,
        channels_last=cfg.train.channels_last,
    )


def fit(
    cfg: RunCfg,
    resume: bool = False,
    progress: bool = True,
    splits: Splits | None = None,
    loggers: list[Any] | None = None,
    allow_config_change: bool = False,
) -> Path:
    """Train the model of ``cfg`` with its method; return the run directory.

    The process holds the run directory's owner lock (:class:`rulab.lock.RunLock`; under DDP rank 0 holds it) from
    before it reads the directory until it returns, so a second process on the same run refuses instead of mixing
    files with this one.

    Args:
        cfg: a validated run configuration.
        resume: continue from the newest training state in the run directory; a finished run is left as is. The
            config must be the one the run was trained with (:func:`rulab.config.config_diff` is empty), else the
            run is refused with the differing keys.
        progress: show a progress bar with ETA (rank 0 only).
        splits: pre-loaded data (tests, studies); default loads ``cfg.data``.
        loggers: objects with ``log_metrics(step: int, metrics: dict)`` (TensorBoard, MLflow, ...).
        allow_config_change: with ``resume``, continue an interrupted run with a config that differs from its
            recorded one; the step and the changed keys are recorded in its ``config_history`` (the training
            state, ``meta.json``) and as a ``{"event": "config_change", ...}`` line in ``metrics.jsonl``.

    Raises:
        RulabError: bad config, missing data, incompatible ``init_from`` checkpoint, unwritable output, a run
            directory in use by another process, or a resume with a changed config.
    """
    validate_run(cfg)
    info = init_distributed(cfg.device.split(":")[0] if cfg.device != "auto" else None)
    device = resolve_device(cfg.device, info)
    if cfg.train.amp == "fp16" and device.type == "cpu":  # it runs, but several times slower than fp32 (measured)
        raise ConfigError(
            "train.amp=fp16 needs a GPU (on the CPU float16 is emulated and slower than float32); use train.amp=bf16 or none"
        )
    if info.enabled and cfg.train.sync_bn and device.type != "cuda":  # PyTorch's SyncBatchNorm runs on CUDA only
        raise ConfigError(
            "train.sync_bn needs CUDA GPUs (SyncBatchNorm does not run on the CPU); set train.sync_bn=false or use a BatchNorm-free model"
        )
    if cfg.train.batch_size % (info.world_size * cfg.train.accum_steps):
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be a multiple of the number of processes ({info.world_size}) "
            f"times train.accum_steps ({cfg.train.accum_steps}); change one of them"
        )
    run_dir = run_dir_of(cfg)
    lock = _lock_run_dir(run_dir, info, device)
    try:
        return _fit(cfg, resume, progress, splits, loggers, allow_config_change, info, device, run_dir, lock)
    finally:
        if lock is not None:
            lock.release()


def _lock_run_dir(run_dir: Path, info: DistInfo, device: torch.device) -> RunLock | None:
    """Rank 0 creates ``run_dir`` and takes its owner lock (a stale one is taken over with a warning) and removes the
    temporary files a killed process left there; every rank learns whether that worked (a collective under DDP).

    Returns:
        The held lock on rank 0, ``None`` on the other ranks.
    """
    lock: RunLock | None = None
    failure: RulabError | None = None
    if info.main:
        try:
            ensure_writable_dir(run_dir)
            lock = RunLock(run_dir).acquire()
        except RulabError as err:
            failure = err
    if info.enabled:
        failed = all_reduce_sum(torch.tensor([float(failure is not None)], device=device))
        if failure is None and float(failed[0]) > 0:
            raise RulabError(
                f"rank 0 could not take the run directory {run_dir} (its error message says why); fix that and start again"
            )
    if failure is not None:
        raise failure
    if lock is not None:
        for d in (run_dir, run_dir / "checkpoints"):  # nobody else writes here now: every temp file is a leftover
            remove_stale_temps(d)
    return lock


def _describe_diff(diff: dict[str, tuple[Any, Any]], limit: int = 5) -> str:
    """``optim.lr 0.4 -> 0.5, train.epochs 5 -> 10`` (at most ``limit`` keys, then how many more)."""
    parts = [
        f"{k} {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}" for k, (a, b) in list(diff.items())[:limit]
    ]
    more = f" and {len(diff) - limit} more" if len(diff) > limit else ""
    return ", ".join(parts) + more


def recorded_config(run_dir: Path) -> tuple[RunCfg | None, str]:
    """The config an interrupted run was last trained with, and where it was read: the newest training state's
    record, else the run's ``config.yaml`` (states written before records existed). ``(None, reason)`` when it
    cannot be read.
    """
    found = read_train_record(run_dir)
    stored: Any = None
    where = ""
    if found is not None and isinstance(found[1].get("config"), dict):
        stored, where = found[1]["config"], f"the training state in {run_dir / 'checkpoints'}"
    else:
        path = run_dir / "config.yaml"
        try:
            import yaml

            stored, where = yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            return None, f"{path} cannot be read ({type(err).__name__})"
    try:
        return from_dict(RunCfg, stored or {}), where
    except ConfigError as err:
        return None, f"the config in {where} no longer loads ({err})"


def _resume_history(run_dir: Path, cfg: RunCfg, allow_change: bool) -> list[dict[str, Any]]:
    """The config history a resumed interrupted run continues: ``[{"step": 0, "config_hash": ...}, ...]`` plus, when
    ``cfg`` differs from the recorded config and ``allow_change``, an entry ``{"step", "config_hash",
    "previous_hash", "changed": {key: [old, new]}}``.

    Raises:
        ConfigError: ``cfg`` differs from the recorded config (or that cannot be read) and not ``allow_change``.
    """
    new_hash = config_hash(cfg)
    found = read_train_record(run_dir)
    if found is None:
        return [{"step": 0, "config_hash": new_hash}]
    step, record = found
    history = [dict(h) for h in record.get("config_history") or [] if isinstance(h, dict)]
    old, where = recorded_config(run_dir)
    diff = config_diff(old, cfg) if old is not None else None
    if diff == {}:
        return history or [{"step": 0, "config_hash": new_hash}]
    flag = "pass --allow-config-change (rulab.train(..., allow_config_change=True)) to continue with the new one, recorded in the run's config_history"
    if not allow_change:
        if diff is None:
            raise ConfigError(f"cannot tell which config run directory {run_dir} was trained with: {where}; {flag}")
        raise ConfigError(
            f"run directory {run_dir} was trained with another config ({_describe_diff(diff)}); "
            f"resume with the same settings, or {flag}"
        )
    old_hash = config_hash(old) if old is not None else ""
    entry = {
        "step": step,
        "config_hash": new_hash,
        "previous_hash": old_hash,
        "changed": {k: [a, b] for k, (a, b) in diff.items()} if diff is not None else f"unknown: {where}",
    }
    warnings.warn(
        f"resuming {run_dir} at step {step} with a changed config"
        + (f" ({_describe_diff(diff)})" if diff else "")
        + "; recorded in its config_history",
        RulabWarning,
        stacklevel=3,
    )
    return (history or [{"step": 0, "config_hash": old_hash}]) + [entry]


def _refuse_changed_finished(run_dir: Path, final: Path, cfg: RunCfg) -> None:
    """A finished run is not trained further by ``resume``: refuse a config that differs from the one it was
    trained with instead of silently ignoring it (a config the checkpoint no longer loads is not compared)."""
    stored = read_meta(final).get("config")
    try:
        old = from_dict(RunCfg, stored) if isinstance(stored, dict) else None
    except ConfigError:
        old = None
    diff = config_diff(old, cfg) if old is not None else {}
    if diff:
        raise ConfigError(
            f"run directory {run_dir} holds a finished run trained with another config ({_describe_diff(diff)}); "
            "--resume never trains a finished run further, so the new config would not be used; choose another --name or --out to train it"
        )


def _metrics_lines(history: list[dict[str, Any]], config_history: list[dict[str, Any]]) -> str:
    """``metrics.jsonl``: the epoch records, with a ``{"event": "config_change", ...}`` line before the first record
    trained under each changed config."""
    events = [{"event": "config_change", **h} for h in config_history[1:]]
    lines: list[str] = []
    for rec in history:
        while events and events[0]["step"] < rec.get("step", 0):
            lines.append(json.dumps(events.pop(0), default=str))
        lines.append(json.dumps(rec))
    lines += [json.dumps(e, default=str) for e in events]
    return "".join(line + "\n" for line in lines)


def _fit(
    cfg: RunCfg,
    resume: bool,
    progress: bool,
    splits: Splits | None,
    loggers: list[Any] | None,
    allow_config_change: bool,
    info: DistInfo,
    device: torch.device,
    run_dir: Path,
    lock: RunLock | None,
) -> Path:
    """The body of :func:`fit`, run while the run directory's lock is held."""
    final = run_dir / "model.safetensors"
    if info.enabled:
        _check_same_run_dir(run_dir, device)
    if final.exists():
        if resume:
            _refuse_changed_finished(run_dir, final, cfg)
            if info.main and not (run_dir / "meta.json").exists():  # killed between the two files of save_model
                atomic_write_json(run_dir / "meta.json", read_meta(final))
            return run_dir
        raise RulabError(
            f"run directory {run_dir} already holds a finished run; pass --resume to keep it, or choose another --name / out_dir"
        )
    if (run_dir / "checkpoints" / "LATEST").exists() and not resume:
        raise RulabError(
            f"run directory {run_dir} holds an interrupted run; pass --resume to continue it, or delete the directory to start over"
        )
    config_history = (
        _resume_history(run_dir, cfg, allow_config_change) if resume else [{"step": 0, "config_hash": config_hash(cfg)}]
    )
    if cfg.train.deterministic:
        if device.type == "cuda":  # deterministic cuBLAS (must be set before its first use)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(derive_seed(cfg.seed, 0x1417))

    # ---- data, model, method, optimizer
    splits = splits or load_splits(cfg.data, cfg.seed)
    k, shape = len(splits.classes), splits.train.shape
    model, model_kwargs = build_model(
        cfg, k, shape, channel_stats(splits.train.x) if cfg.model.stats == "train" else None
    )
    parent = ""
    if cfg.train.init_from:
        init_from_checkpoint(model, cfg.train.init_from, cfg.model.name, cfg.train.reset_head)
        parent = str(cfg.train.init_from)
        if cfg.train.reset_head:
            _reset_head(model, cfg.train.head_init)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = METHODS.create(cfg.method.name, **dict(cfg.method.kwargs))
    method.setup(model, k, shape)
    extra = nn.ModuleDict(method.modules()).to(device)
    if cfg.train.freeze_bn:
        _freeze_bn(model)
    if info.enabled and cfg.train.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg.optim, list(extra.parameters()))
    net: nn.Module = model
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        net = torch.compile(net)
    loader = TensorLoader(
        splits.train.x,
        splits.train.y,
        cfg.train.batch_size,
        shuffle=True,
        drop_last=cfg.train.drop_last,
        augment=cfg.data.augment,
        seed=cfg.seed,
        device=device,
        rank=info.rank,
        world_size=info.world_size,
        channels_last=cfg.train.channels_last,
        two_views=method.batch_spec == "two_views",
    )
    outliers = _outlier_loader(method, splits, cfg, info, device)
    steps_per_epoch = len(loader)
    total = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps) if cfg.train.epochs else cfg.train.max_steps
    epochs = math.ceil(total / steps_per_epoch)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")

    # ---- resume
    step, sums = 0, {"loss": 0.0, "correct": 0.0, "n": 0.0, "batches": 0.0}
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}  # train.keep_best: {"epoch", "value", "weights"} of the best epoch so far
    metrics_path = run_dir / "metrics.jsonl"
    if resume:
        loaded = load_train_state(run_dir, model)
        if loaded is not None:
            step, state = loaded
            missing = [k for k in ("optimizer", "extra", "sums", "history") if k not in state]
            if missing:
                raise CheckpointError(
                    f"the training state of {run_dir} at step {step} lacks '{missing[0]}' (written by another rulab version?); "
                    f"delete {run_dir / 'checkpoints' / 'LATEST'} to start the run over"
                )
            try:
                optimizer.load_state_dict(state["optimizer"])
                scaler.load_state_dict(state["scaler"]) if state.get("scaler") else None
                extra.load_state_dict(state["extra"])
            except (
                ValueError,
                KeyError,
                RuntimeError,
                TypeError,
            ) as err:  # a changed optimizer or method cannot take the old state
                raise CheckpointError(
                    f"the training state of {run_dir} at step {step} does not fit this run's optimizer or method ({type(err).__name__}: "
                    f"{str(err).splitlines()[0][:120] if str(err) else ''}); a resume cannot change them, so start a new run (another --name)"
                ) from None
            # the saved sums are totals over ranks (see checkpoint()): rank 0 carries them on, the others restart at 0
            sums = dict(state["sums"]) if info.main else {k: 0.0 for k in sums}
            history = list(state["history"])
            best = dict(state.get("best") or {})
    meta_base = {
        "model": cfg.model.name,
        "model_kwargs": model_kwargs,
        "classes": splits.classes,
        "input_shape": list(shape),
        "mean": getattr(model, "mean", None),
        "std": getattr(model, "std", None),
        "method": cfg.method.name,
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "parent_checkpoint": parent,
        "seed": cfg.seed,
        "dataset": cfg.data.dataset,
        "config_history": config_history,
        **provenance(device),
    }
    if info.main:
        atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
        atomic_write_json(
            run_dir / "env.json",
            {k: meta_base[k] for k in ("rulab_version", "torch_version", "git_commit", "device", "python", "threads")},
        )
        atomic_write_text(metrics_path, _metrics_lines(history, config_history))

    def checkpoint() -> None:
        total_sums = _reduce_sums(sums, info, device)  # a collective: every rank calls checkpoint()
        if info.main:
            assert lock is not None
            lock.check()  # never write over a run another process has taken over
            state = {
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "extra": extra.state_dict(),
                "sums": total_sums,
                "history": history,
            }
            if best:
                state["best"] = best
            save_train_state(
                run_dir, step, model, state, record={"config": to_dict(cfg), "config_history": config_history}
            )
        barrier()

    bar = None
    if progress and info.main:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total,
            initial=step,
            desc=cfg.name,
            unit="step",
            dynamic_ncols=True,
            leave=False,
            disable=None,
            mininterval=1.0,
        )
    net.train()
    if cfg.train.freeze_bn:
        _freeze_bn(model)
    t_start = time.time()
    # Every rank splits its slice of the global batch into accum_steps micro-batches: shard s = rank * accum + j of
    # world_size * accum. Each shard draws its own dropout masks and method noise (the data order is shared by the
    # loader); with one shard the seeds are those of a plain run.
    accum = cfg.train.accum_steps
    shards = info.world_size * accum
    # ---- the loop
    while step < total:
        epoch, first = divmod(step, steps_per_epoch)
        loader.set_position(epoch, first)
        for batch in loader:
            if outliers is not None:
                batch["x_out"] = outliers.batch_at(step)["x"]
            lr = lr_at(step, total, cfg.optim, parity=cfg.parity)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j, micro in enumerate(_micro_batches(batch, accum)):
                shard = (info.rank * accum + j,) if shards > 1 else ()
                torch.manual_seed(derive_seed(cfg.seed, 0x57E9, step, *shard))
                micro["generator"] = make_generator(cfg.seed, 0x9E7, step, *shard, device=device)
                micro["step"] = step
                # under DDP only the last micro-batch's backward all-reduces the accumulated gradients
                with net.no_sync() if info.enabled and j < accum - 1 else nullcontext():  # type: ignore[operator]
                    with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext():
                        out = method(net, micro)
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise RulabError(
                            f"the training loss became {loss.item()} at step {step}; lower optim.lr or check the data (run it again with --resume after fixing)"
                        )
                    # a mean over accum micro-batches: d(loss / accum) is the micro-batch's share of the step's
                    # gradient, as DDP's division by the world size is each rank's share
                    scaler.scale(loss / accum if accum > 1 else loss).backward()
                step_loss += loss.item()
                if method.supervised and "logits" in out:
                    y = out.get("acc_target", micro["y"])  # MixUp: the dominant label of each mixed image
                    sums["correct"] += (out["logits"][: len(y)].argmax(1) == y).sum().item()
                    sums["n"] += len(y)
            if cfg.optim.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(list(model.parameters()) + list(extra.parameters()), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            sums["loss"] += step_loss / accum if accum > 1 else step_loss
            sums["batches"] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / sums['batches']:.3f}", lr=f"{lr:.2e}", refresh=False)
            epoch_done = step % steps_per_epoch == 0 or step == total
            if epoch_done:
                sums = _reduce_sums(sums, info, device)  # under DDP: the epoch's loss and accuracy over all ranks
                rec: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "step": step,
                    "lr": lr,
                    "train_loss": sums["loss"] / max(sums["batches"], 1),
                    "time": round(time.time() - t_start, 3),
                }
                if sums["n"]:
                    rec["train_acc"] = sums["correct"] / sums["n"]
                ev = cfg.train.eval_every
                if splits.val is not None and method.supervised and ev and ((epoch + 1) % ev == 0 or step == total):
                    rec.update(
                        {f"val_{k}": v for k, v in _evaluate(model, splits.val, 256, cfg.train.channels_last).items()}
                    )
                    net.train()
                    if cfg.train.freeze_bn:
                        _freeze_bn(model)
                if cfg.train.keep_best and cfg.train.keep_best in rec:
                    value = float(rec[cfg.train.keep_best])
                    higher = KEEP_BEST[cfg.train.keep_best]
                    if not best or (
                        value > best["value"] if higher else value < best["value"]
                    ):  # ties keep the earlier epoch
                        best = {
                            "epoch": epoch + 1,
                            "value": value,
                            "weights": {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()},
                        }
                history.append(rec)
                sums = {"loss": 0.0, "correct": 0.0, "n": 0.0, "batches": 0.0}
                if info.main:
                    assert lock is not None
                    lock.check()
                    try:
                        with open(metrics_path, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps(rec) + "\n")
                    except OSError as err:
                        raise explain_os_error(err, metrics_path) from None
                    for lg in loggers or []:
                        lg.log_metrics(step, rec)
                    if bar is not None and bar.disable:  # off a terminal (a log file, CI): one line per epoch instead
                        _epoch_line(cfg.name, epochs, rec)
                checkpoint()
            elif cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0:
                checkpoint()
            if step >= total:
                break
    if bar is not None:
        bar.close()
    kept: dict[str, Any] = {}
    if cfg.train.keep_best:
        if not best:
            raise RulabError(
                f"train.keep_best={cfg.train.keep_best} found no epoch with that validation metric; the run needs a validation split and a supervised method"
            )
        model.load_state_dict(best["weights"])
        kept = {"metric": cfg.train.keep_best, "epoch": best["epoch"], "value": best["value"], "epochs": epochs}
    if info.main:
        assert lock is not None
        lock.check()
        meta = {
            **meta_base,
            "epochs": epochs,
            "steps": step,
            "history": history,
            "train_seconds": round(time.time() - t_start, 3),
        }
        if kept:
            meta["kept"] = kept
        save_model(final, model, meta)
    barrier()
    return run_dir


def _micro_batches(batch: dict[str, Any], accum: int) -> list[dict[str, Any]]:
    """``batch`` cut into ``accum`` contiguous micro-batches (``x``, ``y``, ``x2``, ``x_out`` each split evenly).

    With ``accum = 1`` the batch itself. A micro-batch is what a rank keeps of a global batch under DDP
    (:class:`TensorLoader` slices ranks contiguously), so W ranks with one micro-batch each and one process with
    ``accum = W`` see the same images.
    """
    if accum == 1:
        return [batch]
    parts: list[dict[str, Any]] = [{} for _ in range(accum)]
    for key, value in batch.items():
        chunks = value.chunk(accum) if isinstance(value, torch.Tensor) and value.dim() > 0 else None
        if chunks is not None and (len(chunks) != accum or len(value) % accum):
            raise ConfigError(
                f"a batch of {len(value)} '{key}' rows cannot be cut into {accum} equal micro-batches; "
                "choose train.accum_steps dividing the batch sizes"
            )
        for j, part in enumerate(parts):
            part[key] = chunks[j] if chunks is not None else value
    return parts


def _epoch_line(name: str, epochs: int, rec: dict[str, Any]) -> None:
    """Print one epoch's record to stderr: ``name: epoch 2/5  loss 0.412  val_acc 0.8931  41.2 s``."""
    parts = [f"{name}: epoch {rec['epoch']}/{epochs}", f"loss {rec['train_loss']:.3f}"]
    parts += [f"{k} {rec[k]:.4f}" for k in ("val_acc", "val_ece") if k in rec]
    print("  ".join(parts + [f"{rec['time']:.1f} s"]), file=sys.stderr, flush=True)


def describe(cfg: RunCfg) -> str:
    """A one-line summary of a config (for logs)."""
    return f"{cfg.name}: {cfg.model.name} on {cfg.data.dataset} with {cfg.method.name}, {cfg.train.epochs} epochs, seed {cfg.seed}"


def with_seed(cfg: RunCfg, seed: int) -> RunCfg:
    """A copy of ``cfg`` for another seed, named ``<name>-s<seed>``."""
    base = cfg.name.rsplit("-s", 1)[0] if cfg.name.rsplit("-s", 1)[-1].isdigit() else cfg.name
    return replace(cfg, seed=seed, name=f"{base}-s{seed}")
