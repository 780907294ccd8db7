"""Typed, frozen run configuration: the dataclasses, their conversion from and to plain data and YAML, dotted
``--a.b=value`` overrides, the config hash, and the checks of values that need nothing but the config itself.

Everything is validated before anything runs (convention 9 in docs/conventions.md): an unknown key, a
wrong type or an impossible value raises :class:`rulab.errors.ConfigError` with one line that names the key and
the valid choices. This module is the bottom layer, so it checks only what it can see: types, ranges and fixed
choices (:func:`validate_values`). The names a config looks up in a registry (dataset, model, method, detectors,
benchmark, protocol), their keyword arguments, the shift suite and a fine-tuning parent's architecture are checked
by :func:`rulab.eval.validate.validate_run`, which calls :func:`validate_values` first; presets, YAML files and
overrides are resolved by :func:`rulab.presets.load.load_config` (preset → YAML → overrides → ``validate_run``).

One cohesive concern (the run configuration), which is why it is longer than most modules: about a third is the
dataclasses with a comment per field, the rest is the conversion, override and value-check code that every config
goes through.

Example:
    >>> from rulab.presets import load_config
    >>> cfg = load_config("fmnist-plain", overrides=["optim.lr=0.05", "train.epochs=2"])
    >>> cfg.optim.lr
    0.05
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from rulab.checks import brief, check_device, check_int, check_name, check_number, check_seed, check_text, quoted
from rulab.errors import ConfigError

__all__ = [
    "AugmentCfg",
    "DataCfg",
    "ModelCfg",
    "OptimCfg",
    "MethodCfg",
    "TrainCfg",
    "EvalCfg",
    "RunCfg",
    "apply_overrides",
    "from_dict",
    "to_dict",
    "config_hash",
    "config_diff",
    "validate_values",
    "check_choice",
    "check_registered",
    "check_kwargs",
    "check_leaves",
    "validate_eval",
    "read_yaml",
    "dump_yaml",
    "fields_of",
    "KEEP_BEST",
    "FARCONF_TESTS",
]


@dataclass(frozen=True)
class AugmentCfg:
    """Batched, seeded training augmentation (rulab.data.augment). Probabilities in [0, 1]; pixels as units."""

    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip (W2 "basic": 0.4)
    crop_padding: int = 0  # random crop with this zero padding in pixels (CIFAR: 4)
    rotate_deg: float = 0.0  # maximum rotation angle in degrees (W2: 20)
    rotate_p: float = 0.0  # probability of applying a rotation (W2: 0.4)
    # resampling of the rotation: "bilinear" or "nearest" (torchvision RandomRotation's default, which W2 used)
    rotate_interp: str = field(default="bilinear", metadata={"hash_omit_default": True})


@dataclass(frozen=True)
class DataCfg:
    """Which data a run trains on."""

    dataset: str = "fashion_mnist"
    classes: tuple[int, ...] = ()  # keep only these original classes, relabelled 0..k-1 in this order
    exclude_classes: tuple[int, ...] = ()  # drop these original classes (W1 pre-training class exclusion)
    train_subset: int = 0  # use only this many labelled training examples (0 = all), stratified, seeded
    val_size: int = 5000  # examples held out of the training split for validation and temperature scaling
    val_split: str = "random"  # "random" (seeded), "tail" (contiguous last examples, as W1's ``utils/validation_dataset.py``) or "official" (the dataset's own validation split; val_size is ignored)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    root: str = ""  # data directory; "" = $RULAB_DATA or ~/.cache/rulab
    # keyword arguments of the dataset's factory for every split (checked against its signature), e.g. {"size": 224} for oxford_pets
    kwargs: Mapping[str, Any] = field(default_factory=dict, metadata={"hash_omit_default": True})


@dataclass(frozen=True)
class ModelCfg:
    """A registered model and its keyword arguments (checked against the entrypoint's signature)."""

    name: str = "fastcnn"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # normalisation statistics: "" = model.kwargs (or the model's default); "train" = the per-channel mean and std of the
    # run's training split, computed before training and stored in the checkpoint (W2's from-scratch runs)
    stats: str = field(default="", metadata={"hash_omit_default": True})


@dataclass(frozen=True)
class OptimCfg:
    """Optimizer and learning-rate schedule (rulab.train.optim). Step counts are optimizer steps."""

    name: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.1  # peak learning rate (for batch_size as given; no implicit scaling)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # coupled L2 for SGD, decoupled for AdamW
    betas: tuple[float, ...] = (0.9, 0.999)
    schedule: str = "cosine"  # "cosine" (W1, per iteration to lr_floor), "step" (W3), "onecycle", "constant"
    lr_floor: float = 1e-6  # absolute final learning rate of "cosine" (W1: 1e-6)
    warmup_frac: float = 0.0  # fraction of steps of linear warm-up ("onecycle": where the peak is)
    milestones: tuple[float, ...] = (0.5, 0.75, 0.9)  # "step": fractions of all steps where lr is multiplied by gamma
    gamma: float = 0.1
    backbone_lr_mult: float = 1.0  # learning-rate multiplier for everything but the head (fine-tuning)
    no_decay_norm: bool = False  # exclude normalisation-layer parameters from weight decay (W3)
    grad_clip: float = 0.0  # max gradient norm, 0 = off


@dataclass(frozen=True)
class MethodCfg:
    """A registered training objective and its keyword arguments (checked against its signature)."""

    name: str = "erm"
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainCfg:
    """The training loop (rulab.train.loop)."""

    epochs: int = 5
    batch_size: int = 256
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs); for smoke tests
    eval_every: int = 1  # evaluate on the validation split every this many epochs (0 = never)
    checkpoint_every: int = 0  # also checkpoint every this many steps (0 = only at epoch ends)
    init_from: str = ""  # checkpoint (run directory or .safetensors) to initialise the weights from
    reset_head: bool = False  # replace the head by a fresh Linear for the new classes (fine-tuning)
    freeze_bn: bool = False  # keep BatchNorm layers in eval mode with frozen affine parameters
    amp: str = "none"  # "none", "bf16" or "fp16" mixed precision
    channels_last: bool = False
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under torch.distributed
    deterministic: bool = True  # torch.use_deterministic_algorithms where supported
    # split every batch into this many micro-batches, one backward pass each, one optimizer step (memory; and on
    # CPUs a DDP step over W processes equals a one-process step with accum_steps=W bit for bit, see the loop)
    accum_steps: int = field(default=1, metadata={"hash_omit_default": True})
    # drop the last incomplete batch of every epoch (False: W1's loaders, whose last batch is smaller)
    drop_last: bool = field(default=True, metadata={"hash_omit_default": True})
    # the fresh head of a fine-tuning run (train.reset_head): "model" (the model's own initialisation; WRN and DenseNet
    # zero the bias) or "pytorch" (nn.Linear's default, weight and bias uniform in ±1/sqrt(fan_in): W1's tune.py)
    head_init: str = field(default="model", metadata={"hash_omit_default": True})
    # keep the weights of the epoch with the best value of this validation metric ("val_acc", "val_nll", "val_ece")
    # instead of the last epoch's (W2); "" = the last epoch. The kept epoch is recorded in the checkpoint and results.
    keep_best: str = field(default="", metadata={"hash_omit_default": True})


@dataclass(frozen=True)
class EvalCfg:
    """What ``rulab eval`` measures on a checkpoint (rulab.eval)."""

    benchmark: str = "fmnist"  # BENCHMARKS entry: ID test set, validation-OOD set(s), test OOD sets, protocol
    detectors: tuple[str, ...] = (
        "msp",
        "maxlogit",
        "energy",
        "entropy",
        "odin",
        "mahalanobis",
        "knn",
        "react",
        "gen",
        "vim",
        "klm",
    )
    protocol: str = ""  # override the benchmark's protocol ("hendrycks", "odin", "hein", "full")
    shift: str = "fmnist-default"  # shift suite ("" = none)
    farconf: bool = True  # alpha-scaling, adversarial noise and adversarial samples
    temperature: bool = True  # also report calibration after temperature scaling fitted on the validation split
    n_ood: int = 0  # cap on OOD examples per set (0 = protocol default)
    batch_size: int = (
        256  # images per forward pass: ~256 keeps a small CNN's activations in the CPU cache (2x faster than 1000)
    )
    alpha_trials: int = 200  # alpha-scaling trials (Hein: 10,000)
    adv_eps: float = 0.3  # adversarial noise / samples: L-inf radius in pixels
    adv_steps: int = 40
    adv_n: int = 500  # examples attacked per set
    # PGD step in pixel units; 0 = Madry et al.'s 2.5·adv_eps/adv_steps (W1's adversarial evaluation: 2/255)
    adv_step_size: float = field(default=0.0, metadata={"hash_omit_default": True})
    # PGD runs from this many random starts; an example counts as broken if any start breaks it (Madry et al. 2018)
    adv_restarts: int = field(default=1, metadata={"hash_omit_default": True})
    # which far-away / worst-case tests eval.farconf runs: "alpha" (alpha scaling), "noise" (adversarial noise),
    # "samples" (adversarial samples: resistance, clean and adversarial accuracy)
    farconf_tests: tuple[str, ...] = field(default=("alpha", "noise", "samples"), metadata={"hash_omit_default": True})
    # further PGD step counts for the adversarial noise only (W3 runs 80 and 200): rows "adv_<noise>_<steps>"
    adv_noise_steps: tuple[int, ...] = field(default=(), metadata={"hash_omit_default": True})
    detector_kwargs: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict
    )  # per detector, e.g. {"odin": {"search": "coarse"}}
    flip_tta: bool = False  # test-time augmentation: average each image with its horizontal mirror (rulab.models.tta)
    bootstrap: int = field(
        default=1000, metadata={"hash_omit_default": True}
    )  # resamples of the per-image 95% intervals (0 = none; docs/metrics.md)
    # MC dropout (rulab.models.mc_dropout): evaluate the mean predictive of this many seeded dropout passes (0 = off)
    mc_dropout: int = field(default=0, metadata={"hash_omit_default": True})


@dataclass(frozen=True)
class RunCfg:
    """Everything that defines one training-and-evaluation run."""

    name: str = "run"
    preset: str = ""
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", "mps"
    out_dir: str = "runs"
    parity: bool = False  # reproduce the originals' quirks (register of convention 5, docs/conventions.md) instead of the fixed defaults
    data: DataCfg = field(default_factory=DataCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    method: MethodCfg = field(default_factory=MethodCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)


# --------------------------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin in (Mapping, dict) or tp is dict:
        return "mapping"
    if is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise errors[0] if errors else ConfigError(f"config key '{key}' has an invalid value {brief(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {brief(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_int(f"config key '{key}'", value)
        if isinstance(value, float) and value.is_integer():
            return check_int(f"config key '{key}'", int(value))
        raise ConfigError(f"config key '{key}' must be an integer, got {brief(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return check_number(f"config key '{key}'", value)  # finite: lr=inf or nan is refused here
        raise ConfigError(f"config key '{key}' must be a number, got {brief(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}' must be a string, got {brief(value)}")
    if origin is tuple:
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                value = [value]
            else:
                raise ConfigError(f"config key '{key}' must be a list of {_type_name(inner)}, got {brief(value)}")
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping of names to values, got {brief(value)}")
        return dict(value)
    if is_dataclass(tp):
        if is_dataclass(value):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' is a section; give it a mapping, got {brief(value)}")
        return from_dict(tp, value, prefix=key)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(key: str, valid: Sequence[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {quoted((parent + '.' if parent else '') + close[0])}?)" if close else ""
    where = f" under {quoted(parent)}" if parent else ""
    return ConfigError(f"unknown config key {quoted(key)}{hint}; valid keys{where}: {', '.join(valid)}")


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a (nested) mapping, checking every key and type."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{prefix or 'root'}' must be a mapping, got {brief(data)}")
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise _unknown_key(full, names)
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts/lists (JSON- and YAML-serialisable)."""

    def conv(v: Any) -> Any:
        if is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def _hash_dict(cfg: Any) -> Any:
    """``to_dict(cfg)`` without the fields marked ``hash_omit_default`` that hold their default value.

    Keys added after rulab 0.1 carry that mark, so a config that does not use them hashes as before and upgrading
    rulab does not change the run ids of existing runs (a study would otherwise compute every cell again).
    """
    if not is_dataclass(cfg):
        return to_dict(cfg)
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("hash_omit_default") and value == _default_of(f):
            continue
        out[f.name] = _hash_dict(value) if is_dataclass(value) else to_dict(value)
    return out


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_hash(cfg: RunCfg) -> str:
    """A short stable hash of everything that changes what a run computes (not its name or output dir)."""
    d = _hash_dict(cfg)
    for k in ("name", "out_dir", "device"):
        d.pop(k, None)
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def config_diff(old: RunCfg, new: RunCfg) -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between two configs, as ``{key: (old value, new value)}``, over exactly
    what :func:`config_hash` covers (so the diff is empty exactly when the hashes agree): ``name``, ``out_dir``
    and ``device`` are left out, and a key added after rulab 0.1 counts only where it is not at its default.
    """

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v and not key.endswith("kwargs"):
                out.update(flat(v, key))
            else:
                out[key] = v
        return out

    a, b = _hash_dict(old), _hash_dict(new)
    for d in (a, b):
        for k in ("name", "out_dir", "device"):
            d.pop(k, None)
    fa, fb = flat(a), flat(b)

    def same(k: str) -> bool:  # compared as the hash sees them: JSON with sorted keys
        canon = [json.dumps(d.get(k), sort_keys=True, default=str) for d in (fa, fb)]
        return (k in fa) == (k in fb) and canon[0] == canon[1]

    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if not same(k)}


def dump_yaml(cfg: RunCfg) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# --------------------------------------------------------------------------------------------- overrides


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() != "" else ""
    except yaml.YAMLError:
        return text


def _set_path(cfg: Any, path: list[str], value: Any, full: str) -> Any:
    """Return a copy of dataclass ``cfg`` with the dotted ``path`` set to ``value`` (type-checked)."""
    head, rest = path[0], path[1:]
    hints = _hints(type(cfg))
    if head not in hints:
        raise _unknown_key(".".join(full.split(".")[: len(full.split(".")) - len(rest)]), [f.name for f in fields(cfg)])
    tp = hints[head]
    current = getattr(cfg, head)
    if rest:
        if is_dataclass(current):
            return replace(cfg, **{head: _set_path(current, rest, value, full)})
        if isinstance(current, Mapping):  # free-form kwargs: model.kwargs.dropout=0.3
            new = dict(current)
            node = new
            for p in rest[:-1]:
                node[p] = dict(node.get(p, {})) if isinstance(node.get(p), Mapping) else {}
                node = node[p]
            node[rest[-1]] = value
            return replace(cfg, **{head: new})
        raise ConfigError(f"config key {quoted(full)} goes below '{head}', which is a {_type_name(tp)}, not a section")
    if is_dataclass(current) and isinstance(value, Mapping):
        merged = to_dict(current)
        _deep_update(merged, value)
        return replace(cfg, **{head: from_dict(type(current), merged, prefix=full)})
    return replace(cfg, **{head: _coerce(value, tp, full)})


def _deep_update(base: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def apply_overrides(cfg: RunCfg, overrides: Sequence[str] | Mapping[str, Any]) -> RunCfg:
    """Apply ``["a.b=value", ...]`` (values parsed as YAML scalars/lists) or a nested mapping to ``cfg``."""
    if isinstance(overrides, Mapping):
        for key, value in _flatten(overrides):
            cfg = _set_path(cfg, key.split("."), value, key)
        return cfg
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise ConfigError(f"override {quoted(item)} must look like key=value, e.g. optim.lr=0.05")
        key, raw = text.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {quoted(item)} has an empty key; write it as key=value, e.g. train.epochs=3")
        cfg = _set_path(cfg, key.split("."), _parse_value(raw), key)
    return cfg


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        # kwargs mappings are set as a whole one level down so their keys stay free-form
        if isinstance(v, Mapping) and not key.endswith("kwargs"):
            out.extend(_flatten(v, key))
        else:
            out.append((key, v))
    return out


# --------------------------------------------------------------------------------------------- loading


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (``{}`` for an empty file), with one clear error per problem."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; check the path")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}; fix the syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not UTF-8 text; give a YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys to values at the top level")
    return data


# --------------------------------------------------------------------------------------------- validation

KEEP_BEST: dict[str, bool] = {"val_acc": True, "val_nll": False, "val_ece": False}
"""Validation metrics ``train.keep_best`` may select an epoch by, and whether higher is better."""
FARCONF_TESTS = ("alpha", "noise", "samples")
"""The parts of the far-away / worst-case evaluation ``eval.farconf_tests`` may name (rulab.eval.farconf)."""


def _positive(key: str, value: float, strict: bool = True) -> None:
    if value != value or (value <= 0 if strict else value < 0):
        bound = "> 0" if strict else ">= 0"
        raise ConfigError(f"config key '{key}' must be {bound}, got {value}")


def _prob(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key '{key}' is a probability and must lie in [0, 1], got {value}")


def check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    """Raise a :class:`ConfigError` naming ``key``, the closest choice and all choices when ``value`` is not one."""
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        shown = f"'{value}'" if isinstance(value, str) and value.isprintable() and len(value) <= 60 else brief(value)
        raise ConfigError(f"config key '{key}' has unknown value {shown}{hint}; valid choices: {', '.join(choices)}")


def check_leaves(cfg: Any, prefix: str = "") -> None:
    """Check every leaf of a config dataclass that its type alone cannot: numbers are finite and fit in 64 bits, and
    every text (names, paths, the free-form ``kwargs`` values) is printable, without a NUL byte or control character.

    Configs built by :func:`from_dict` and :func:`apply_overrides` are checked as they are read; this catches the
    same in a dataclass built directly (``RunCfg(optim=OptimCfg(lr=math.inf))``).

    Raises:
        ConfigError: naming the dotted key.
    """

    def walk(value: Any, key: str) -> None:
        if is_dataclass(value):
            for f in fields(value):
                walk(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(k, str):
                    check_text(f"a key of config key '{key}'", k)
                walk(v, f"{key}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        elif isinstance(value, str):
            check_text(f"config key '{key}'", value)
        elif isinstance(value, float) and not _in_kwargs(key):
            check_number(f"config key '{key}'", value)
        elif isinstance(value, int) and not isinstance(value, bool) and not _in_kwargs(key):
            check_int(f"config key '{key}'", value)

    walk(cfg, prefix)


def _in_kwargs(key: str) -> bool:
    """Whether a dotted key lies in a free-form ``kwargs`` mapping (its numbers are checked by the entry's own types)."""
    return "kwargs." in key


def check_registered(key: str, value: str, registry: Any) -> None:
    """:func:`check_choice` against the names of ``registry`` (a :class:`rulab.registry.Registry` the caller passes)."""
    check_choice(key, value, registry.list())


def check_kwargs(key: str, registry: Any, name: str, kwargs: Mapping[str, Any]) -> None:
    """Check ``kwargs`` against the signature of the factory ``name`` of ``registry``: names, then annotated types."""
    bad = registry.unknown_kwargs(name, dict(kwargs))
    if bad:
        valid = ", ".join(registry.parameters(name)) or "(none)"
        raise ConfigError(
            f"config key '{key}.{bad[0]}' is not a parameter of {registry.kind} '{name}'; valid parameters: {valid}"
        )
    params = registry.parameters(name)
    try:
        hints = typing.get_type_hints(
            registry.get(name).__init__ if isinstance(registry.get(name), type) else registry.get(name)
        )
    except Exception:  # noqa: BLE001 - unresolved annotations: skip type checks, names were checked
        hints = {}
    for k, v in kwargs.items():
        if k in hints and k in params:
            _coerce(v, hints[k], f"{key}.{k}")


def validate_values(cfg: RunCfg) -> RunCfg:
    """Check every value that a dataclass type cannot and that needs nothing beyond the config: ranges, fixed
    choices, combinations, and that ``train.init_from`` exists.

    Registry names, keyword arguments, the shift suite and the fine-tuning parent are checked on top of this by
    :func:`rulab.eval.validate.validate_run`, which is what loading a config, training and evaluating call.

    Raises:
        ConfigError: naming the first bad key and its valid values.
    """
    check_leaves(cfg)
    check_name(cfg.name)
    check_seed("config key 'seed'", cfg.seed)
    o, t, d, e = cfg.optim, cfg.train, cfg.data, cfg.eval
    check_choice("optim.name", o.name, ["sgd", "adamw"])
    check_choice("optim.schedule", o.schedule, ["cosine", "step", "onecycle", "constant"])
    _positive("optim.lr", o.lr)
    _positive("optim.lr_floor", o.lr_floor, strict=False)
    if o.schedule == "cosine" and o.lr_floor > o.lr:
        raise ConfigError(f"config key 'optim.lr_floor' ({o.lr_floor}) must not exceed optim.lr ({o.lr})")
    _positive("optim.weight_decay", o.weight_decay, strict=False)
    _prob("optim.momentum", o.momentum)
    _prob("optim.warmup_frac", o.warmup_frac)
    _positive("optim.gamma", o.gamma)
    _positive("optim.backbone_lr_mult", o.backbone_lr_mult, strict=False)
    _positive("optim.grad_clip", o.grad_clip, strict=False)
    if any(not 0.0 < m < 1.0 for m in o.milestones) or list(o.milestones) != sorted(o.milestones):
        raise ConfigError(
            f"config key 'optim.milestones' must be increasing fractions in (0, 1), got {list(o.milestones)}"
        )
    if len(o.betas) != 2 or any(not 0.0 <= b < 1.0 for b in o.betas):
        raise ConfigError(f"config key 'optim.betas' must be two numbers in [0, 1), got {list(o.betas)}")
    if o.nesterov and o.name == "sgd" and o.momentum <= 0:
        raise ConfigError(
            "config key 'optim.nesterov' needs optim.momentum > 0; set optim.nesterov=false or a momentum"
        )
    if t.batch_size < 1:
        raise ConfigError(f"config key 'train.batch_size' must be at least 1, got {t.batch_size}")
    if t.accum_steps < 1 or t.batch_size % t.accum_steps:
        raise ConfigError(
            f"config key 'train.accum_steps' must be a divisor of train.batch_size ({t.batch_size}) of at least 1, got {t.accum_steps}"
        )
    for k in ("epochs", "max_steps", "eval_every", "checkpoint_every"):
        if getattr(t, k) < 0:
            raise ConfigError(f"config key 'train.{k}' must be >= 0, got {getattr(t, k)}")
    if t.epochs == 0 and t.max_steps == 0:
        raise ConfigError("config keys 'train.epochs' and 'train.max_steps' are both 0; set at least one of them")
    check_choice("train.amp", t.amp, ["none", "bf16", "fp16"])
    if t.reset_head and not t.init_from:
        raise ConfigError("config key 'train.reset_head' needs train.init_from (the checkpoint to fine-tune)")
    if t.init_from and not Path(t.init_from).exists():
        raise ConfigError(
            f"config key 'train.init_from' points to {t.init_from}, which does not exist; give a run directory or a .safetensors file"
        )
    check_choice("data.val_split", d.val_split, ["random", "tail", "official"])
    check_choice("data.augment.rotate_interp", d.augment.rotate_interp, ["bilinear", "nearest"])
    check_choice("model.stats", cfg.model.stats, ["", "train"])
    check_choice("train.head_init", t.head_init, ["model", "pytorch"])
    if t.keep_best:
        check_choice("train.keep_best", t.keep_best, list(KEEP_BEST))
        if t.eval_every != 1:
            raise ConfigError(
                "config key 'train.keep_best' compares the validation metric of every epoch; set train.eval_every=1"
            )
        if d.val_size == 0 and d.val_split != "official":
            raise ConfigError(
                "config key 'train.keep_best' selects an epoch on the validation split; set data.val_size > 0 or data.val_split=official"
            )
    for k in ("val_size", "train_subset"):
        if getattr(d, k) < 0:
            raise ConfigError(f"config key 'data.{k}' must be >= 0, got {getattr(d, k)}")
    if set(d.classes) & set(d.exclude_classes):
        raise ConfigError(
            "config keys 'data.classes' and 'data.exclude_classes' overlap; a class cannot be kept and dropped"
        )
    if len(set(d.classes)) != len(d.classes) or any(c < 0 for c in d.classes + d.exclude_classes):
        raise ConfigError(f"config key 'data.classes' must hold distinct class indices >= 0, got {list(d.classes)}")
    if len(d.classes) == 1:
        raise ConfigError(
            f"config key 'data.classes' keeps one class ({d.classes[0]}), but a classifier needs at least two; list two or more, or [] for all"
        )
    a = d.augment
    for k in ("hflip", "vflip", "rotate_p"):
        _prob(f"data.augment.{k}", getattr(a, k))
    _positive("data.augment.crop_padding", a.crop_padding, strict=False)
    _positive("data.augment.rotate_deg", a.rotate_deg, strict=False)
    check_choice("device", cfg.device.split(":")[0], ["auto", "cpu", "cuda", "mps"])
    check_device("config key 'device'", cfg.device)
    validate_eval(e)
    return cfg


def validate_eval(e: EvalCfg) -> EvalCfg:
    """The value checks of the ``eval`` section alone (:func:`validate_values` runs them on a whole run config;
    :func:`rulab.eval.user.evaluate_model` on the settings it builds from its arguments).

    Raises:
        ConfigError: naming the first bad key.
    """
    check_leaves(e, "eval")
    for det, kwargs in e.detector_kwargs.items():
        if det not in e.detectors:
            raise ConfigError(
                f"config key 'eval.detector_kwargs.{det}' names a detector that eval.detectors does not run; valid choices: {', '.join(e.detectors)}"
            )
        if not isinstance(kwargs, Mapping):
            raise ConfigError(
                f"config key 'eval.detector_kwargs.{det}' must map parameter names to values, got {brief(kwargs)}"
            )
    for k in ("n_ood", "alpha_trials", "adv_steps", "adv_n", "bootstrap", "mc_dropout"):
        if getattr(e, k) < 0:
            raise ConfigError(f"config key 'eval.{k}' must be >= 0, got {getattr(e, k)}")
    if (
        any(k < 1 for k in e.adv_noise_steps)
        or len(set(e.adv_noise_steps)) != len(e.adv_noise_steps)
        or e.adv_steps in e.adv_noise_steps
    ):
        raise ConfigError(
            f"config key 'eval.adv_noise_steps' must list distinct step counts >= 1 other than eval.adv_steps ({e.adv_steps}), got {list(e.adv_noise_steps)}"
        )
    _positive("eval.batch_size", e.batch_size)
    _positive("eval.adv_eps", e.adv_eps, strict=False)
    _positive("eval.adv_step_size", e.adv_step_size, strict=False)
    if e.adv_restarts < 1:
        raise ConfigError(f"config key 'eval.adv_restarts' must be at least 1, got {e.adv_restarts}")
    for i, test in enumerate(e.farconf_tests):
        check_choice(f"eval.farconf_tests[{i}]", test, list(FARCONF_TESTS))
    if e.farconf and not e.farconf_tests:
        raise ConfigError(
            "config key 'eval.farconf_tests' is empty while eval.farconf is true; name a test (alpha, noise, samples) or set eval.farconf=false"
        )
    return e


def fields_of(cls: type) -> list[str]:
    """Dotted names of every leaf key of a config dataclass (for help texts and error messages)."""
    out = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if is_dataclass(tp):
            out.extend(f"{f.name}.{sub}" for sub in fields_of(tp))
        else:
            out.append(f.name)
    return out
