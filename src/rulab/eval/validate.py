"""The complete check of a run configuration: its values, every name it looks up in a registry, and a fine-tuning
parent's architecture, all before anything runs (convention 9 in docs/conventions.md).

:func:`rulab.config.validate_values` checks what the config alone can tell (types, ranges, fixed choices); this
module adds the checks that need the registered entries: the dataset, model, method, detectors, benchmark and
protocol names with their keyword arguments (:class:`~rulab.registry.Registry` lookups), the shift suite
(:data:`rulab.data.corruptions.SHIFT_SUITES`) and the parent checkpoint of ``train.init_from``
(:func:`rulab.checkpoint.check_parent`, which reads only the file's header). It lives in ``eval`` because that is
the lowest layer that sees every registry a run config names (the benchmarks and protocols are evaluation's own);
training (:func:`rulab.train.loop.fit`), checkpoint evaluation, studies and :func:`rulab.presets.load.load_config`
call it.
"""

from __future__ import annotations

from rulab.checkpoint import check_parent
from rulab.config import RunCfg, check_choice, check_kwargs, check_registered, validate_values
from rulab.data import corruptions
from rulab.errors import ConfigError, RulabError
from rulab.registry import BENCHMARKS, DATASETS, DETECTORS, METHODS, MODELS, PROTOCOLS

__all__ = ["validate_run"]


def validate_run(cfg: RunCfg) -> RunCfg:
    """Check ``cfg`` completely and return it unchanged.

    Raises:
        ConfigError: naming the first bad key and its valid values.
        CheckpointError: ``train.init_from`` is not a rulab checkpoint of the configured model.
    """
    d, e = cfg.data, cfg.eval
    check_registered("data.dataset", d.dataset, DATASETS)
    reserved = sorted({"split", "root"} & set(d.kwargs))
    if reserved:
        raise ConfigError(
            f"config key 'data.kwargs.{reserved[0]}' is set by rulab for every split; use data.root for the data directory"
        )
    check_kwargs("data.kwargs", DATASETS, d.dataset, d.kwargs)
    check_registered("model.name", cfg.model.name, MODELS)
    check_kwargs("model.kwargs", MODELS, cfg.model.name, cfg.model.kwargs)
    check_registered("method.name", cfg.method.name, METHODS)
    check_kwargs("method.kwargs", METHODS, cfg.method.name, cfg.method.kwargs)
    validate_values(cfg)
    if (
        cfg.train.init_from
    ):  # the parent's architecture, from its header alone, before any data is loaded or directory made
        check_parent(cfg.train.init_from, cfg.model.name)
    check_registered("eval.benchmark", e.benchmark, BENCHMARKS)
    for i, det in enumerate(e.detectors):
        check_registered(f"eval.detectors[{i}]", det, DETECTORS)
    for det, kwargs in e.detector_kwargs.items():
        check_kwargs(f"eval.detector_kwargs.{det}", DETECTORS, det, kwargs)
        try:  # constructors only check their arguments: a bad value fails here, before anything runs
            DETECTORS.create(det, **kwargs)
        except RulabError as err:
            raise ConfigError(f"config key 'eval.detector_kwargs.{det}': {err}") from None
    if e.protocol:
        check_registered("eval.protocol", e.protocol, PROTOCOLS)
    if e.shift:
        check_choice("eval.shift", e.shift, [suite.name for suite in corruptions.SHIFT_SUITES])  # read at call time
    return cfg
