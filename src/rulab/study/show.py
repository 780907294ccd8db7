"""``rulab show NAME`` and ``--dry-run``: what a preset or a study will do, before anything runs.

For a preset (or any resolved run config) :func:`plan_run` gathers, without reading any data or writing any file:

* the resolved config (preset → YAML → overrides, validated);
* the data it needs — the training set, the benchmark's test and validation OOD sets, a method's outlier set, the
  class list a WordNet-id exclusion reads, pre-trained weights and a fine-tuning parent — each with whether it is on
  this machine (the source chain's stat-only look-up, :func:`rulab.data.fetch.list_data`), its size on disk, and how
  to get it when it is missing;
* an estimate of its cost (:class:`Cost`, "How the cost is estimated" below).

For a study, :func:`plan_study` does the same for each of its presets and counts the runs (presets × seeds, and which
are evaluated). :func:`show` renders either as text; the command line's ``--dry-run`` on ``train`` and ``study``
prints the same plan and stops.

How the cost is estimated:

1. *Work.* The model's forward pass of one image is counted in floating-point operations (FLOPs, multiply and add
   counted separately) with :class:`torch.utils.flop_counter.FlopCounterMode` on a ``meta``-device copy of the model
   (no memory, no arithmetic). Training costs ``passes × forward FLOPs`` per image, where ``passes`` is the method's
   :meth:`~rulab.methods.base.Method.passes_per_image` (3 for a forward and a backward pass; PGD training adds
   ``3·steps + 1`` per restart), times the images of every epoch (the training split after class filtering and the
   validation hold-out, from the published split sizes :data:`rulab.data.datasets.DATASET_FACTS`). Evaluation counts
   one forward pass per image of the ID splits, OOD sets and shifted test sets it reads, and the PGD passes of the
   far-away tests; gradient detectors' tuning grids (ODIN) are not counted, so evaluation is a lower bound.
2. *Time.* With ``measure=True`` (``rulab show --measure``), one training step of the real model and method is timed on
   this machine's device (after a warm-up step; the configured batch on a GPU, 8 images on a CPU) and the work is
   converted to time at that measured rate; without it, only the work is given. The time is for one process and
   excludes data loading and checkpoint writes, which are small next to the network passes at paper scale.

One concern, kept in one file: planning and rendering `rulab show` and `--dry-run` (the data look-ups, the cost
estimate and its text).
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from rulab.config import RunCfg, dump_yaml
from rulab.data.datasets import DATASET_FACTS
from rulab.data.fetch import SOURCES, dataset_root, list_data
from rulab.distributed import resolve_device
from rulab.errors import ConfigError, RulabError
from rulab.presets import load_config
from rulab.presets.study_spec import Study
from rulab.registry import BENCHMARKS, METHODS, MODELS, PRESETS, STUDIES
from rulab.study.plan import get_study, plan_cells

__all__ = [
    "DataNeed",
    "Cost",
    "RunPlan",
    "StudyPlan",
    "plan_run",
    "plan_study",
    "show",
    "forward_flops",
    "measure_step",
]


@dataclass(frozen=True)
class DataNeed:
    """One thing a run reads.

    Attributes:
        name: the dataset, OOD set or file.
        role: what the run uses it for ("training set", "test OOD set", "weights", ...).
        present: whether it is on this machine (generated sets always are).
        origin: where it was found (``cache``, ``system``, ``generated``, ``bundled:<package>``, ``file``) or ``missing``.
        size_bytes: bytes on disk (0 when missing or generated).
        detail: images and shape, or the path.
        todo: how to get it when it is missing.
    """

    name: str
    role: str
    present: bool
    origin: str
    size_bytes: int = 0
    detail: str = ""
    todo: str = ""


@dataclass(frozen=True)
class Cost:
    """The estimated cost of one run (module docstring, "How the cost is estimated").

    Attributes:
        forward_flops: FLOPs of one image's forward pass (NaN when the model could not be counted).
        passes: forward-pass equivalents per training image (the method's).
        train_images: training images per epoch; ``approx`` when class filtering makes it an estimate.
        steps: optimizer steps of the whole run.
        train_flops: ``forward_flops × passes × images seen``.
        eval_passes: forward passes of the evaluation (0 for a run that is not evaluated).
        eval_flops: ``forward_flops × eval_passes``.
        seconds_per_step: measured seconds of one training step of ``measured_batch`` images (NaN when not measured).
        measured_batch: images of the timed step.
        device: where it was measured.
    """

    forward_flops: float
    passes: float
    train_images: int
    approx: bool
    steps: int
    batch_size: int
    train_flops: float
    eval_passes: int
    eval_flops: float
    seconds_per_step: float = math.nan
    measured_batch: int = 0
    device: str = ""

    @property
    def train_seconds(self) -> float:
        """Estimated training time: the measured seconds per image times the images seen (NaN when not measured)."""
        if math.isnan(self.seconds_per_step) or not self.measured_batch:
            return math.nan
        return self.seconds_per_step / self.measured_batch * self.steps * self.batch_size

    @property
    def eval_seconds(self) -> float:
        """Estimated evaluation time at the measured rate (a forward pass counts as a third of a training pass)."""
        if math.isnan(self.train_seconds) or not self.passes:
            return math.nan
        per_image_pass = self.seconds_per_step / self.measured_batch / self.passes
        return per_image_pass * self.eval_passes


@dataclass
class RunPlan:
    """What one preset (or config) will do: its config, data, cost, and what stops it from running."""

    name: str
    description: str = ""
    cfg: RunCfg | None = None
    error: str = ""
    data: list[DataNeed] = field(default_factory=list)
    cost: Cost | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[DataNeed]:
        return [d for d in self.data if not d.present]


@dataclass
class StudyPlan:
    """What a study will do: its cells (preset, seed) and the plan of each distinct preset."""

    name: str
    description: str
    seeds: tuple[int, ...]
    cells: list[tuple[str, int, bool, str]]  # (preset, seed, evaluated, run directory)
    presets: dict[str, RunPlan]
    error: str = ""
    settings: tuple[str, ...] = ()  # the study's overrides of every cell, then the user's
    ensemble: bool = False  # each evaluated preset's seeds evaluated as one deep ensemble afterwards
    mc_dropout: int = 0  # MC-dropout passes of every evaluated cell whose model has dropout (0: none)


# --------------------------------------------------------------------------------------------- data


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


def _todo(name: str) -> str:
    """How to get a missing dataset (the source's download URL, Debian package or manual instructions)."""
    if name not in SOURCES:
        return ""
    src = SOURCES.get(name)
    ways = []
    if src.apt_package:
        ways.append(f"sudo apt-get install {src.apt_package}")
    if any(a.urls for a in src.archives) or any(rf.urls for rf in src.files):
        ways.append(f"rulab data fetch {name}")
    if src.manual:
        ways.append(f"download from {src.manual}")
    where = dataset_root() / name
    ways.append(f"or copy the files to {where}/")
    return "; ".join(ways)


def _train_images(cfg: RunCfg) -> tuple[int, bool]:
    """Training images per epoch from the published split sizes: after class filtering, the validation hold-out and
    the labelled subset; ``approx`` when classes are filtered (the per-class counts are not tabled)."""
    facts = DATASET_FACTS.get(cfg.data.dataset)
    if facts is None:
        return 0, True
    d = cfg.data
    n = facts.sizes.get("train", 0)
    approx = False
    k = facts.classes
    kept = k
    if d.classes:
        kept = len(d.classes)
    elif d.exclude_classes:
        kept = k - len(set(d.exclude_classes))
    if d.kwargs.get("exclude_classes_of") == "tiny_imagenet":
        kept -= DATASET_FACTS["tiny_imagenet"].classes
    if d.kwargs.get("exclude_wnids"):
        kept -= len(d.kwargs["exclude_wnids"])
    if kept != k:
        n, approx = round(n * kept / k), True
    if d.val_split != "official":
        n -= d.val_size
    if d.train_subset:
        n = min(n, d.train_subset)
    return max(n, 0), approx


def _shape(cfg: RunCfg) -> tuple[int, int, int] | None:
    facts = DATASET_FACTS.get(cfg.data.dataset)
    if facts is None:
        return None
    c, h, w = facts.shape
    size = cfg.data.kwargs.get("size")
    return (c, int(size), int(size)) if size else (c, h, w)


def _data_needs(cfg: RunCfg, evaluated: bool, rows: dict[str, dict[str, Any]]) -> list[DataNeed]:
    needs: list[DataNeed] = []
    seen: set[str] = set()

    def add(name: str, role: str, detail: str = "") -> None:
        if (name, role) in seen:
            return
        seen.add((name, role))
        row = rows.get(name)
        if row is None:
            needs.append(DataNeed(name, role, False, "unknown", 0, detail, "not a registered dataset or OOD set"))
            return
        present = bool(row.get("present"))
        needs.append(
            DataNeed(
                name,
                role,
                present,
                str(row.get("origin") or ""),
                int(row.get("size_bytes") or 0),
                detail,
                "" if present else _todo(name),
            )
        )

    def add_file(path: str, role: str, todo: str) -> None:
        p = Path(path)
        present = p.exists()
        size = (
            (p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file()))
            if present
            else 0
        )
        needs.append(DataNeed(path, role, present, "file" if present else "missing", size, "", "" if present else todo))

    facts = DATASET_FACTS.get(cfg.data.dataset)
    n, approx = _train_images(cfg)
    shape = _shape(cfg)
    detail = ""
    if facts is not None and shape is not None:
        splits = " / ".join(f"{v:,} {k}" for k, v in facts.sizes.items())
        detail = f"{splits} images of {'×'.join(map(str, shape))}; {'≈' if approx else ''}{n:,} train per epoch"
    add(cfg.data.dataset, "training set", detail)
    of = cfg.data.kwargs.get("exclude_classes_of")
    if of:
        add(str(of), "classes to exclude (WordNet ids)")
    if of or cfg.data.kwargs.get("exclude_wnids"):
        base = dataset_root()
        maps = [base / d / "map_clsloc.txt" for d in (cfg.data.dataset, "imagenet32", "imagenet64")]
        found = next((m for m in maps if m.is_file()), maps[0])
        add_file(str(found), "class map (map_clsloc.txt)", "copy the ILSVRC devkit's data/map_clsloc.txt there")
    method = METHODS.create(cfg.method.name, **dict(cfg.method.kwargs))
    if getattr(method, "outliers", ""):
        add(method.outliers, "training outliers")
    pretrained = cfg.model.kwargs.get("pretrained")
    if pretrained:
        add_file(
            str(pretrained),
            "pre-trained weights",
            "make it with the commands in rulab.models.resnet_tv, or set model.kwargs.pretrained",
        )
    if cfg.train.init_from:
        add_file(cfg.train.init_from, "checkpoint to fine-tune", "train the parent run first, or set train.init_from")
    if evaluated:
        bench = BENCHMARKS.create(cfg.eval.benchmark)
        for name in bench.ood:
            add(name, "test OOD set")
        for name in bench.val_ood:
            add(name, "validation OOD set")
    return needs


# --------------------------------------------------------------------------------------------- cost


def _model_kwargs(cfg: RunCfg, shape: tuple[int, int, int], k: int) -> dict[str, Any]:
    params = MODELS.parameters(cfg.model.name)
    kwargs = {key: v for key, v in cfg.model.kwargs.items() if key != "pretrained"}  # no file is read for a plan
    for key, v in (("num_classes", k), ("in_channels", shape[0]), ("input_size", shape[1])):
        if key in params:
            kwargs[key] = v
    return kwargs


def forward_flops(cfg: RunCfg, shape: tuple[int, int, int], num_classes: int) -> float:
    """FLOPs of the configured model's forward pass of one ``shape`` image, counted on the ``meta`` device (eval mode;
    NaN when the model cannot run there). Counts are kept per (model, keyword arguments) for the process."""
    kwargs = _model_kwargs(cfg, shape, num_classes)
    # normalisation and dropout do not change the count, and the class count only changes the head (2·D·K FLOPs of
    # the Linear head on D features): one count serves every preset of an architecture and input size
    key = (cfg.model.name, repr(sorted((k, v) for k, v in kwargs.items() if k not in _NO_FLOPS)), tuple(shape))
    if key not in _FLOPS:
        _FLOPS[key] = (_count_flops(cfg.model.name, kwargs, shape), kwargs.get("num_classes", num_classes))
    flops, counted_k = _FLOPS[key]
    return (
        flops + 2.0 * _feature_dim(cfg.model.name, kwargs) * (num_classes - counted_k)
        if "num_classes" in kwargs
        else flops
    )


_FLOPS: dict[tuple[str, str, tuple[int, ...]], tuple[float, int]] = {}
_NO_FLOPS = ("mean", "std", "dropout", "dropout_placement", "zero_init_residual", "num_classes")
_FEATURES: dict[tuple[str, str], int] = {}


def _feature_dim(name: str, kwargs: dict[str, Any]) -> int:
    """The model's feature dimension D (the input of its Linear head), read from a ``meta``-device instance."""
    key = (name, repr(sorted((k, v) for k, v in kwargs.items() if k not in _NO_FLOPS)))
    if key not in _FEATURES:
        with torch.device("meta"):
            _FEATURES[key] = int(getattr(MODELS.create(name, **kwargs), "feature_dim", 0))
    return _FEATURES[key]


def _count_flops(name: str, kwargs: dict[str, Any], shape: tuple[int, int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.device("meta"):
            model = MODELS.create(name, **kwargs)
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.empty(1, *shape, device="meta"))
        return float(counter.get_total_flops())
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return math.nan


def measure_step(
    cfg: RunCfg, shape: tuple[int, int, int], num_classes: int, batch: int | None = None, flops: float = math.nan
) -> tuple[float, int, str]:
    """Seconds of one training step (forward, the method's extra passes, backward, optimizer) of the configured model
    and method on random images, on the device the config resolves to: the fastest of up to 5 timed steps (at most
    about 2 s of them) after two warm-up steps.

    The batch is the configured one on a GPU; on a CPU it is sized to about 20 GFLOP of forward passes (from
    ``flops``, the forward FLOPs of one image), between 2 images and the configured batch, since a CPU's rate hardly
    depends on the batch once per-call overheads are amortised.

    Returns:
        ``(seconds, images, device)``.
    """
    from rulab.data.loader import make_generator
    from rulab.train.optim import build_optimizer

    device = resolve_device(cfg.device)
    if batch is None:
        batch = cfg.train.batch_size
        if device.type != "cuda":
            batch = min(batch, max(2, int(2e10 / (3 * flops)) if flops == flops and flops > 0 else 8))
    b = batch
    torch.manual_seed(0)
    model = MODELS.create(cfg.model.name, **_model_kwargs(cfg, shape, num_classes)).to(device).train()
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = METHODS.create(cfg.method.name, **dict(cfg.method.kwargs))
    method.setup(model, num_classes, shape)
    extra = torch.nn.ModuleDict(method.modules()).to(device)
    optimizer = build_optimizer(model, cfg.optim, list(extra.parameters()))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, *shape, generator=g).to(device)
    if cfg.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (b,), generator=g).to(device)
    data: dict[str, Any] = {"x": x, "y": y, "step": 0}
    if method.batch_spec == "two_views":
        data["x2"] = x.flip(3)
    if method.batch_spec == "id+outliers":
        data["x_out"] = torch.rand(max(1, round(b * method.outlier_batch_ratio)), *shape, generator=g).to(device)

    def step() -> None:
        data["generator"] = make_generator(0, device=device)
        optimizer.zero_grad(set_to_none=True)
        method(model, data)["loss"].backward()
        optimizer.step()

    def timed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    step()
    step()
    times = [timed()]
    while len(times) < 5 and sum(times) < 2.0:
        times.append(timed())
    where = f"cpu, {torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    return min(times), b, where


def _eval_passes(cfg: RunCfg) -> int:
    """Forward passes of one evaluation (module docstring): the ID splits, the OOD sets, the shifted test sets and the
    far-away tests' PGD and α-scaling passes; detectors' tuning grids are not counted."""
    from rulab.data.corruptions import shift_suite

    facts = DATASET_FACTS.get(cfg.data.dataset)
    if facts is None:
        return 0
    e = cfg.eval
    bench = BENCHMARKS.create(e.benchmark)
    n_test = facts.sizes.get("test", 0)
    n_val = facts.sizes.get("val", 0) if cfg.data.val_split == "official" else cfg.data.val_size
    n_fit = min(_train_images(cfg)[0], 10_000)
    cap = e.n_ood or bench.n_ood
    passes = n_test + n_val + n_fit + cap * len(bench.ood) + (bench.n_val_ood * len(bench.val_ood) if n_val else 0)
    if e.shift:
        passes += n_test * len(shift_suite(e.shift))
    if e.farconf:
        tests = set(e.farconf_tests)
        n_adv = min(e.adv_n, n_test)
        if "alpha" in tests:
            passes += e.alpha_trials * 90  # about 67 doublings to 1e20 and 14 bisection steps, and the curve
        if "noise" in tests:
            passes += 2 * n_adv * (3 * e.adv_steps + 2)
        if "samples" in tests:
            passes += n_adv * (e.adv_restarts * (3 * e.adv_steps + 2) + 1)
    return passes


def estimate_cost(cfg: RunCfg, evaluated: bool = True, measure: bool = False) -> Cost | None:
    """The cost of one run of ``cfg`` (module docstring); ``None`` when the dataset's size is not tabled."""
    facts = DATASET_FACTS.get(cfg.data.dataset)
    shape = _shape(cfg)
    if facts is None or shape is None:
        return None
    k = facts.classes
    n, approx = _train_images(cfg)
    if cfg.data.kwargs.get("exclude_classes_of") == "tiny_imagenet":
        k -= DATASET_FACTS["tiny_imagenet"].classes
    if cfg.data.classes:
        k = len(cfg.data.classes)
    elif cfg.data.exclude_classes:
        k -= len(set(cfg.data.exclude_classes))
    k = max(k, 2)
    bs = cfg.train.batch_size
    per_epoch = (n // bs if cfg.train.drop_last and n >= bs else math.ceil(n / bs)) if n else 0
    steps = cfg.train.epochs * per_epoch
    if cfg.train.max_steps:
        steps = min(steps, cfg.train.max_steps) if cfg.train.epochs else cfg.train.max_steps
    method = METHODS.create(cfg.method.name, **dict(cfg.method.kwargs))
    passes = float(method.passes_per_image())
    fwd = forward_flops(cfg, shape, k)
    eval_passes = _eval_passes(cfg) if evaluated else 0
    cost = Cost(fwd, passes, n, approx, steps, bs, fwd * passes * steps * bs, eval_passes, fwd * eval_passes)
    if measure:
        seconds, b, device = measure_step(cfg, shape, k, flops=fwd)
        cost = replace(cost, seconds_per_step=seconds, measured_batch=b, device=device)
    return cost


# --------------------------------------------------------------------------------------------- plans


def plan_run(
    cfg: RunCfg,
    evaluated: bool = True,
    measure: bool = False,
    rows: dict[str, dict[str, Any]] | None = None,
    description: str = "",
) -> RunPlan:
    """The plan of one resolved run config: data needs (stat only) and cost (module docstring)."""
    rows = rows if rows is not None else {r["name"]: r for r in list_data()}
    plan = RunPlan(cfg.preset or cfg.name, description, cfg)
    plan.data = _data_needs(cfg, evaluated, rows)
    try:
        plan.cost = estimate_cost(cfg, evaluated, measure)
    except RulabError as err:
        plan.notes.append(f"cost not estimated: {err}")
    if cfg.train.reset_head and not cfg.train.init_from:
        plan.notes.append(
            "fine-tunes a pre-trained run: needs train.init_from (its study fills it with the parent run)"
        )
    if not evaluated:
        plan.notes.append("only trained (its study does not evaluate it)")
    return plan


def _doc(name: str) -> str:
    doc = (PRESETS.get(name).__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ") if doc else ""


def plan_preset(
    name: str,
    overrides: Sequence[str] = (),
    config: str | None = None,
    measure: bool = False,
    rows: dict[str, dict[str, Any]] | None = None,
    evaluated: bool = True,
) -> RunPlan:
    """:func:`plan_run` of a registered preset; a preset that cannot be resolved on this machine (a file it reads is
    missing) gives a plan with ``error`` set instead of raising."""
    description = _doc(name) if name in PRESETS else ""
    try:
        cfg = load_config(name, config, overrides, check=False)
        from rulab.eval.validate import validate_run

        validate_run(
            replace(cfg, train=replace(cfg.train, init_from="", reset_head=False))
            if cfg.train.reset_head and not cfg.train.init_from
            else cfg
        )
    except RulabError as err:
        return RunPlan(name, description, None, str(err))
    return plan_run(cfg, evaluated, measure, rows, description)


def plan_study(
    study: Study | str,
    seeds: Sequence[int] | None = None,
    out_dir: str = "runs",
    overrides: Sequence[str] = (),
    measure: bool = False,
    ensemble: bool | None = None,
    mc_dropout: int | None = None,
) -> StudyPlan:
    """The plan of a study: its cells and the plan of each preset (run with the study's overrides).

    ``ensemble`` and ``mc_dropout`` are the command line's ``--ensemble`` / ``--no-ensemble`` and ``--mc-dropout``
    (default: the study's own settings), so that the plan names the derived evaluations that will run.
    """
    s = get_study(study)
    rows = {r["name"]: r for r in list_data()}
    seeds_used = tuple(int(x) for x in (seeds or s.seeds))
    error = ""
    cells: list[tuple[str, int, bool, str]] = []
    try:
        cells = [(c.preset, c.seed, c.evaluate, str(c.run_dir)) for c in plan_cells(s, seeds_used, out_dir, overrides)]
    except RulabError as err:
        error = str(err)
        cells = [
            (p, seed, s.evaluate and p not in s.skip_eval, str(Path(out_dir) / f"{p}-s{seed}"))
            for seed in seeds_used
            for p in s.presets
        ]
    presets = {}
    for p in s.presets:
        items = [o for o in (*s.overrides_for(p), *overrides) if "{run:" not in o]
        presets[p] = plan_preset(p, items, measure=measure, rows=rows, evaluated=s.evaluate and p not in s.skip_eval)
    return StudyPlan(
        s.name,
        s.description,
        seeds_used,
        cells,
        presets,
        error,
        settings=(*s.overrides, *overrides),
        ensemble=s.ensemble if ensemble is None else bool(ensemble),
        mc_dropout=s.mc_dropout if mc_dropout is None else int(mc_dropout),
    )


# --------------------------------------------------------------------------------------------- text


def _flops(x: float) -> str:
    if math.isnan(x):
        return "not counted"
    for unit, f in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if x >= f:
            return f"{x / f:.3g} {unit}"
    return f"{x:.3g} FLOP"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "not measured (add --measure to time one training step here)"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _run_lines(plan: RunPlan, with_config: bool = True) -> list[str]:
    lines = []
    if plan.error:
        return [f"  cannot be resolved on this machine: {plan.error}"]
    width = max((len(d.name) for d in plan.data), default=4)
    lines.append("  data:")
    for d in plan.data:
        status = "present" if d.present else "MISSING"
        size = f", {_size(d.size_bytes)} on disk" if d.size_bytes else ""
        where = f" ({d.origin}{size})" if d.present else ""
        text = f"    {d.name:<{width}}  {d.role:<24} {status}{where}"
        if d.detail:
            text += f"  {d.detail}"
        lines.append(text)
        if not d.present and d.todo:
            lines.append(f"    {'':<{width}}  to get it: {d.todo}")
    c = plan.cost
    if c is not None:
        lines.append("  cost (estimate: counted FLOPs, and a timed step with --measure; docs/guide/presets.md):")
        lines.append(
            f"    forward pass: {_flops(c.forward_flops)} per image; {c.passes:g} forward-pass equivalents per training image"
        )
        lines.append(
            f"    training: {c.steps:,} steps of {c.batch_size} ({'≈' if c.approx else ''}{c.train_images:,} images per epoch) = {_flops(c.train_flops)}"
        )
        if c.eval_passes:
            lines.append(f"    evaluation: ≥ {c.eval_passes:,} forward passes = {_flops(c.eval_flops)}")
        if not math.isnan(c.seconds_per_step):
            lines.append(
                f"    measured here ({c.device}): {c.seconds_per_step:.3g} s per training step of {c.measured_batch} images"
            )
        lines.append(
            f"    time on this machine: training {_duration(c.train_seconds)}"
            + (
                f", evaluation about {_duration(c.eval_seconds)} (a forward pass at a third of a training pass)"
                if c.eval_passes and not math.isnan(c.eval_seconds)
                else ""
            )
        )
    lines += [f"  note: {n}" for n in plan.notes]
    if with_config and plan.cfg is not None:
        lines.append("  config:")
        lines += ["    " + ln for ln in dump_yaml(plan.cfg).rstrip("\n").splitlines()]
    return lines


def render_run(plan: RunPlan, with_config: bool = True) -> str:
    """A preset's plan as text (what ``rulab show PRESET`` and ``rulab train --dry-run`` print)."""
    head = f"preset {plan.name}" + (f": {plan.description}" if plan.description else "")
    missing = plan.missing
    lines = [
        head,
        "  runs: 1"
        + (f" (seed {plan.cfg.seed}, run directory {Path(plan.cfg.out_dir) / plan.cfg.name})" if plan.cfg else ""),
    ]
    lines += _run_lines(plan, with_config)
    if plan.error:
        lines.append("  nothing can run until that is fixed")
    elif missing:
        lines.append(f"  missing here: {', '.join(d.name for d in missing)}")
    else:
        lines.append("  everything it reads is on this machine")
    return "\n".join(lines) + "\n"


def _derived_lines(plan: StudyPlan) -> list[str]:
    """The evaluations a study runs after its cells: MC dropout per cell, deep ensembles per preset."""
    lines = []
    if plan.mc_dropout:
        lines.append(
            f"  then MC dropout ({plan.mc_dropout} passes) of every evaluated cell whose model has dropout, each a run of its own"
        )
    evaluated = [p for p in plan.presets if any(c[0] == p and c[2] for c in plan.cells)]
    if plan.ensemble and len(plan.seeds) >= 2 and evaluated:
        tag = "-".join(f"s{seed}" for seed in plan.seeds)
        out = Path(plan.cells[0][3]).parent if plan.cells else Path("runs")
        lines.append(
            f"  then {len(evaluated)} deep ensemble{'s' if len(evaluated) > 1 else ''}, each preset's seeds {', '.join(map(str, plan.seeds))} as one run "
            f"(e.g. {out / f'{evaluated[0]}-ens-{tag}'}); --no-ensemble leaves them out"
        )
    elif plan.ensemble:
        lines.append("  no deep ensembles: an ensemble needs at least two seeds of a preset")
    else:
        lines.append("  no deep ensembles (--ensemble evaluates each preset's seeds as one)")
    return lines


def render_study(plan: StudyPlan, with_config: bool = False) -> str:
    """A study's plan as text (what ``rulab show STUDY`` and ``rulab study --dry-run`` print)."""
    n_eval = sum(1 for c in plan.cells if c[2])
    lines = [
        f"study {plan.name}" + (f": {plan.description}" if plan.description else ""),
        f"  runs: {len(plan.cells)} ({len(plan.presets)} presets × {len(plan.seeds)} seeds {', '.join(map(str, plan.seeds))}); {n_eval} evaluated",
    ]
    if plan.error:
        lines.append(f"  the study cannot be planned on this machine: {plan.error}")
    lines.append("  cells (in order):")
    for preset, seed, evaluated, run_dir in plan.cells:
        done = (Path(run_dir) / "model.safetensors").exists()
        lines.append(
            f"    {preset} seed {seed}: {run_dir}{'' if evaluated else ' (trained only)'}{' [trained before]' if done else ''}"
        )
    lines += _derived_lines(plan)
    if plan.settings:
        lines.append(
            f"  every cell: {', '.join(o.lstrip('-') for o in plan.settings)} (over each preset's own settings)"
        )
    total_train = total_eval = 0.0
    seconds = 0.0
    for name, p in plan.presets.items():
        lines.append("")
        lines.append(f"preset {name}" + (f": {p.description}" if p.description else ""))
        lines += _run_lines(p, with_config)
        if p.cost is not None:
            k = sum(1 for c in plan.cells if c[0] == name)
            total_train += k * p.cost.train_flops
            total_eval += k * p.cost.eval_flops
            seconds += k * (
                (0.0 if math.isnan(p.cost.train_seconds) else p.cost.train_seconds)
                + (0.0 if math.isnan(p.cost.eval_seconds) else p.cost.eval_seconds)
            )
    missing = sorted(
        {d.name for p in plan.presets.values() for d in p.missing} | {n for n, p in plan.presets.items() if p.error}
    )
    lines.append("")
    lines.append(
        f"total: training {_flops(total_train)}, evaluation ≥ {_flops(total_eval)}"
        + (f", about {_duration(seconds)} on this machine" if seconds else "")
    )
    lines.append(f"missing here: {', '.join(missing)}" if missing else "everything it reads is on this machine")
    return "\n".join(lines) + "\n"


def show(
    name: str,
    overrides: Sequence[str] = (),
    config: str | None = None,
    measure: bool = False,
    seeds: Sequence[int] | None = None,
    out_dir: str = "runs",
) -> str:
    """The plan of a registered preset or study as text (``rulab show NAME``); reads no data and writes nothing.

    Raises:
        ConfigError: ``name`` is neither a preset nor a study (the message names the closest of both).
    """
    if name in STUDIES and name in PRESETS:
        return (
            render_study(plan_study(name, seeds, out_dir, overrides, measure))
            + "\n"
            + render_run(plan_preset(name, overrides, config, measure))
        )
    if name in STUDIES:
        return render_study(plan_study(name, seeds, out_dir, overrides, measure))
    if name in PRESETS:
        return render_run(plan_preset(name, overrides, config, measure))
    close = difflib.get_close_matches(name, PRESETS.list() + STUDIES.list(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"'{name}' is neither a preset nor a study{hint}; `rulab list presets` and `rulab list studies` show them"
    )
