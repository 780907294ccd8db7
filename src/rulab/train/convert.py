"""``rulab convert``: a model trained outside rulab (a ``state_dict`` saved with ``torch.save``) → a rulab checkpoint.

The result is an ordinary run directory, ``<out_dir>/<name>/model.safetensors`` (weights + metadata) with
``meta.json`` and ``config.yaml`` beside it, so ``rulab eval <out_dir>/<name>`` evaluates the model exactly as it
evaluates a model rulab trained (convention 11 in docs/conventions.md).

* The weights file is read with ``torch.load(..., weights_only=True)`` (which refuses arbitrary pickled objects) or
  as safetensors; a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper and the ``module.`` / ``_orig_mod.`` key
  prefixes of DataParallel and ``torch.compile`` are removed.
* The architecture is rebuilt from a registered model name, so the keys must match: rulab's ``resnet18`` /
  ``resnet50`` keep torchvision's module names; ``torchvision:<arch>`` (the ``torchvision`` model entry,
  :mod:`rulab.models.wrapped`) rebuilds any torchvision classifier and takes its state_dict as it is.
* The number of classes and of input channels come from the dataset of the config (``--preset``, overrides), as for
  training; the data splits of ``rulab eval`` (validation split for temperature scaling and tuning) come from it too.
* The normalisation the model was trained with must be stated (``mean``/``std`` in [0, 1] pixel units, ``0``/``1``
  for a model that took [0, 1] pixels): it becomes the model's first layer, as in every rulab model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from rulab.checkpoint import save_model
from rulab.config import ModelCfg, RunCfg, apply_overrides, config_hash, dump_yaml, to_dict
from rulab.data.splits import load_splits
from rulab.errors import CheckpointError, ConfigError
from rulab.eval.validate import validate_run
from rulab.io import atomic_write_json, atomic_write_text, ensure_writable_dir
from rulab.train.loop import build_model, provenance

__all__ = ["convert_weights", "load_state_dict_file", "parse_model_name"]

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")


def parse_model_name(model: str, model_kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``"torchvision:mobilenet_v3_small"`` → ``("torchvision", {"arch": "mobilenet_v3_small", ...})``; a registered
    name is returned as it is with ``model_kwargs``."""
    kwargs = dict(model_kwargs or {})
    if ":" in model:
        family, arch = model.split(":", 1)
        if family != "torchvision" or not arch:
            raise ConfigError(
                f"model '{model}' is neither a registered model (`rulab list models`) nor torchvision:<arch>"
            )
        kwargs["arch"] = arch
        return "torchvision", kwargs
    return model, kwargs


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt``/``.pth`` state_dict (``torch.load(weights_only=True)``) or a ``.safetensors`` file.

    Raises:
        CheckpointError: no file, a pickled model object instead of a state_dict, or no tensors in it.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"no weights file at {p}; pass the .pt/.pth file written by torch.save(model.state_dict(), ...)"
        )
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{p} is not a readable safetensors file ({err})") from None
    else:
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch.load raises pickle.UnpicklingError, RuntimeError, EOFError, ... (no pickle import here)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{p} cannot be read as a state_dict with torch.load(weights_only=True) ({first}); "
                "save model.state_dict() rather than the model object and convert that file"
            ) from None
    for _ in range(2):  # {"state_dict": {...}} or {"model": {"state_dict": ...}}
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{p} holds a {type(obj).__name__}, not a state_dict; save model.state_dict() and convert that file"
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{p} holds no tensors; save model.state_dict() and convert that file")
    out = {}
    for k, v in state.items():
        for prefix in _PREFIXES:
            while k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _match_keys(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor], model: str) -> dict[str, torch.Tensor]:
    """``state`` renamed onto the model's keys: as is, or under ``net.`` (a wrapped torchvision model)."""
    free = {k for k in own if k.startswith("normalize.")}
    for prefix in ("", "net."):
        renamed = {(k if k.startswith("normalize.") else prefix + k): v for k, v in state.items()}
        if set(renamed) - set(own):
            continue
        missing = sorted(set(own) - set(renamed) - free)
        if missing:
            raise CheckpointError(
                f"the weights lack '{missing[0]}' (and {len(missing) - 1} more) of model '{model}'; convert weights of the same architecture"
            )
        return renamed
    unexpected = sorted(set(state) - set(own) - {k[4:] for k in own if k.startswith("net.")})
    raise CheckpointError(
        f"the weights hold '{unexpected[0]}', which model '{model}' does not have; convert weights of the same architecture "
        "(`rulab list models`, or torchvision:<arch> for a torchvision network)"
    )


def convert_weights(
    weights: str | os.PathLike[str],
    model: str,
    cfg: RunCfg,
    *,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    model_overrides: Sequence[str] = (),
    name: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn a state_dict trained outside rulab into a rulab run directory that ``rulab eval`` reads.

    :func:`rulab.api.convert` (``rulab.convert``, ``rulab convert``) resolves ``cfg`` from a preset, a YAML file and
    overrides and calls this.

    Args:
        weights: ``.pt``/``.pth`` (``torch.save(model.state_dict(), path)``) or ``.safetensors``.
        model: a registered model name (``resnet18``) or ``torchvision:<arch>`` (any torchvision classifier).
        cfg: the run config the checkpoint records (dataset, validation split, evaluation settings); its model is
            replaced by ``model``.
        mean: per-channel mean of the input normalisation used in training, [0, 1] pixel units (``0`` with
            ``std=1`` for a model that took [0, 1] pixels). Required unless the weights hold ``normalize.*``.
        std: per-channel standard deviation of that normalisation.
        model_kwargs: further model keyword arguments (``stem="cifar"``; for ``torchvision:<arch>``:
            ``kwargs={...}`` of the torchvision builder, ``head``, ``feature_layer``).
        model_overrides: dotted ``model.*`` overrides, applied to the converted model.
        name: run name (default: the weights file's stem).
        out_dir: where the run directory goes (default: the config's ``out_dir``, ``runs``).
        overwrite: replace an existing checkpoint of the same name.

    Returns:
        The run directory (holding ``model.safetensors``, ``meta.json``, ``config.yaml``).

    Raises:
        RulabError: unreadable weights, keys or shapes that do not fit the architecture, no normalisation given,
            an existing run directory.
    """
    state = load_state_dict_file(weights)
    has_norm = any(k.startswith("normalize.") for k in state)
    if has_norm and mean is not None:
        raise ConfigError("the weights already hold the normalisation (normalize.mean/std); drop mean/std")
    if not has_norm and (mean is None or std is None):
        raise ConfigError(
            "say how the model's input was normalised in training: mean and std in [0, 1] pixel units "
            "(--mean 0.286 --std 0.353; use --mean 0 --std 1 for a model that took [0, 1] pixels)"
        )
    reg_name, kwargs = parse_model_name(model, model_kwargs)
    if not has_norm:

        def as_list(v):
            return [float(v)] if isinstance(v, (int, float)) else [float(x) for x in v]

        kwargs.update(mean=as_list(mean), std=as_list(std))
    cfg = replace(
        cfg,
        name=name or Path(weights).stem,
        model=ModelCfg(name=reg_name, kwargs=kwargs),
        **({"out_dir": str(out_dir)} if out_dir is not None else {}),
    )
    cfg = apply_overrides(cfg, [o.lstrip("-") for o in model_overrides])
    validate_run(cfg)
    run_dir = Path(cfg.out_dir) / cfg.name
    final = run_dir / "model.safetensors"
    if final.exists() and not overwrite:
        raise CheckpointError(f"{final} already exists; choose another --name or pass --overwrite")
    splits = load_splits(cfg.data, cfg.seed)
    net, model_kwargs_full = build_model(cfg, len(splits.classes), splits.train.shape)
    own = net.state_dict()
    renamed = _match_keys(state, own, model)
    wrong = [k for k, v in renamed.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"tensor '{k}' has shape {tuple(renamed[k].shape)} but model '{model}' for {cfg.data.dataset} "
            f"({len(splits.classes)} classes, {splits.train.shape[0]} channels) needs {tuple(own[k].shape)}; "
            "check the architecture, the dataset (--preset / data.dataset) and the class count"
        )
    net.load_state_dict(
        {**{k: v for k, v in own.items() if k not in renamed}, **{k: v.to(own[k].dtype) for k, v in renamed.items()}}
    )
    h = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    meta = {
        "model": reg_name,
        "model_kwargs": model_kwargs_full,
        "classes": splits.classes,
        "input_shape": list(splits.train.shape),
        "mean": getattr(net, "mean", None),
        "std": getattr(net, "std", None),
        "method": "external",
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg),
        "parent_checkpoint": "",
        "seed": cfg.seed,
        "dataset": cfg.data.dataset,
        "converted_from": {"path": str(Path(weights).resolve()), "sha256": h},
        "history": [],
        **provenance("cpu"),
    }
    ensure_writable_dir(run_dir)
    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    atomic_write_json(
        run_dir / "env.json",
        {k: meta[k] for k in ("rulab_version", "torch_version", "git_commit", "device", "python", "threads")},
    )
    save_model(final, net, meta)
    return run_dir
