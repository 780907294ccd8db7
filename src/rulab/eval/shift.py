"""Covariate-shift evaluation: accuracy and calibration of one model on every cell of a shift suite.

For every ``(corruption, level)`` cell of a suite (:data:`rulab.data.corruptions.SHIFT_SUITES`) the shifted test
set is built exactly as :func:`rulab.data.corruptions.corrupt_dataset` builds it (one generator seeded with
``seed`` per cell, consumed chunk after chunk of ``chunk`` images, then rounded to uint8) and the model is run
over it once. Rows (kind ``"shift"``, ``dataset`` = the test set's name, ``shift`` = the corruption,
``severity`` = the level as a string such as ``"3"`` or ``"0.8"``, ``detector`` ``""``):

* per cell: ``acc``, ``nll``, ``ece`` (l1, 15 uniform bins), ``rms`` (l2, adaptive bins of 100),
  ``rms_uniform10`` (l2, 10 uniform bins: W2's metric, report §4.4.2), ``mmc``, ``brier``; with a
  temperature also the temperature-scaled ``nll``, ``ece``, ``rms``, ``rms_uniform10``, ``mmc``, ``brier`` under
  detector ``"ts"`` (accuracy does not change);
* per corruption: the unweighted mean over its levels (``severity="mean"``). For the W2 grids
  (``brightness_factor``, ``gaussian_blur_sigma``) this is the report's "Brightness mean" / "Blur mean" of
  accuracy and RMSE (W2 report Tables 1-2 and 5-6; W2's RMSE is ``rms_uniform10``);
* the clean reference once: ``shift="clean"``, ``severity="0"``, same metrics;
* with a ``baseline`` (error rate per cell of a reference model): the corruption error
  ``CE_c = Σ_s E_{s,c} / Σ_s E^base_{s,c}`` per corruption (``metric="ce"``, ``severity=""``) and their mean
  (``metric="mce_rel"``, ``shift=""``: Hendrycks & Dietterich's mCE relative to that baseline; the name avoids
  ``mce``, the maximum calibration error).

uint8 rounding: every shifted image is rounded to ``round(255·x)/255`` before the model sees it (``quantize=True``,
the default). This is what the references do (CIFAR-10-C and ImageNet-C are released as uint8 images; W2 corrupts
PIL images, which are uint8), it makes the streamed evaluation bit-identical to evaluating
:func:`~rulab.data.corruptions.corrupt_dataset`'s output, and it lets shifted sets be cached as uint8
(:class:`ShiftCache`) without the cached and uncached results differing. The round trip costs one multiply and
one round per pixel. ``quantize=False`` feeds the float corruption output directly (no cache then).

Cost: a shifted test set is the same for every checkpoint, so a study evaluating many checkpoints should pass one
:class:`ShiftCache` (in memory and/or on disk) to every call; the remaining cost is one forward pass per cell.
With ``logits_cache`` (the evaluation's extraction cache) each cell's logits are stored with the checkpoint's other
cached outputs (about 0.4 MB per cell for 10,000 images and 10 classes), so evaluating the same checkpoint again
runs no shifted image, and a deep ensemble evaluated after its members (``members_from``) averages its members'
stored cell logits instead of running them (:func:`rulab.eval.extract.from_members`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rulab.data.corruptions import apply_shift, is_level, level_label, shift_suite
from rulab.data.corruptions import corruption as get_corruption
from rulab.data.tensors import TensorDataset, unit_pixels
from rulab.errors import InputError
from rulab.eval.extract import dataset_key, store_cached, stored_outputs
from rulab.eval.intervals import shift_replicates
from rulab.eval.predict import model_device
from rulab.eval.shift_cache import CHUNK, ShiftCache
from rulab.metrics.calibration import brier, calibration_error, nll
from rulab.metrics.robustness import corruption_error
from rulab.results.table import ResultTable

__all__ = [
    "CELL_METRICS",
    "TS_METRICS",
    "CLEAN",
    "ShiftCache",
    "shifted_batches",
    "cell_metrics",
    "severity_means",
    "shift_errors",
    "corruption_errors",
    "evaluate_shift",
]

CELL_METRICS = ("acc", "nll", "ece", "rms", "rms_uniform10", "mmc", "brier")
"""Metrics stored for every shift cell (raw logits)."""
TS_METRICS = ("nll", "ece", "rms", "rms_uniform10", "mmc", "brier")
"""Metrics stored again under detector ``"ts"`` when a temperature is given (accuracy is unchanged by it)."""
CLEAN = "clean"
"""The ``shift`` name of the clean reference rows (``severity="0"``)."""


# --------------------------------------------------------------------------------------------- shifted images


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def shifted_batches(
    test: TensorDataset, corruption: str, level: float, seed: int, chunk: int = CHUNK, quantize: bool = True
) -> Iterator[torch.Tensor]:
    """Yield the shifted test images chunk by chunk, as :func:`corrupt_dataset` would make them.

    One generator on ``test.x``'s device, seeded with ``seed``, is consumed chunk after chunk, exactly as in
    :func:`~rulab.data.corruptions.corrupt_dataset` with ``batch_size=chunk``; with ``quantize`` each chunk equals
    that function's uint8 output divided by 255.

    Args:
        test: ``uint8 [N, C, H, W]`` images.
        corruption: a name in ``CORRUPTIONS``.
        level: severity 1..5 or the float level of a grid corruption.
        seed: seed of the corruption's randomness.
        chunk: images per corruption call (the images depend on it for some stochastic corruptions).
        quantize: round to ``round(255·x)/255`` (see the module docstring).

    Yields:
        ``float32 [≤chunk, C, H, W]`` in [0, 1] on ``test.x``'s device.
    """
    _check_positive_int(chunk, "chunk")
    get_corruption(corruption)  # unknown name → error before any work
    generator = torch.Generator(device=test.x.device).manual_seed(int(seed))
    for start in range(0, len(test), chunk):
        x = apply_shift(unit_pixels(test.x[start : start + chunk]), corruption, level, generator)
        yield x.mul_(255).round_().clamp_(0, 255).div_(255) if quantize else x


# --------------------------------------------------------------------------------------------- metrics


def cell_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The metrics of one shift cell (:data:`CELL_METRICS`) from ``logits: [N, K]`` and ``labels: [N]``.

    ``ece``: l1, 15 uniform bins; ``rms``: l2, adaptive bins of 100; ``rms_uniform10``: l2, 10 uniform bins
    (W2, report §4.4.2); ``brier``: multi-class, range [0, 2]; ``mmc``: mean max-probability. Fractions.
    """
    z = logits.to(torch.float64)
    p = z.softmax(dim=1)
    conf, pred = p.max(dim=1)
    y = labels.to(z.device)
    correct = (pred == y).to(torch.float64)
    return {
        "acc": float(correct.mean()),
        "nll": nll(z, y),
        "ece": calibration_error(conf, correct, "l1", "uniform", n_bins=15),
        "rms": calibration_error(conf, correct, "l2", "adaptive", bin_size=100),
        "rms_uniform10": calibration_error(conf, correct, "l2", "uniform", n_bins=10),
        "mmc": float(conf.mean()),
        "brier": brier(p, y, from_logits=False),
    }


def _add_cell(
    table: ResultTable, logits: torch.Tensor, labels: torch.Tensor, temperature: float | None, **keys: Any
) -> dict[str, float]:
    raw = cell_metrics(logits, labels)
    table.add_metrics("shift", raw, **keys)
    if temperature is not None:
        ts = cell_metrics(logits / temperature, labels)
        table.add_metrics("shift", {m: ts[m] for m in TS_METRICS}, detector="ts", **keys)
    return raw


def severity_means(table: ResultTable, kind: str = "shift") -> ResultTable:
    """Per (dataset, shift, detector, metric): the unweighted mean over the numeric levels (``severity="mean"``).

    The clean reference (:data:`CLEAN`) and rows whose severity is not a number (``"mean"``, ``""``) are left out,
    so for a W2 grid this is the report's mean over its 4 levels (W2 report Tables 1-2).

    Args:
        table: rows of kind ``kind`` with numeric severities.

    Returns:
        A new table with the mean rows (``n`` = the levels' summed ``n``; ``extra["levels"]`` lists them).
    """
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for r in table:
        if r.kind == kind and r.shift != CLEAN and is_level(r.severity):
            groups.setdefault((r.dataset, r.shift, r.detector, r.metric), []).append(r)
    out = ResultTable()
    for (dataset, shift, detector, metric), rows in groups.items():
        values = torch.tensor([r.value for r in rows], dtype=torch.float64)
        out.add(
            kind,
            metric,
            float(values.mean()),
            dataset=dataset,
            shift=shift,
            severity="mean",
            detector=detector,
            n=sum(r.n for r in rows),
            extra={"levels": [r.severity for r in rows]},
        )
    return out


def shift_errors(table: ResultTable, dataset: str | None = None) -> dict[tuple[str, str], float]:
    """Error rate ``1 − acc`` per ``(corruption, level)`` cell of a shift table: the ``baseline`` argument of
    :func:`evaluate_shift` for comparing other models against this one.

    Args:
        table: a table with kind ``"shift"`` accuracy rows (e.g. the output of :func:`evaluate_shift`).
        dataset: keep only rows of this test set (default: all; raises if there are several).
    """
    rows = [
        r
        for r in table
        if r.kind == "shift"
        and r.metric == "acc"
        and r.detector == ""
        and r.shift != CLEAN
        and is_level(r.severity)
        and (dataset is None or r.dataset == dataset)
    ]
    names = {r.dataset for r in rows}
    if len(names) > 1:
        raise InputError(
            f"the table holds shift results of several test sets ({', '.join(sorted(names))}); pass dataset="
        )
    return {(r.shift, r.severity): 1.0 - r.value for r in rows}


def corruption_errors(
    errors: Mapping[tuple[str, Any], float], baseline: Mapping[tuple[str, Any], float]
) -> tuple[dict[str, float], float]:
    """Corruption error per corruption and their mean, relative to a baseline model (Hendrycks & Dietterich 2019).

    ``CE_c = Σ_s E_{s,c} / Σ_s E^base_{s,c}`` over the levels ``s`` of corruption ``c`` in ``errors``; mCE = the
    mean of ``CE_c`` over the corruptions the baseline covers. A corruption the baseline does not mention is left
    out (and missing from the mean); one it covers only partly is an error.

    Args:
        errors: the model's error rate per ``(corruption, level)``; levels as numbers or strings (``3``, ``"0.8"``).
        baseline: the baseline's error rates, same keys.

    Returns:
        ``({corruption: CE}, mCE)``.
    """
    base = {(c, level_label(s)): float(v) for (c, s), v in baseline.items()}
    by: dict[str, list[tuple[str, float]]] = {}
    for (c, s), v in errors.items():
        by.setdefault(c, []).append((level_label(s), float(v)))
    ce: dict[str, float] = {}
    for c, cells in by.items():
        have = [(s, v) for s, v in cells if (c, s) in base]
        if not have:
            continue
        if len(have) != len(cells):
            missing = ", ".join(s for s, _ in cells if (c, s) not in base)
            raise InputError(
                f"the baseline has errors for some but not all levels of '{c}' (missing {missing}); give all levels or none"
            )
        err = torch.tensor([v for _, v in have], dtype=torch.float64)
        ref = torch.tensor([base[(c, s)] for s, _ in have], dtype=torch.float64)
        ce[c] = float(corruption_error(err, ref)[0])
    if not ce:
        raise InputError(
            "the baseline covers none of the suite's corruptions; pass error rates keyed by (corruption, level) of the same suite"
        )
    return ce, sum(ce.values()) / len(ce)


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _forward(
    model: nn.Module, x: torch.Tensor, dev: torch.device, batch_size: int, channels_last: bool
) -> torch.Tensor:
    """Logits ``float32 [N, K]`` on the CPU of ``x``: ``uint8 [N, C, H, W]`` or float in [0, 1], in batches."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(dev, non_blocking=True)
        xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        out.append(model(xb).float().cpu())
    return torch.cat(out)


def evaluate_shift(
    model: nn.Module,
    test: TensorDataset,
    suite: str | Sequence[tuple[str, float]],
    seed: int,
    batch_size: int = 256,
    temperature: float | None = None,
    baseline: dict[tuple[str, str], float] | None = None,
    *,
    cache: ShiftCache | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    chunk: int = CHUNK,
    quantize: bool = True,
    channels_last: bool = True,
    clean_logits: torch.Tensor | None = None,
    keep_logits: bool = False,
    resampler: Any = None,
    logits_cache: tuple[str | os.PathLike[str], str] | None = None,
    members_from: Sequence[tuple[str | os.PathLike[str], str]] = (),
) -> ResultTable:
    """Accuracy and calibration on every cell of a shift suite, plus means over levels, the clean reference and CE.

    See the module docstring for the rows. The model runs in eval mode without gradients on its own
    device; its train/eval mode is restored afterwards.

    Args:
        model: a classifier taking ``[B, C, H, W]`` images in [0, 1].
        test: the ID test set, ``uint8 [N, C, H, W]`` images and labels.
        suite: a name in :data:`~rulab.data.corruptions.SHIFT_SUITES` (``"fmnist-default"``), or the cells
            ``[(corruption, level), ...]`` of a custom suite.
        seed: seed of the corruptions' randomness (the same for every cell, as in ``corrupt_dataset``).
        batch_size: images per forward pass.
        temperature: a fitted temperature T; adds the metrics of ``logits / T`` under detector ``"ts"``.
        baseline: error rate of a reference model per ``(corruption, level)`` (see :func:`shift_errors`); adds
            ``ce`` per corruption and ``mce_rel``.
        cache: shifted sets shared across calls (see :class:`ShiftCache`); needs ``quantize``.
        cache_dir: shorthand for ``cache=ShiftCache(cache_dir, memory=False)`` (a disk cache only).
        chunk: images per corruption call (part of what defines the shifted images).
        quantize: round shifted images to uint8 levels (default; see the module docstring).
        channels_last: run a channels-last copy of the model (no copy if it already is channels-last) on
            channels-last batches: about 1.6-1.8× faster for convolutional networks on CPU; logits change at float
            rounding level (~1e-7). The caller's model is not modified.
        clean_logits: the model's logits on ``test`` if already computed (``[N, K]``), to skip the clean pass.
        keep_logits: store every cell's logits in ``table.arrays["shift/<corruption>/<level>/logits"]``.
        resampler: a :class:`rulab.eval.intervals.Resampler`: the raw cells' rows and their means over levels get
            bootstrap replicates and intervals over the test images (:func:`rulab.eval.intervals.shift_replicates`).
        logits_cache: ``(cache_dir, model_key)``: each cell's logits are read from, or stored in, the extraction cache
            of this checkpoint (:func:`rulab.eval.extract.load_cached`; the key names the test set, the corruption,
            its level, the seed, the chunk and the rounding).
        members_from: for a deep ensemble, each member's ``(cache_dir, model_key)``: a cell every member has stored
            is the average of their predictives (:func:`rulab.eval.extract.from_members`), with no forward pass.

    Returns:
        A :class:`ResultTable` of kind ``"shift"`` rows; ``meta`` records the suite, seed, chunk, quantize and the
        cache hits.
    """
    if isinstance(suite, str):
        cells, suite_name = shift_suite(suite), suite
    else:
        cells, suite_name = [(str(c), float(lvl)) for c, lvl in suite], "custom"
        for c, _ in cells:
            get_corruption(c)
        if not cells:
            raise InputError("a custom shift suite needs at least one (corruption, level) cell")
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(chunk, "chunk")
    if temperature is not None and not (math.isfinite(float(temperature)) and float(temperature) > 0):
        raise InputError(f"temperature must be a positive number, got {temperature!r}")
    if cache is None and cache_dir is not None:
        cache = ShiftCache(cache_dir, memory=False)
    if cache is not None and not quantize:
        raise InputError("a ShiftCache stores uint8 images; use quantize=True with a cache, or drop the cache")
    if len(test) == 0:
        raise InputError(f"test set '{test.name}' is empty")
    t = None if temperature is None else float(temperature)
    dev = model_device(model)
    was_training = model.training
    model.eval()
    convert = channels_last and any(
        p.ndim == 4 and not p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters()
    )
    net = copy.deepcopy(model).to(memory_format=torch.channels_last) if convert else model
    table = ResultTable(meta={"suite": suite_name, "shift_seed": int(seed), "chunk": chunk, "quantize": quantize})
    keys = {"dataset": test.name, "n": len(test)}
    fp = cache.fingerprint(test) if cache is not None else None
    try:
        z = (
            _forward(net, test.x, dev, batch_size, channels_last)
            if clean_logits is None
            else clean_logits.float().cpu()
        )
        if tuple(z.shape[:1]) != (len(test),):
            raise InputError(f"clean_logits must have one row per test image ({len(test)}), got shape {tuple(z.shape)}")
        _add_cell(table, z, test.y, t, shift=CLEAN, severity="0", **keys)
        kept: list[tuple[str, str, torch.Tensor]] = [(CLEAN, "0", z)] if resampler is not None else []
        errors: dict[tuple[str, str], float] = {}
        base = dataset_key(test, "test", seed) if (logits_cache or members_from) else ""
        reused = 0
        for corruption, level in cells:
            sev = level_label(level)
            cell_key = f"{base}|shift={corruption}@{sev}|chunk={chunk}|quantize={int(quantize)}"
            cache_dir, model_key = logits_cache or (None, "")
            stored, _ = stored_outputs(cache_dir, model_key, cell_key, len(test), members_from=members_from)
            z = None if stored is None else stored["logits"].float()
            if z is not None:
                reused += 1
            else:
                if cache is not None:
                    shifted = cache.get(test, corruption, level, seed, chunk, fingerprint=fp)
                    z = _forward(net, shifted.x, dev, batch_size, channels_last)
                else:
                    z = torch.cat(
                        [
                            _forward(net, x, dev, batch_size, channels_last)
                            for x in shifted_batches(test, corruption, level, seed, chunk, quantize)
                        ]
                    )
                if logits_cache is not None:
                    store_cached(*logits_cache, cell_key, {"logits": z, "labels": test.y.cpu().clone()})
            errors[(corruption, sev)] = (
                1.0 - _add_cell(table, z, test.y, t, shift=corruption, severity=sev, **keys)["acc"]
            )
            if keep_logits:
                table.arrays[f"shift/{corruption}/{sev}/logits"] = z
            if resampler is not None:
                kept.append((corruption, sev, z))
    finally:
        model.train(was_training)
    table.extend(severity_means(table))
    if resampler is not None:
        shift_replicates(table, kept, test.y, resampler, test.name)
        table.attach_intervals()
    if baseline:
        ce, mce = corruption_errors(errors, baseline)
        for corruption, value in ce.items():
            table.add("shift", "ce", value, dataset=test.name, shift=corruption, n=len(test))
        table.add("shift", "mce_rel", mce, dataset=test.name, n=len(test), extra={"corruptions": list(ce)})
    if cache is not None:
        table.meta["cache_hits"], table.meta["cache_misses"] = cache.hits, cache.misses
    if logits_cache is not None or members_from:
        table.meta["stored_cells"] = reused  # cells whose logits came from the cache or the members, not a forward
    return table
