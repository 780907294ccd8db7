"""Self-describing, safe checkpoints (convention 11 in docs/conventions.md).

A model checkpoint is one ``.safetensors`` file whose metadata holds everything needed to rebuild the model
(registry name and kwargs, classes, normalisation, resolved config, method, parent checkpoint, library version,
git commit); a ``meta.json`` beside it repeats the metadata for people and tools. Nothing is ever unpickled:
training state (optimizer moments, step, loss scaler) is stored as safetensors tensors plus a JSON skeleton.
All writes are atomic (temp file or temp directory + rename); a run's resumable state is the directory that
``checkpoints/LATEST`` names.

Layout of a run directory::

    runs/<name>/model.safetensors   final weights + metadata        (what `rulab eval` reads)
    runs/<name>/meta.json           the same metadata, readable
    runs/<name>/checkpoints/LATEST  name of the newest complete training-state directory
    runs/<name>/checkpoints/step-00001234/{model,state}.safetensors, state.json

One concern, kept in one file: the run directory's files (the layout above) and their safe writing and reading.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rulab.checks import brief, child_path
from rulab.distributed import unwrap_model
from rulab.errors import CheckpointError, ConfigError
from rulab.io import atomic_path, atomic_write_json, atomic_write_text, ensure_writable_dir, explain_os_error
from rulab.registry import MODELS, UnknownNameError

__all__ = [
    "eval_name",
    "save_model",
    "read_meta",
    "load_model",
    "load_weights_into",
    "init_from_checkpoint",
    "check_parent",
    "save_train_state",
    "load_train_state",
    "resolve_checkpoint",
    "checkpoint_hash",
    "check_meta",
    "latest_state_dir",
    "read_train_record",
]

_META_KEY = "rulab"


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The ``.safetensors`` file of a run directory or file path, with a clear error when absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.exists():
        raise CheckpointError(
            f"no checkpoint at {path}; give a run directory made by `rulab train` or a .safetensors file"
        )
    return p


def _pickled(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a pickle (protocol 2+) or a ``torch.save`` zip archive."""
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head[:4] == b"PK\x03\x04"


def _read_header(p: Path) -> dict[str, Any]:
    """Parse the safetensors header without loading tensors; refuse anything else (e.g. a pickle)."""
    corrupt = (
        f"{p} is truncated or corrupt (its safetensors header is unreadable); re-create it or restore it from a copy"
    )
    try:
        with open(p, "rb") as fh:
            head = fh.read(9)  # the header length (u64, little-endian), then the header's opening brace
            n = int.from_bytes(head[:8], "little")
            if not (head[8:] == b"{" and 0 < n <= 100_000_000) and _pickled(head):
                raise CheckpointError(
                    f"{p} is not a safetensors file but a pickled PyTorch file (.pt/.pth), which rulab never unpickles; "
                    "load its state dict with torch.load(path, weights_only=True) and save it with rulab.checkpoint.save_model"
                )
            if len(head) < 8:
                raise CheckpointError(
                    f"{p} is truncated (shorter than a safetensors header); re-create it or restore it from a copy"
                )
            if n <= 0 or n > 100_000_000 or n > p.stat().st_size - 8:
                raise CheckpointError(corrupt)
            fh.seek(8)
            header = json.loads(fh.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(corrupt) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{p} has a malformed safetensors header; re-create the checkpoint")
    return header


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a checkpoint (run directory or ``.safetensors`` file)."""
    p = resolve_checkpoint(path)
    header = _read_header(p)
    stored = header.get("__metadata__") or {}
    raw = stored.get(_META_KEY) if isinstance(stored, dict) else None
    if raw is None:
        raise CheckpointError(
            f"{p} holds weights but no rulab metadata (model name, classes); load it with rulab.evaluate(model=...) or re-save it with rulab.checkpoint.save_model"
        )
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError):
        raise CheckpointError(
            f"the rulab metadata of {p} is not JSON (damaged or written by another tool); re-create the checkpoint or restore it from a copy"
        ) from None
    return check_meta(meta, p)


def check_meta(meta: Any, path: Path) -> dict[str, Any]:
    """The checkpoint metadata ``meta`` read from ``path``, checked to describe a model rulab can rebuild.

    It must be a JSON object with ``model`` (a registry name, text) and ``model_kwargs`` (an object); the sizes a
    model is built from (``num_classes``, ``in_channels``, ``input_size``) must be positive integers, and ``classes``
    a list of names when present.

    Raises:
        CheckpointError: naming the file and the first bad entry.
    """
    fix = "re-create the checkpoint (rulab train / rulab convert) or restore it from a copy"
    if not isinstance(meta, dict):
        raise CheckpointError(f"the rulab metadata of {path} is a JSON {type(meta).__name__}, not an object; {fix}")
    if not isinstance(meta.get("model"), str) or not meta["model"]:
        raise CheckpointError(f"the rulab metadata of {path} does not name its model (no 'model' entry); {fix}")
    kwargs = meta.get("model_kwargs", {})
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"the rulab metadata of {path} has 'model_kwargs' that is not an object; {fix}")
    for key in ("num_classes", "in_channels", "input_size"):
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise CheckpointError(
                f"the rulab metadata of {path} has model_kwargs.{key} = {value!r}, not a positive integer; {fix}"
            )
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"the rulab metadata of {path} has 'classes' that is not a list of names; {fix}")
    return meta


def checkpoint_hash(path: str | os.PathLike[str]) -> str:
    """A short content hash of a checkpoint file (keys the extraction cache)."""
    import hashlib

    p = resolve_checkpoint(path)
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _state_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous weights with clean keys (no ``module.`` / ``_orig_mod.`` of DDP and torch.compile)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in unwrap_model(model).state_dict().items()}


def _save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` whose I/O failures (disk full, read-only) surface as ``OSError``."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as err:  # the Rust writer reports e.g. "I/O error: No space left on device (os error 28)"
        m = re.search(r"os error (\d+)", str(err))
        code = int(m.group(1)) if m else errno.EIO
        raise OSError(code, os.strerror(code), str(path)) from None


def save_model(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s weights and ``meta`` atomically to ``path`` (a ``.safetensors`` file) and ``meta.json``.

    Args:
        meta: JSON-serialisable; must contain ``model`` (registry name) and ``model_kwargs``.
    """
    p = Path(path)
    for key in ("model", "model_kwargs"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs '{key}'")
    blob = json.dumps(meta, sort_keys=True, default=str)
    with atomic_path(p) as tmp:
        _save_file(_state_for_save(model), tmp, metadata={_META_KEY: blob})
    atomic_write_json(p.with_name("meta.json") if p.name == "model.safetensors" else p.with_suffix(".json"), meta)
    return p


def _load_tensors(p: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    _read_header(p)
    try:
        return load_file(str(p), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{p} is corrupt or truncated ({err}); re-create it or restore it from a copy") from None


def load_weights_into(
    model: nn.Module, path: str | os.PathLike[str], strict: bool = True, skip_prefixes: tuple[str, ...] = ()
) -> None:
    """Load a checkpoint's weights into an existing model, with clear errors on a mismatch."""
    p = resolve_checkpoint(path)
    state = {k: v for k, v in _load_tensors(p).items() if not k.startswith(skip_prefixes)}
    target = unwrap_model(model)
    own = target.state_dict()
    shape_bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not k.startswith(skip_prefixes)]
    unexpected = [k for k in state if k not in own]
    if shape_bad or (strict and (missing or unexpected)):
        what = (
            f"shape of '{shape_bad[0]}' {tuple(state[shape_bad[0]].shape)} vs {tuple(own[shape_bad[0]].shape)}"
            if shape_bad
            else (f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'")
        )
        raise CheckpointError(
            f"checkpoint {p} does not fit this model ({what}); it was made for another architecture or class count"
        )
    target.load_state_dict(state, strict=False)


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint alone, in eval mode on ``device``.

    Returns:
        ``(model, meta)``.
    """
    meta = read_meta(path)
    kwargs = meta.get("model_kwargs", {})
    try:
        bad = MODELS.unknown_kwargs(meta["model"], dict(kwargs))
    except UnknownNameError as err:
        raise CheckpointError(f"checkpoint {path} needs {err}") from None
    if bad:
        raise CheckpointError(
            f"checkpoint {path} stores the argument '{bad[0]}', which model '{meta['model']}' does not take "
            "(written by another rulab version?); re-create it with this rulab"
        )
    # a model may read its layout from the weights' names (fastcnn: rulab 0.1's stage order); stored arguments win
    from_state = getattr(MODELS.get(meta["model"]), "kwargs_from_state", None)
    if from_state is not None:
        names = set(_read_header(resolve_checkpoint(path))) - {"__metadata__"}  # the header's keys: tensor names
        kwargs = {**from_state(names), **kwargs}
    try:
        model = MODELS.create(meta["model"], **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # stored arguments the model cannot be built from
        raise CheckpointError(
            f"checkpoint {path} stores model arguments that model '{meta['model']}' cannot be built from "
            f"({type(err).__name__}: {brief(str(err), 120)}); re-create it with this rulab"
        ) from None
    load_weights_into(model, path)
    return model.to(device).eval(), meta


def check_parent(path: str | os.PathLike[str], model_name: str) -> dict[str, Any]:
    """The metadata of the parent checkpoint ``path``, checked to hold a ``model_name`` model (reads the header only).

    Raises:
        CheckpointError: missing, not a safetensors file, no rulab metadata, or another architecture.
    """
    meta = read_meta(path)
    if meta.get("model") != model_name:
        raise CheckpointError(
            f"cannot fine-tune from {path}: it holds a '{meta.get('model')}' model but this run builds '{model_name}'; use the same model.name"
        )
    return meta


def init_from_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], model_name: str, reset_head: bool
) -> dict[str, Any]:
    """Initialise ``model`` (registry name ``model_name``) from a parent checkpoint for fine-tuning.

    With ``reset_head`` the parent's head is skipped and the model keeps its own fresh head (new class count).

    Raises:
        CheckpointError: the parent is another architecture, or has another class count without ``reset_head``.
    """
    meta = check_parent(path, model_name)
    parent_k = meta.get("model_kwargs", {}).get("num_classes")
    own_k = getattr(model, "num_classes", None)
    if not reset_head and parent_k is not None and own_k is not None and parent_k != own_k:
        raise CheckpointError(
            f"cannot fine-tune from {path}: it has {parent_k} classes and this run has {own_k}; set train.reset_head=true to train a new head"
        )
    load_weights_into(model, path, strict=not reset_head, skip_prefixes=("fc.",) if reset_head else ())
    return meta


# ------------------------------------------------------------------------------------ training state


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, prefix, tensors), _flatten(v, prefix, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__": [_flatten(v, prefix, tensors) for v in obj]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training-state checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    return obj


def save_train_state(
    run_dir: str | os.PathLike[str],
    step: int,
    model: nn.Module,
    state: dict[str, Any],
    keep: int = 2,
    record: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a resumable training state and point ``checkpoints/LATEST`` at it.

    Args:
        step: the number of optimizer steps taken.
        model: its weights go to ``model.safetensors`` of the state directory.
        state: nested dicts/lists of tensors and scalars (optimizer, scaler, method modules, counters).
        keep: how many state directories to keep (older ones are deleted after the pointer moved).
        record: plain JSON stored beside the state and readable without loading it (:func:`read_train_record`):
            the training loop keeps the config the state was trained with and its history there.
    """
    root = Path(run_dir) / "checkpoints"
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".{name}.tmp"
    if root.is_dir():  # leftovers of writes interrupted by a kill
        for old in root.glob(".step-*.tmp"):
            shutil.rmtree(old, ignore_errors=True)
    ensure_writable_dir(tmp)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    try:
        _save_file(_state_for_save(model), tmp / "model.safetensors")
        _save_file(tensors, tmp / "state.safetensors")
        (tmp / "state.json").write_text(
            json.dumps({"step": step, "state": skeleton, "record": record or {}}), encoding="utf-8"
        )
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise explain_os_error(err, final) from None
    atomic_write_text(root / "LATEST", name + "\n")
    states = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("step-"))
    for old in states[:-keep]:
        if old.name != name:  # a stale newer directory (a kill before LATEST moved) never takes the new one's place
            shutil.rmtree(old, ignore_errors=True)
    return final


def _read_state_json(run_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """``(state directory, parsed state.json)`` of the state ``LATEST`` names, checked; ``None`` without ``LATEST``."""
    d = latest_state_dir(run_dir)
    if d is None:
        return None
    latest = Path(run_dir) / "checkpoints" / "LATEST"
    state_json = d / "state.json"
    if not state_json.is_file():
        raise CheckpointError(
            f"the resume pointer {latest} names {d.name}, which is incomplete; delete {latest} to start over"
        )
    try:
        info = json.loads(state_json.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{state_json} is corrupt; delete {latest} to start the run over") from None
    except OSError as err:
        raise CheckpointError(
            f"cannot read {state_json} ({err.strerror or err}); check its permissions, or delete {latest} to start the run over"
        ) from None
    step = info.get("step") if isinstance(info, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(
            f"{state_json} holds no valid 'step' (the number of steps taken); delete {latest} to start the run over"
        )
    if not isinstance(info.get("state"), dict):
        raise CheckpointError(f"{state_json} holds no training state; delete {latest} to start the run over")
    if not isinstance(info.get("record", {}), dict):
        raise CheckpointError(
            f"{state_json} has a 'record' that is not an object; delete {latest} to start the run over"
        )
    return d, info


def read_train_record(run_dir: str | os.PathLike[str]) -> tuple[int, dict[str, Any]] | None:
    """``(step, record)`` of the newest training state (the ``record`` given to :func:`save_train_state`; ``{}`` for
    a state written before records existed), read from its ``state.json`` alone; ``None`` when there is no state.

    Raises:
        CheckpointError: a bad ``LATEST`` or ``state.json`` (the message names the file).
    """
    found = _read_state_json(run_dir)
    if found is None:
        return None
    return found[1]["step"], dict(found[1].get("record") or {})


def load_train_state(run_dir: str | os.PathLike[str], model: nn.Module) -> tuple[int, dict[str, Any]] | None:
    """Load the newest complete training state of ``run_dir`` into ``model``; ``None`` if there is none.

    Returns:
        ``(step, state)`` with ``state`` as given to :func:`save_train_state`.
    """
    found = _read_state_json(run_dir)
    if found is None:
        return None
    d, info = found
    latest, state_json, step = Path(run_dir) / "checkpoints" / "LATEST", d / "state.json", info["step"]
    load_weights_into(model, d / "model.safetensors")
    tensors = _load_tensors(d / "state.safetensors")
    try:
        state = _unflatten(info["state"], tensors)
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{state_json} does not match {d / 'state.safetensors'} (a tensor it names is missing); delete {latest} to start the run over"
        ) from None
    return step, state


_STATE_DIR = r"step-\d{8}"


def latest_state_dir(run_dir: str | os.PathLike[str]) -> Path | None:
    """The training-state directory ``checkpoints/LATEST`` names, or ``None`` when there is no ``LATEST``.

    ``LATEST`` holds one name ``step-NNNNNNNN`` written by :func:`save_train_state`; anything else (a path into
    another run such as ``../../other/checkpoints/step-00000012``, bytes that are not UTF-8 text, a directory in
    its place) is refused, so a run never resumes from a state that is not its own.

    Raises:
        CheckpointError: naming ``LATEST`` and what to do.
    """
    root = Path(run_dir) / "checkpoints"
    latest = root / "LATEST"
    if not latest.exists() and not latest.is_symlink():
        return None
    if not latest.is_file():
        raise CheckpointError(
            f"the resume pointer {latest} is not a file (a directory or another kind of entry); remove it to start the run over"
        )
    try:
        text = latest.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CheckpointError(
            f"the resume pointer {latest} is not UTF-8 text (damaged); delete it to start the run over"
        ) from None
    except OSError as err:
        raise CheckpointError(
            f"cannot read the resume pointer {latest} ({err.strerror or err}); check its permissions"
        ) from None
    try:
        return child_path(root, text, _STATE_DIR, f"the resume pointer {latest}")
    except ConfigError as err:
        raise CheckpointError(
            f"{err}, so the run would resume from a state that is not its own; delete {latest} to start the run over"
        ) from None


def eval_name(benchmark: str, mc_dropout: int = 0) -> str:
    """The name of an evaluation's directory under ``<run_dir>/eval``: the benchmark, plus ``+mc<T>`` for an MC
    dropout evaluation with T passes (its files sit beside the deterministic evaluation's)."""
    return f"{benchmark}+mc{int(mc_dropout)}" if mc_dropout else benchmark
