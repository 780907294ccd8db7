"""``run_evaluation(model, benchmark=...)``: calibration, OOD detection with every detector, and the hooks for covariate
shift and far-away confidence, as one long :class:`~rulab.results.table.ResultTable`.

What it does, in order (each network pass happens once per dataset, convention 6 in docs/conventions.md):

1. **Extract** logits and features of the training split (detectors fit on it), the validation split (temperature
   scaling, detector tuning, KL-matching templates), the ID test set, every test OOD set and every validation-OOD set
   (:func:`rulab.eval.extract.extract`, cached on disk with ``cache_dir``).
2. **Fit and tune** each detector: ``fit`` on the TRAINING split (a seeded subset of ``fit_size`` examples; the
   validation split is the held-out ID data);
   detectors with a hyperparameter grid (ODIN's T and ε, KNN's k, ReAct's percentile) are tuned on the first
   ``benchmark.n_val_id`` validation images against the benchmark's validation-OOD sets (``benchmark.val_ood``) —
   never on a test set. Chosen values go to ``table.meta["detectors"]``, each row's ``extra["hparams"]`` and, where
   the metric catalogue declares them (``odin_t``, ``odin_eps``), rows of their own; the tuning grid's metrics go
   to ``table.arrays["tuning/<detector>/val_ood/..."]``. Under a protocol that tunes per OOD set (``odin-paper``,
   W4's protocol) the grid detectors are instead tuned in step 4 on each test OOD set's tuning split (its first
   1,000 images and the ID test set's), which the protocol never scores.
3. **ID block** (kind ``id``, dataset = the benchmark's ID dataset): :func:`rulab.metrics.calibration.calibration_metrics`
   on the raw test logits (detector ``""``) and after temperature scaling fitted on the validation split (detector
   ``"ts"``, plus metric ``temperature``).
4. **OOD block** (kind ``ood``, dataset = the OOD set): every detection metric per detector under the protocol
   (:func:`rulab.eval.ood_eval.protocol_metrics`), the MMC of every OOD set (detector ``msp``, metric ``mmc``) and OE's
   OOD calibration (``ood_rms``, ``ood_mad``, ``ood_soft_f1``; detector ``msp`` raw, ``ts`` temperature-scaled).
5. **Intervals** (``eval_cfg.bootstrap`` resamples, 1,000 by default; 0 switches them off): every row that is a
   statistic of the test images gets its 95% percentile bootstrap interval over test images (``ci_low``, ``ci_high``,
   ``ci_method``) and its replicates in ``table.arrays["bootstrap/<key>"]``; :mod:`rulab.eval.intervals` lists which
   rows.
6. **Arrays** (``table.arrays``) for plots: ``scores/<detector>/id``, ``scores/<detector>/<ood set>``, ``id/logits``,
   ``id/labels``, ``val/logits``, ``val/labels``, ``ts/temperature``.
7. **Shift and far-away tests** when ``eval_cfg.shift`` (or ``shift``) / ``eval_cfg.farconf`` are set: :mod:`rulab.eval.shift` and
   :mod:`rulab.eval.farconf`. The shifted test sets use corruption seed 0 for every run: they are benchmark data, the
   same images for every method and seed (like the released CIFAR-10-C arrays).

``parity=True`` reproduces W1/OE's calibration quirk (the top adaptive bin is dropped, ``utils/calibration_tools.py``)
and W3's rejection column at index 10 in the adversarial-samples resistance (``evaluation.py``); the register of
convention 5 in docs/conventions.md lists both.

One concern, kept in one file: the order of one evaluation (the steps above); each step's computation lives in its
own module.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rulab.config import EvalCfg, check_kwargs
from rulab.data.loader import derive_seed
from rulab.data.tensors import TensorDataset
from rulab.detectors.base import Detector, Extracted
from rulab.detectors.temperature import TemperatureScaler
from rulab.errors import ConfigError, InputError
from rulab.eval import farconf as farconf_eval
from rulab.eval import shift as shift_eval
from rulab.eval.benchmarks import Benchmark
from rulab.eval.extract import dataset_key, extract, linear_head, weights_hash
from rulab.eval.inputs import check_evaluation
from rulab.eval.intervals import Resampler, id_replicates, ood_replicates
from rulab.eval.ood_eval import load_ood_set, ood_calibration_metrics, ood_set_size, protocol_metrics
from rulab.eval.protocols import Protocol
from rulab.metrics.calibration import calibration_metrics, mmc
from rulab.models.ensemble import MemberAverage
from rulab.models.fuse import inference_copy
from rulab.models.tta import FlipTTA
from rulab.registry import BENCHMARKS, DETECTORS, METRICS, PROTOCOLS, UnknownNameError
from rulab.results.table import ResultTable

__all__ = ["run_evaluation", "resolve_benchmark"]

_VAL_OOD_SALT = 0x7A1D00D
"""Mixed into the seed of validation-OOD sets so that they never coincide with a test set's draw."""
_FIT_SALT = 0xF17
"""Mixed into the seed of the training subset detectors fit on."""


def resolve_benchmark(benchmark: Benchmark | str) -> Benchmark:
    """A :class:`Benchmark` from itself or its registry name."""
    if isinstance(benchmark, Benchmark):
        return benchmark
    try:
        return BENCHMARKS.create(benchmark)
    except UnknownNameError as err:
        raise ConfigError(str(err)) from None


class _Timer:
    """Wall-clock seconds per stage (``table.meta["timing"]``) and this process's CPU seconds per stage, all threads
    together (``table.meta["cpu_timing"]``; on a shared machine the CPU time is the steadier measure of cost)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - t0, 4)
            self.cpu[stage] = round(self.cpu.get(stage, 0.0) + time.process_time() - c0, 4)


def _detectors(names: tuple[str, ...], kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Detector]:
    """Create the detectors ``names``, each with its constructor arguments from ``kwargs`` (``eval.detector_kwargs``)."""
    if len(set(names)) != len(names):
        raise ConfigError(f"config key 'eval.detectors' lists a detector twice: {list(names)}")
    kwargs = kwargs or {}
    extra = sorted(set(kwargs) - set(names))
    if extra:
        raise ConfigError(
            f"config key 'eval.detector_kwargs.{extra[0]}' names a detector that is not run; valid choices: {', '.join(names)}"
        )
    out = {}
    for name in names:
        try:
            check_kwargs(
                f"eval.detector_kwargs.{name}", DETECTORS, name, kwargs.get(name, {})
            )  # the check validate_run runs
            out[name] = DETECTORS.create(name, **kwargs.get(name, {}))
        except UnknownNameError as err:
            raise ConfigError(str(err)) from None
    return out


def _add_detection_rows(
    table: ResultTable, detector: str, set_name: str, values: Mapping[str, float], extra: dict[str, Any]
) -> None:
    """The detection rows of one (detector, OOD set), plus one row per tuned hyperparameter that the metric catalogue
    declares as ``<detector>_<name>`` (``odin_t``, ``odin_eps``), so that the chosen values are in the database."""
    for metric, value in values.items():
        row_extra = {**extra, "std": extra["std"][metric]} if "std" in extra else extra
        table.add("ood", metric, value, dataset=set_name, detector=detector, n=extra["n_ood"], extra=row_extra)
    for key, value in (extra.get("hparams") or {}).items():
        metric = f"{detector}_{key}"
        if metric in METRICS and isinstance(value, (int, float)) and not isinstance(value, bool):
            table.add(
                "ood",
                metric,
                float(value),
                dataset=set_name,
                detector=detector,
                n=extra["n_ood"],
                extra={"tuned_on": extra["hparams"].get("tuned_on", "")},
            )


def _store_grid(table: ResultTable, detector: str, where: str, grid: Mapping[str, Any] | None) -> None:
    """Keep a tuning grid (:meth:`rulab.detectors.odin.ODIN.tune`'s ``grid``) as arrays ``tuning/<detector>/<where>/<key>``:
    the axes (``t [nT]``, ``eps [nE]``) and the metric of every grid point (``fpr95_id``, ``auroc``: ``[nT, nE]``)."""
    if not grid:
        return
    for key, value in grid.items():
        table.arrays[f"tuning/{detector}/{where}/{key}"] = torch.as_tensor(value, dtype=torch.float64)


def _score_tuned_per_set(
    table: ResultTable,
    name: str,
    det: Detector,
    model: nn.Module,
    ex_test: Extracted,
    ex_ood: Mapping[str, Extracted],
    protocol: Protocol,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """W4's protocol (``odin-paper``): per OOD set, tune ``det`` on the protocol's tuning split of the ID test set and
    of that set (their first 1,000 images), then score both with the chosen values; the protocol's splits never
    include the tuning images. Each ID test image is scored at most once per distinct choice, and only where a run
    of the protocol scores it (NaN elsewhere in ``tuning/<det>/<set>/id_scores``).

    Rows: the detection metrics per set (``extra["hparams"]`` holds that set's values) and the declared
    hyperparameter rows (``odin_t``, ``odin_eps``). Arrays: ``scores/<det>/<set>``, the ID scores at that set's
    values ``tuning/<det>/<set>/id_scores``, and the tuning grid ``tuning/<det>/<set>/...``.

    Returns:
        ``{set: hyperparameters and objective}`` (for ``table.meta["detectors"]``).
    """
    chosen: dict[str, dict[str, Any]] = {}
    id_scores: dict[str, torch.Tensor] = {}
    for set_name, ex in ex_ood.items():
        tsplit = protocol.tuning_split(len(ex_test), len(ex))
        if tsplit is None:
            raise ConfigError(f"protocol '{protocol.name}' tunes per OOD set but reserves no tuning images")
        tuned = det.tune(model, ex_test.subset(tsplit.id), {set_name: ex.subset(tsplit.ood)})
        _store_grid(table, name, set_name, tuned.pop("grid", None))
        hp = {**det.hparams(), "objective": tuned.get("objective"), "tuned_on": f"{set_name}[:{len(tsplit.ood)}]"}
        # only the ID images this set's runs score are scored (the others stay NaN): a small OOD set uses few of them
        rows = torch.cat([sp.id for sp in protocol.splits(len(ex_test), len(ex), seed)]).unique()
        key = repr(sorted(det.hparams().items()))
        if key not in id_scores:
            id_scores[key] = torch.full((len(ex_test),), float("nan"))
        s_id = id_scores[key]
        todo = rows[torch.isnan(s_id[rows])]
        if len(todo):
            s_id[todo] = det.score(ex_test.subset(todo), model).detach().cpu().to(s_id.dtype)
        s_ood = det.score(ex, model).detach().cpu()
        table.arrays[f"scores/{name}/{set_name}"] = s_ood
        table.arrays[f"tuning/{name}/{set_name}/id_scores"] = (
            s_id.clone()
        )  # sets may share a choice; arrays never share memory
        values, extra = protocol_metrics(s_id, s_ood, protocol, seed)
        extra["hparams"] = hp
        _add_detection_rows(table, name, set_name, values, extra)
        chosen[set_name] = hp
    return chosen


def _check_model_reads(model: nn.Module, dets: Mapping[str, Detector]) -> None:
    """Refuse, before anything runs, detectors that read what the model cannot give: the members' logits of an
    averaged predictive (``"members"``) or a linear head's weights (``"head"``)."""
    members = [n for n, d in dets.items() if "members" in d.requires]
    if members and not isinstance(model, MemberAverage):
        raise ConfigError(
            f"detector(s) {', '.join(members)} read the members of a deep ensemble or the passes of MC dropout, but "
            f"{type(model).__name__} is a single network; evaluate an ensemble (`rulab eval --ensemble RUN RUN ...`) or a "
            "dropout model with MC dropout (`--mc-dropout T`), or remove them from eval.detectors"
        )
    head = [n for n, d in dets.items() if "head" in d.requires]
    if head and isinstance(model, MemberAverage) and linear_head(model) is None:
        raise ConfigError(
            f"detector(s) {', '.join(head)} read the weights of one linear head, which an ensemble of "
            f"{getattr(model, 'num_members', 'several')} networks does not have; remove them from eval.detectors"
        )


def run_evaluation(
    model: nn.Module,
    *,
    benchmark: Benchmark | str,
    eval_cfg: EvalCfg,
    train: TensorDataset,
    val: TensorDataset | None,
    test: TensorDataset,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    parity: bool = False,
    model_key: str | None = None,
    fit_size: int = 10_000,
    on_stage: Callable[[str], None] | None = None,
    shift_cache: Any = None,
    ood_data: Mapping[str, TensorDataset] | None = None,
    val_ood_data: Mapping[str, TensorDataset] | None = None,
    shift: str | Sequence[tuple[str, float]] | None = None,
    fuse: bool = True,
    members_from: Sequence[tuple[str | os.PathLike[str], str]] = (),
) -> ResultTable:
    """Evaluate ``model`` on a benchmark: calibration, OOD detection with every configured detector, shift, far-away.

    Args:
        model: a classifier taking [0, 1] pixels (``features``/``head`` split for the feature detectors).
        benchmark: a :class:`Benchmark` or its name; its ID dataset must be the one ``test`` comes from.
        eval_cfg: detectors, protocol override, OOD cap, batch size, shift suite, far-away switch.
        train: the run's training split (feature detectors fit on it).
        val: the run's validation split (temperature scaling, tuning, KL-matching templates); None skips those.
        test: the ID test set.
        seed: seeds the synthetic OOD sets, validation-OOD sets and protocol subsampling.
        cache_dir: extraction cache directory (None: no cache).
        parity: W1/OE calibration parity (drop the top adaptive bin).
        model_key: the checkpoint hash keying the cache (default: a hash of the weights).
        fit_size: detectors fit on a seeded random subset of at most this many training examples (0 = all). Class
            means, covariances, percentiles and KNN banks are stable at this size, and it bounds the extraction and
            fitting cost (a full 55,000-image Fashion-MNIST split costs more than every OOD set together).
        on_stage: called with a short description before each stage (progress display).
        shift_cache: a :class:`rulab.eval.shift.ShiftCache` shared across evaluations (a study) so each shifted test
            set is built once.
        ood_data: ready-made test OOD sets by name (a user's own data, :func:`rulab.api.evaluate`); names of
            ``benchmark.ood`` not in it are built from the OOD_SETS registry.
        val_ood_data: ready-made validation-OOD sets by name, likewise for ``benchmark.val_ood``.
        shift: the shift suite, overriding ``eval_cfg.shift``: a suite name or the cells ``[(corruption, level), ...]``
            of a custom suite (``""`` for none).
        fuse: evaluate an inference copy of the model (:func:`rulab.models.fuse.inference_copy`: BatchNorm folded into
            the convolutions, pooling before ReLU, channels-last; the same function with logits equal to float rounding;
            1.6-1.9× faster than the channels-last model on rulab 0.1's fastcnn, 1.06-1.08× on the pool-first one, and
            about 3× faster than a contiguous model). ``False`` runs the model as given (the reference path).
        members_from: for a deep ensemble (:class:`rulab.models.ensemble.Ensemble`), each member's extraction cache
            ``(cache_dir, model_key)`` in member order: the data the members were evaluated on with the same key (the
            test set, the shifted test sets) is composed from their stored outputs instead of running the members
            again (:func:`rulab.eval.extract.from_members`). Ignored under ``eval.flip_tta`` (an ensemble of
            flipped members is not the flipped ensemble).

    Returns:
        The result table (rows, ``meta``, ``arrays``); see the module docstring for its contents.
    """
    check_evaluation(model, test, val, train)  # data shapes and the model's output, before any work
    key = model_key or weights_hash(model)
    if eval_cfg.flip_tta:
        model, key = FlipTTA(model), f"{key}+flip_tta"  # other logits: never share the non-TTA cache entries
        members_from = ()
    # evaluation only runs the network in eval mode: fold BatchNorm, pool before ReLU, channels-last (same function)
    net = inference_copy(model) if fuse else model
    channels_last = any(isinstance(m, nn.Conv2d) for m in net.modules())
    table = _evaluate(
        net,
        benchmark,
        eval_cfg,
        train,
        val,
        test,
        seed,
        cache_dir,
        parity,
        key,
        fit_size,
        on_stage,
        channels_last,
        shift_cache,
        ood_data or {},
        val_ood_data or {},
        eval_cfg.shift if shift is None else shift,
        tuple(members_from),
    )
    table.meta["flip_tta"] = bool(eval_cfg.flip_tta)
    table.meta["inference_copy"] = {"folded": getattr(net, "folded", 0)} if fuse else False
    return table


def _evaluate(
    model: nn.Module,
    benchmark: Benchmark | str,
    eval_cfg: EvalCfg,
    train: TensorDataset,
    val: TensorDataset | None,
    test: TensorDataset,
    seed: int,
    cache_dir: str | os.PathLike[str] | None,
    parity: bool,
    model_key: str | None,
    fit_size: int,
    on_stage: Callable[[str], None] | None,
    channels_last: bool,
    shift_cache: Any,
    ood_data: Mapping[str, TensorDataset],
    val_ood_data: Mapping[str, TensorDataset],
    shift: str | Sequence[tuple[str, float]],
    members_from: tuple[tuple[str | os.PathLike[str], str], ...] = (),
) -> ResultTable:
    bench = resolve_benchmark(benchmark)
    try:
        protocol = PROTOCOLS.create(eval_cfg.protocol or bench.protocol)
    except UnknownNameError as err:
        raise ConfigError(str(err)) from None
    dets = _detectors(tuple(eval_cfg.detectors), eval_cfg.detector_kwargs)
    _check_model_reads(model, dets)
    fitting = [
        n for n, d in dets.items() if type(d).fit is not Detector.fit
    ]  # detectors that learn from the training split
    for role, split, used in (("training", train, bool(fitting)), ("validation", val, True), ("ID test", test, True)):
        if used and split is not None and len(split) == 0:
            raise InputError(
                f"the {role} split '{split.name}' is empty; check data.classes, data.val_size and data.train_subset"
            )
    need_features = any("features" in d.requires for d in dets.values())
    note = on_stage or (lambda _stage: None)
    timer = _Timer()
    key = model_key or weights_hash(model)  # the caller passes the (TTA-qualified) key
    table = ResultTable(
        meta={"benchmark": bench.name, "protocol": protocol.name, "seed": seed, "parity": parity, "model_key": key}
    )
    skipped: dict[str, str] = {}

    def ext(ds: TensorDataset, split: str, ds_seed: int | str = "", features: bool = need_features) -> Extracted:
        return extract(
            model,
            ds,
            eval_cfg.batch_size,
            features,
            cache_dir,
            dataset_key(ds, split, ds_seed),
            key,
            channels_last=channels_last,
            members_from=members_from,
        )

    # ---- 1. extraction (one pass per dataset)
    shape = test.shape
    note("extracting ID splits")
    with timer("extract_id"):
        ex_test = ext(test, "test")
        fit_set = train
        if fit_size and len(train) > fit_size:
            g = torch.Generator().manual_seed(derive_seed(seed, _FIT_SALT))
            fit_set = train.subset(torch.randperm(len(train), generator=g)[:fit_size].sort().values)
        ex_val = ext(val, "val") if val is not None and len(val) else None
        # the training split is extracted only for detectors whose fit reads it (Detector.fit_splits)
        fit_train = any(
            "train" in d.fit_splits or ex_val is None for d in dets.values() if type(d).fit is not Detector.fit
        )
        if fit_train:
            ex_train = ext(fit_set, "train", seed if fit_set is not train else "")
        else:
            ex_train = ex_val if ex_val is not None else ex_test.subset(slice(0, 0))
            skipped["extract/train"] = "no detector fits on the training split"
    note("building OOD sets")
    with timer("ood_sets"):
        ood_sets = {
            name: ood_data[name]
            if name in ood_data
            else load_ood_set(
                name, shape, ood_set_size(name, bench, protocol, len(test), eval_cfg.n_ood), seed, base=test
            )
            for name in bench.ood
        }
        val_seed = derive_seed(seed, _VAL_OOD_SALT)
        val_ood_sets = (
            {
                name: val_ood_data[name]
                if name in val_ood_data
                else load_ood_set(name, shape, bench.n_val_ood, val_seed, base=val)
                for name in bench.val_ood
            }
            if ex_val is not None
            else {}
        )
    with timer("extract_ood"):
        ex_ood = {name: ext(ds, "ood", seed) for name, ds in ood_sets.items()}
        ex_val_ood = {name: ext(ds, "val_ood", val_seed) for name, ds in val_ood_sets.items()}
    table.meta["sizes"] = {
        "train": len(train),
        "fit": len(fit_set) if fit_train else 0,
        "val": 0 if val is None else len(val),
        "test": len(test),
        **{f"ood/{n}": len(d) for n, d in ood_sets.items()},
        **{f"val_ood/{n}": len(d) for n, d in val_ood_sets.items()},
    }

    # ---- 2. fit and tune every detector (validation data only)
    hparams: dict[str, dict[str, Any]] = {}
    ex_val_tune = ex_val.subset(slice(0, min(bench.n_val_id, len(ex_val)))) if ex_val is not None else None
    per_set = protocol.tunes_per_set
    for name, det in dets.items():
        note(f"fitting {name}")
        with timer(f"fit/{name}"):
            det.fit_with(ex_train, val_id=ex_val, val_ood=ex_val_ood or None, model=model)
            tuned: dict[str, Any] = {}
            if det.grid and per_set:
                pass  # tuned per OOD set in step 4 (the protocol's tuning split)
            elif det.grid:
                if ex_val_tune is not None and ex_val_ood:
                    tuned = det.tune(model, ex_val_tune, ex_val_ood)
                    _store_grid(table, name, "val_ood", tuned.pop("grid", None))
                else:
                    skipped[f"tune/{name}"] = "no validation split or no validation-OOD set: default hyperparameters"
        hparams[name] = {
            **det.hparams(),
            **({"objective": tuned["objective"], "tuned_on": sorted(ex_val_ood)} if tuned else {}),
        }
        if det.grid and per_set:
            hparams[name]["tuned_on"] = f"each OOD set's tuning images (protocol {protocol.name})"
    table.meta["detectors"] = hparams

    # ---- 3. ID calibration, raw and temperature-scaled
    with timer("calibration"):
        id_name = bench.id_dataset
        table.add_metrics(
            "id",
            calibration_metrics(ex_test.logits, ex_test.labels, drop_last_bin=parity),
            dataset=id_name,
            n=len(test),
        )
        temperature: float | None = None
        if eval_cfg.temperature and ex_val is not None:
            scaler = TemperatureScaler().fit(ex_val.logits, ex_val.labels)
            temperature = scaler.temperature
            fit_info = scaler.fit_result.as_dict() if scaler.fit_result is not None else {}
            table.meta["temperature_fit"] = fit_info
            cal = calibration_metrics(scaler(ex_test.logits), ex_test.labels, drop_last_bin=parity)
            table.add_metrics("id", cal, dataset=id_name, detector="ts", n=len(test))
            table.add(
                "id",
                "temperature",
                temperature,
                dataset=id_name,
                detector="ts",
                n=len(val) if val is not None else 0,
                extra={"converged": fit_info.get("converged"), "method": fit_info.get("method")},
            )
            table.arrays["ts/temperature"] = torch.tensor([temperature], dtype=torch.float64)
        for name, ex in ex_ood.items():
            n = len(ex)
            table.add("ood", "mmc", mmc(ex.logits.softmax(dim=1).amax(dim=1)), dataset=name, detector="msp", n=n)
            table.add_metrics(
                "ood",
                ood_calibration_metrics(ex_test.logits, ex_test.labels, ex.logits, parity),
                dataset=name,
                detector="msp",
                n=n,
            )
            if temperature is not None:
                cal = ood_calibration_metrics(
                    ex_test.logits / temperature, ex_test.labels, ex.logits / temperature, parity
                )
                table.add_metrics("ood", cal, dataset=name, detector="ts", n=n)
    table.meta["temperature"] = temperature

    # ---- 4. OOD detection
    for name, det in dets.items():
        note(f"scoring {name}")
        if det.grid and per_set:
            with timer(f"score/{name}"):
                hparams[name]["per_set"] = _score_tuned_per_set(
                    table, name, det, model, ex_test, ex_ood, protocol, seed
                )
            continue
        with timer(f"score/{name}"):
            s_id = det.score(ex_test, model).detach().cpu()
            table.arrays[f"scores/{name}/id"] = s_id
            for set_name, ex in ex_ood.items():
                s_ood = det.score(ex, model).detach().cpu()
                table.arrays[f"scores/{name}/{set_name}"] = s_ood
                values, extra = protocol_metrics(s_id, s_ood, protocol, seed, parity=parity)
                extra["hparams"] = hparams[name]
                _add_detection_rows(table, name, set_name, values, extra)

    # ---- 5. per-image bootstrap intervals (rulab.eval.intervals): the same resampled images for every model
    resampler = Resampler(eval_cfg.bootstrap) if eval_cfg.bootstrap > 0 else None
    if resampler is not None:
        note("bootstrap intervals")
        with timer("intervals"):
            id_replicates(table, ex_test.logits, ex_test.labels, resampler, bench.id_dataset, temperature, parity)
            scores = {
                d: {k.split("/", 2)[2]: v for k, v in table.arrays.items() if k.startswith(f"scores/{d}/")}
                for d in dets
            }
            msp = {name: ex.logits.to(torch.float64).softmax(dim=1).amax(dim=1) for name, ex in ex_ood.items()}
            tuned = {d for d in dets if f"scores/{d}/id" not in table.arrays}  # tuned per OOD set (odin-paper)
            ood_replicates(
                table, {d: v for d, v in scores.items() if d not in tuned}, protocol, seed, resampler, msp_ood=msp
            )
            for d in tuned:  # set by set, with the ID scores at that set's chosen hyperparameters
                for set_name in ex_ood:
                    s_id = table.arrays[f"tuning/{d}/{set_name}/id_scores"]
                    ood_replicates(table, {d: {"id": s_id, set_name: scores[d][set_name]}}, protocol, seed, resampler)

    # ---- 6. raw arrays
    table.arrays["id/logits"] = ex_test.logits
    table.arrays["id/labels"] = ex_test.labels
    if ex_val is not None:
        table.arrays["val/logits"] = ex_val.logits
        table.arrays["val/labels"] = ex_val.labels

    # ---- 7. covariate shift and far-away confidence (rulab.eval.shift / rulab.eval.farconf)
    if shift:
        note(f"covariate shift ({shift if isinstance(shift, str) else 'custom'})")
        with timer("shift"):
            # shifted test sets are benchmark data: the same corruption draws (seed 0) for every run and method
            sub = shift_eval.evaluate_shift(
                model,
                test,
                suite=shift,
                seed=0,
                batch_size=eval_cfg.batch_size,
                temperature=temperature,
                cache=shift_cache,
                clean_logits=ex_test.logits,
                channels_last=channels_last,
                resampler=resampler,
                logits_cache=(cache_dir, key) if cache_dir is not None else None,
                members_from=members_from,
            )
            table.extend(sub)
            table.meta["shift"] = sub.meta
    if eval_cfg.farconf:
        note("far-away confidence")
        with timer("farconf"):
            sub = farconf_eval.evaluate_farconf(
                model,
                test,
                ood_sets,
                eval_cfg,
                seed,
                rejection_index=10 if parity else None,
                id_logits=ex_test.logits,
                ood_logits={n: ex.logits for n, ex in ex_ood.items()},
            )
            table.extend(sub)
            table.meta["farconf"] = sub.meta
    if resampler is not None:
        with timer("intervals"):
            table.attach_intervals()
        table.meta["bootstrap"] = {"resamples": resampler.n_resamples, "seed": resampler.seed}
    table.meta["skipped"] = skipped
    table.meta["timing"] = timer.seconds
    table.meta["cpu_timing"] = timer.cpu
    return table
