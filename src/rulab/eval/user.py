"""Bring your own model and data: :func:`evaluate_model` (``rulab.evaluate``) runs the full evaluation of
:func:`rulab.eval.evaluate.run_evaluation` on any ``nn.Module`` that maps images to logits and on data in any common form.

What it does:

1. The model is wrapped into the rulab contract (:func:`rulab.models.wrapped.wrap_model`): its normalisation
   becomes a first layer, features come from the input of its final linear layer, a named graph node or a
   function. A rulab model is used as it is.
2. Every dataset is converted to pixels (:func:`rulab.data.user.as_dataset`): 8-bit data as ``uint8``, other float
   data as ``float32`` [0, 1] pixels exactly as given (never rounded to 8 bits; only the corrupted copies of the
   covariate-shift evaluation are 8-bit, as their benchmarks define them). Data given normalised (``pixels=False``)
   is mapped back to [0, 1] pixels with the same ``mean``/``std`` that the model's new first layer applies, so the
   model sees exactly what it was trained on and ODIN's ε, adversarial ε and corruption severities are in pixel
   units.
3. A :class:`~rulab.eval.benchmarks.Benchmark` is made on the fly: the ID test set, the OOD sets (your data, or
   names of rulab's registered OOD sets such as ``"gaussian"`` or ``"textures"``, built at the test images' shape),
   the validation-OOD sets used only to tune detector hyperparameters, and the protocol.
4. The evaluation is the same code path as ``rulab eval`` on a checkpoint, so the numbers equal those of the same
   model converted with ``rulab convert`` and evaluated from the command line on the same data.

Example:
    >>> import rulab, torchvision
    >>> net = torchvision.models.resnet18(num_classes=10)            # trained elsewhere, input normalised
    >>> table = rulab.evaluate(net, id_test=(x_test, y_test), ood={"svhn": x_svhn, "noise": "gaussian"},
    ...                        id_train=(x_train, y_train), id_val=(x_val, y_val), ood_val=["photos"],
    ...                        mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), detectors=["msp", "energy", "knn"])
    >>> print(table.summary()); rulab.reports.evaluation_report(table, "report.html")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rulab.checks import brief, check_int, check_seed, check_text
from rulab.config import EvalCfg, validate_eval
from rulab.data.tensors import TensorDataset
from rulab.data.user import as_dataset
from rulab.errors import ConfigError, InputError
from rulab.results.table import ResultTable

__all__ = ["evaluate_model", "resolve_ood"]

DataLike = Any
"""Anything :func:`rulab.data.user.as_dataset` reads: TensorDataset, tensor/array images, ``(images, labels)``,
a ``Dataset``, a ``DataLoader`` or an image folder."""


def _registered_ood(value: Any) -> bool:
    if not isinstance(value, str) or Path(value).exists():
        return False
    from rulab.registry import OOD_SETS

    return value in OOD_SETS


def resolve_ood(
    sets: Mapping[str, DataLike] | Sequence[str] | str | None,
    what: str,
    shape: tuple[int, int, int],
    pixels: bool,
    mean: Any,
    std: Any,
) -> tuple[tuple[str, ...], dict[str, TensorDataset]]:
    """Split an ``ood=`` / ``ood_val=`` argument into (names in order, ready-made datasets by name).

    A name whose value is a registered OOD set (``"gaussian"``, or a list of such names) is left for the evaluation to
    build with the run's seed at the ID images' shape; anything else is converted with :func:`as_dataset` (folders
    are read at the ID images' size and channel count).
    """
    if sets is None:
        return (), {}
    if isinstance(sets, str):
        sets = [sets]
    if not isinstance(sets, Mapping):
        if not isinstance(sets, (list, tuple)):
            raise InputError(
                f"{what} must be a list of registered OOD set names or a dict {{'name': data}}, got {brief(sets)}"
            )
        items: list[tuple[str, Any]] = []
        for name in sets:
            if not isinstance(name, str):
                raise InputError(
                    f"{what} given as a list takes names of registered OOD sets (`rulab list ood`), got {brief(name)}; "
                    f"pass your own data as {what}={{'name': data}}"
                )
            if not _registered_ood(name):
                from rulab.registry import OOD_SETS

                raise ConfigError(
                    f"'{name}' in {what} is not a registered OOD set ({', '.join(OOD_SETS.list())}); pass your own data as {what}={{'name': data}}"
                )
            items.append((name, name))
    else:
        items = []
        for k, v in sets.items():
            if not isinstance(k, str):
                raise InputError(f"the keys of {what} name the sets and must be text, got {brief(k)}")
            check_text(f"the name of a set in {what}", k)
            items.append((k, v))
    names: list[str] = []
    data: dict[str, TensorDataset] = {}
    for name, value in items:
        if not name:
            raise ConfigError(f"every set in {what} needs a non-empty name")
        names.append(name)
        if isinstance(value, str) and _registered_ood(value):
            if value != name:  # a registered set under another name: built like the others, then renamed
                data[name] = _Deferred(value, name)  # type: ignore[assignment]
            continue
        ds = as_dataset(value, name, pixels=pixels, mean=mean, std=std, ood=True, size=shape[1:], channels=shape[0])
        if ds.shape != shape:
            raise InputError(
                f"{what} set '{name}' has images of shape {ds.shape}, the ID test images {shape}; resize it to the same shape"
            )
        data[name] = ds
    return tuple(names), data


class _Deferred:
    """A registered OOD set given under another name (``{"noise": "gaussian"}``): built by the evaluation."""

    def __init__(self, registry_name: str, name: str) -> None:
        self.registry_name, self.name = registry_name, name


def _build_deferred(
    sets: dict[str, Any], shape: tuple[int, int, int], n: int, seed: int, base: TensorDataset | None
) -> dict[str, TensorDataset]:
    from dataclasses import replace

    from rulab.eval.ood_eval import load_ood_set

    out = {}
    for k, v in sets.items():
        if isinstance(v, _Deferred):
            ds = load_ood_set(v.registry_name, shape, n, seed, base=base)
            out[k] = replace(ds, name=k)
        else:
            out[k] = v
    return out


def _fits(name: str) -> bool:
    """Whether detector ``name`` learns state from data in ``fit`` (class means, banks, percentiles, templates)."""
    from rulab.detectors.base import Detector
    from rulab.registry import DETECTORS

    return DETECTORS.get(name).fit is not Detector.fit


def evaluate_model(
    model: nn.Module,
    id_test: DataLike,
    ood: Mapping[str, DataLike] | Sequence[str] | str | None = None,
    *,
    shifts: str | Sequence[tuple[str, float]] | None = None,
    detectors: Sequence[str] | str | None = None,
    id_val: DataLike = None,
    ood_val: Mapping[str, DataLike] | Sequence[str] | str | None = None,
    id_train: DataLike = None,
    pixels: bool = True,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    feature_layer: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    head: str | None = None,
    classes: Sequence[str] | None = None,
    id_name: str = "id",
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    farconf: bool = False,
    protocol: str = "full",
    n_ood: int = 2000,
    n_val_id: int = 1000,
    n_val_ood: int = 1000,
    temperature: bool = True,
    batch_size: int = 256,
    fit_size: int = 10_000,
    seed: int = 0,
    parity: bool = False,
    eval_cfg: EvalCfg | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> ResultTable:
    """Evaluate any image classifier: calibration, OOD detection per detector, covariate shift and (optionally)
    far-away confidence, as one long :class:`~rulab.results.table.ResultTable` (the rows of ``rulab eval``).

    Args:
        model: an ``nn.Module`` mapping images ``[B, C, H, W]`` to logits ``[B, K]`` (or a rulab model). Its
            parameters' device is used.
        id_test: the in-distribution test set with labels (see :data:`DataLike`).
        ood: test OOD sets: ``{"name": data}`` (labels ignored) where ``data`` may also be the name of a registered
            OOD set, or a list of registered names (``["gaussian", "textures"]``; ``rulab list ood``).
        shifts: covariate shift: a suite name (``"blur_w2"``, ``rulab.data.corruptions.SHIFT_SUITES``) or cells
            ``[("gaussian_blur_sigma", 0.5), ("fog", 3)]``; None for none.
        detectors: detector names (``rulab list detectors``), or one comma-separated string. Default: every
            detector of ``rulab eval`` (those that fit on data only when ``id_train`` or ``id_val`` is given).
        id_val: held-out ID data with labels: temperature scaling, detector tuning, KL-matching templates.
        ood_val: validation-OOD sets used only to tune detector hyperparameters (ODIN's T and ε, KNN's k, ReAct's
            percentile); same forms as ``ood`` and disjoint from it. Without it tuned detectors keep their defaults.
        id_train: training data with labels for the detectors that fit on it (Mahalanobis, KNN, ReAct, ViM; a seeded
            subset of ``fit_size`` is used). Without it they fit on ``id_val``.
        pixels: float images are [0, 1] pixels (True) or normalised with ``mean``/``std`` (False).
        mean: per-channel mean (in [0, 1] pixel units) of the normalisation the model expects; it becomes the
            model's first layer. None: the model takes [0, 1] pixels itself.
        std: per-channel standard deviation of that normalisation.
        feature_layer: where features come from: None (the input of the final linear layer), a graph node name
            (``torchvision.models.feature_extraction.get_graph_node_names(model)``) or a function ``x -> [B, D]``.
        head: name of the final linear layer (default: the model's last ``nn.Linear``).
        classes: class names (default: from the data, else ``"0" .. "K-1"``).
        id_name: the ID dataset's name in the results (a TensorDataset keeps its own name).
        size: ``(H, W)`` for ID data read from an image folder.
        channels: 1 or 3 for ID data read from an image folder.
        farconf: run the far-away / worst-case tests (alpha scaling, adversarial noise and samples; W3).
        protocol: OOD protocol (``full``, ``hendrycks``, ``odin``, ``hein``; ``rulab list protocols``).
        n_ood: images built per registered OOD set (before the protocol subsamples; capped by ``eval_cfg.n_ood``).
        n_val_id: validation ID images used for tuning.
        n_val_ood: images built per registered validation-OOD set.
        temperature: also report calibration after temperature scaling fitted on ``id_val``.
        batch_size: images per forward pass.
        fit_size: detectors fit on at most this many training examples (seeded subset).
        seed: seeds registered OOD sets, protocol subsampling, shift noise and far-away tests.
        parity: W1/OE calibration parity (drop the top adaptive bin, as ``utils/calibration_tools.py`` does).
        eval_cfg: further evaluation settings (``alpha_trials``, ``adv_eps``, ``n_ood`` cap, ...); ``detectors``,
            ``shift``, ``farconf``, ``temperature``, ``protocol`` and ``batch_size`` above take precedence.
        cache_dir: cache extracted logits/features on disk (keyed by a hash of the weights and the data).
        progress: print the stages to stderr.

    Returns:
        The result table (``.summary()``, ``.to_pandas()``, ``.to_csv(path)``; the HTML report: ``rulab.reports.evaluation_report(table, path)``).

    Raises:
        RulabError: data rulab cannot read, missing labels, a set whose shape differs from the ID test set,
            unknown detector/protocol/shift names, feature detectors without training or validation data.
    """
    import sys
    from dataclasses import replace

    from rulab.eval.benchmarks import Benchmark
    from rulab.eval.evaluate import run_evaluation
    from rulab.models.wrapped import wrap_model

    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module mapping images to logits, got {type(model).__name__}")
    check_int("batch_size", batch_size, 1)
    for key, value in (("n_ood", n_ood), ("n_val_id", n_val_id), ("n_val_ood", n_val_ood), ("fit_size", fit_size)):
        check_int(key, value, 0)
    check_seed("seed", seed)
    if not isinstance(protocol, str):
        raise ConfigError(f"protocol must be a name (`rulab list protocols`), got {brief(protocol)}")
    net = wrap_model(model, mean, std, feature_layer, head)
    kw = {"pixels": pixels, "mean": mean, "std": std}
    test = as_dataset(id_test, id_name, classes=classes, size=size, channels=channels, **kw)
    shape = test.shape
    for what, values in (("mean", mean), ("std", std)):
        n = 1 if isinstance(values, (int, float)) or values is None else len(values)
        if n not in (1, shape[0]):
            raise InputError(
                f"{what} has {n} values but the images have {shape[0]} channel(s); give one value per channel (or one for all)"
            )
    folder = {"size": size or shape[1:], "channels": channels or shape[0]}
    val = None if id_val is None else as_dataset(id_val, f"{test.name}_val", classes=test.classes, **folder, **kw)
    train = (
        None if id_train is None else as_dataset(id_train, f"{test.name}_train", classes=test.classes, **folder, **kw)
    )
    for ds in (val, train):
        if ds is not None and ds.shape != shape:
            raise InputError(f"'{ds.name}' has images of shape {ds.shape}, the test set {shape}; use one shape")

    base = eval_cfg or EvalCfg()
    if detectors is None:
        names = tuple(d for d in EvalCfg().detectors if train is not None or val is not None or not _fits(d))
    else:
        names = (
            tuple(d.strip() for d in detectors.split(",") if d.strip())
            if isinstance(detectors, str)
            else tuple(detectors)
        )
    from rulab.registry import DETECTORS, UnknownNameError

    for d in names:
        try:
            DETECTORS.get(d)
        except UnknownNameError as err:
            raise ConfigError(str(err)) from None
    needs_fit = [d for d in names if _fits(d)]
    fit_note = ""
    if train is None:
        if needs_fit and val is None:
            raise ConfigError(
                f"detector(s) {', '.join(needs_fit)} fit on in-distribution data; pass id_train=(images, labels) (or at least id_val)"
            )
        train = val if val is not None else test.subset(slice(0, 0), name=f"{test.name}_train")
        if needs_fit:
            fit_note = "no id_train given: detectors were fitted on id_val"
    cfg = validate_eval(
        replace(
            base,
            detectors=names,
            shift="",
            farconf=farconf,
            temperature=temperature,
            batch_size=batch_size,
            protocol="",
        )
    )

    ood_names, ood_data = resolve_ood(ood, "ood", shape, **kw)
    val_names, val_data = resolve_ood(ood_val, "ood_val", shape, **kw)
    try:
        bench = Benchmark(
            name="custom",
            id_dataset=test.name,
            ood=ood_names,
            val_ood=val_names,
            protocol=protocol,
            n_ood=n_ood,
            n_val_id=n_val_id,
            n_val_ood=n_val_ood,
        )
    except ValueError as err:
        raise ConfigError(str(err).replace("benchmark 'custom'", "this evaluation")) from None
    if any(isinstance(v, _Deferred) for v in [*ood_data.values(), *val_data.values()]):
        from rulab.data.loader import derive_seed
        from rulab.eval.evaluate import _VAL_OOD_SALT
        from rulab.eval.ood_eval import ood_set_size
        from rulab.registry import PROTOCOLS

        try:
            proto = PROTOCOLS.create(protocol)
        except UnknownNameError as err:
            raise ConfigError(str(err)) from None
        for k, v in list(ood_data.items()):
            if isinstance(v, _Deferred):
                n = ood_set_size(v.registry_name, bench, proto, len(test), cfg.n_ood)
                ood_data.update(_build_deferred({k: v}, shape, n, seed, test))
        if val is not None:
            val_data = _build_deferred(val_data, shape, n_val_ood, derive_seed(seed, _VAL_OOD_SALT), val)

    def stage(text: str) -> None:
        if progress:
            print(f"[rulab evaluate] {text}", file=sys.stderr, flush=True)

    was_training = net.training
    net.eval()
    try:
        table = run_evaluation(
            net,
            benchmark=bench,
            eval_cfg=cfg,
            train=train,
            val=val,
            test=test,
            seed=seed,
            cache_dir=cache_dir,
            parity=parity,
            fit_size=fit_size,
            on_stage=stage,
            ood_data=ood_data,
            val_ood_data=val_data,
            shift=shifts if shifts else "",
        )
    finally:
        net.train(was_training)
    table.meta.update(
        {
            "model": type(model).__name__,
            "normalisation": None if mean is None else {"mean": net.mean, "std": net.std},
            "data": {
                "id_test": test.source,
                "id_val": None if val is None else val.source,
                "id_train": None if id_train is None else train.source,
            },
            "ood_sets": list(ood_names),
            "val_ood_sets": list(val_names),
        }
    )
    if fit_note:
        table.meta.setdefault("skipped", {})["fit"] = fit_note
    return table
