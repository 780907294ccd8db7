"""Resolve a run configuration: a preset by name → a YAML file → dotted overrides, then check it completely.

This is the one place that turns names into a :class:`~rulab.config.RunCfg`; the command line, :mod:`rulab.api`
and the study runner call it. It sits with the presets because the ``PRESETS`` registry's entries are here.

Example:
    >>> cfg = load_config("fmnist-plain", overrides=["optim.lr=0.05", "train.epochs=2"])
    >>> cfg.optim.lr
    0.05
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from rulab.checks import brief
from rulab.config import RunCfg, apply_overrides, read_yaml
from rulab.errors import ConfigError
from rulab.eval.validate import validate_run
from rulab.registry import PRESETS, UnknownNameError

__all__ = ["preset_config", "load_config"]


def preset_config(name: str) -> RunCfg:
    """The :class:`RunCfg` of a registered preset."""
    try:
        factory = PRESETS.get(name)
    except UnknownNameError as err:
        raise ConfigError(str(err)) from None
    cfg = factory()
    return replace(cfg, preset=name, name=cfg.name if cfg.name != "run" else name)


def load_config(
    preset: str | None = None,
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    check: bool = True,
) -> RunCfg:
    """Resolve a run configuration: preset → YAML file → overrides, then :func:`~rulab.eval.validate.validate_run`.

    Args:
        preset: a registered preset name (``rulab list presets``); the YAML file may name one instead.
        path: a YAML file with any subset of the config keys, nested or dotted.
        overrides: ``["section.key=value", ...]``.
        check: run :func:`~rulab.eval.validate.validate_run` (registry names, value ranges, the fine-tuning parent).
    """
    data = read_yaml(path) if path is not None else {}
    file_preset = data.pop("preset", None)
    if file_preset is not None and not isinstance(file_preset, str):
        raise ConfigError(
            f"'preset' in {path} must be one preset name (`rulab list presets`), got {brief(file_preset)}; "
            "a config file names at most one preset"
        )
    if preset is not None and not isinstance(preset, str):
        raise ConfigError(f"the preset must be one name (`rulab list presets`), got {brief(preset)}")
    if preset and file_preset and preset != file_preset:
        raise ConfigError(
            f"the preset '{preset}' given on the command line differs from '{file_preset}' in {path}; keep one"
        )
    name = preset or file_preset
    cfg = preset_config(name) if name else RunCfg()
    if data:
        cfg = apply_overrides(cfg, data)
    cfg = apply_overrides(cfg, overrides)
    if check:
        validate_run(cfg)
    return cfg
