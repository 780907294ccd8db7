"""Studies as data: a grid of presets × seeds (× the evaluation of each run), registered in ``STUDIES``.

A cell is one (preset, seed) run followed by its evaluation. Overrides may refer to another cell of the same
seed with ``{run:PRESET}``, which the study runner replaces by that run's directory, so a pre-train → fine-tune
pipeline is two presets in order (two runs linked by a checkpoint).

Where the cells run is data too: :class:`LauncherCfg` (``local``, ``slurm`` through submitit, or ``ray``) with its
resources, in a study's ``launcher`` field, in a study YAML file's ``launcher:`` section (:func:`load_study`), or
from ``launcher.*`` overrides on the command line (docs/distributed.md, "A study on a cluster").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rulab.config import apply_overrides, from_dict, read_yaml, to_dict
from rulab.errors import ConfigError

__all__ = ["Study", "RUN_REF", "LauncherCfg", "SlurmCfg", "RayCfg", "LAUNCHERS", "launcher_config", "load_study"]

RUN_REF = re.compile(r"\{run:([A-Za-z0-9_.\-]+)\}")

LAUNCHERS = ("local", "slurm", "ray")


@dataclass(frozen=True)
class SlurmCfg:
    """Resources of one cell's SLURM job (submitit's parameters; ``launcher.slurm.*``).

    Attributes:
        partition: ``--partition`` (``""``: the cluster's default).
        gpus_per_node: GPUs of the job (``--gpus-per-node``); with more than one, the job starts one task per GPU
            and the cell trains with DDP across them (``tasks_per_node`` then defaults to this number).
        tasks_per_node: processes of the job (``--ntasks-per-node``; 0: ``max(gpus_per_node, 1)``); more than one
            trains with DDP, as ``torchrun --nproc_per_node`` would.
        nodes: nodes of the job (``--nodes``); DDP spans all ``nodes × tasks_per_node`` processes.
        cpus_per_task: ``--cpus-per-task``; also the cell's torch threads.
        mem_gb: memory per node in GB (``--mem``; 0: the cluster's default).
        timeout_min: the job's time limit in minutes (``--time``); a job reaching it is requeued and resumes.
        array_parallelism: 0 (default): one job per cell, each depending (``afterok``) on its own parents only;
            N > 0: one job array per dependency level, at most N of its tasks running at once (a level then waits
            for every parent of the level).
        account, qos, constraint: ``--account``, ``--qos``, ``--constraint`` (``""``: not given).
        additional: further sbatch options, ``{"exclude": "node07", "reservation": "x"}`` (``--exclude=node07``).
        setup: shell lines run in the job before Python starts (``module load cuda``, ``source venv/bin/activate``).
        executor: ``slurm`` (sbatch) or ``local`` (submitit's LocalExecutor: the same code path on this machine,
            each cell a process of its own; it cannot hold a job back until its parents finish, so the driver
            submits a cell once its parents have finished).
    """

    partition: str = ""
    gpus_per_node: int = 0
    tasks_per_node: int = 0
    nodes: int = 1
    cpus_per_task: int = 1
    mem_gb: float = 0.0
    timeout_min: int = 24 * 60
    array_parallelism: int = 0
    account: str = ""
    qos: str = ""
    constraint: str = ""
    additional: Mapping[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    executor: str = "slurm"


@dataclass(frozen=True)
class RayCfg:
    """Resources of one cell's Ray task (``launcher.ray.*``).

    Attributes:
        address: the Ray cluster to join (``"auto"``: the one this machine belongs to; ``"ray://head:10001"``: a
            remote one); ``""`` starts a local instance for the study and stops it at the end.
        num_cpus: CPUs per cell (a Ray task resource); also the cell's torch threads.
        num_gpus: GPUs per cell, at most 1 (a task is one process; train multi-GPU cells on SLURM or with torchrun).
        local_cpus: CPUs of a started local instance (0: all of this machine's).
    """

    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    local_cpus: int = 0


@dataclass(frozen=True)
class LauncherCfg:
    """Where a study's cells run (``launcher.*``).

    Attributes:
        name: ``local`` (default: processes of this machine sharing the database through claims), ``slurm``
            (submitit) or ``ray``.
        retries: how often a cell whose worker died (killed, lost node, out of memory) is started again, resuming
            from its last checkpoint, before it is marked failed; a cell whose code raised an error is marked
            failed at once (the error would repeat).
        poll_s: seconds between the driver's looks at its jobs.
        slurm: :class:`SlurmCfg`.
        ray: :class:`RayCfg`.
    """

    name: str = "local"
    retries: int = 1
    poll_s: float = 5.0
    slurm: SlurmCfg = field(default_factory=SlurmCfg)
    ray: RayCfg = field(default_factory=RayCfg)

    def __post_init__(self) -> None:
        check_launcher(self)


def check_launcher(cfg: LauncherCfg) -> None:
    """Refuse impossible launcher values with one sentence naming the key."""
    if cfg.name not in LAUNCHERS:
        raise ConfigError(
            f"launcher '{cfg.name}' is not one of {', '.join(LAUNCHERS)}; pass --launcher local, slurm or ray"
        )
    if cfg.retries < 0:
        raise ConfigError(f"launcher.retries must be >= 0, got {cfg.retries}")
    if not (cfg.poll_s > 0 and math.isfinite(cfg.poll_s)):
        raise ConfigError(f"launcher.poll_s must be a positive number of seconds, got {cfg.poll_s}")
    s, r = cfg.slurm, cfg.ray
    if s.executor not in ("slurm", "local"):
        raise ConfigError(
            f"launcher.slurm.executor must be 'slurm' or 'local' (submitit's LocalExecutor), got '{s.executor}'"
        )
    for key in ("gpus_per_node", "tasks_per_node", "array_parallelism"):
        if getattr(s, key) < 0:
            raise ConfigError(f"launcher.slurm.{key} must be >= 0, got {getattr(s, key)}")
    for key in ("nodes", "cpus_per_task", "timeout_min"):
        if getattr(s, key) < 1:
            raise ConfigError(f"launcher.slurm.{key} must be >= 1, got {getattr(s, key)}")
    if not s.mem_gb >= 0:
        raise ConfigError(f"launcher.slurm.mem_gb must be >= 0 (0: the cluster's default), got {s.mem_gb}")
    if not r.num_cpus > 0:
        raise ConfigError(f"launcher.ray.num_cpus must be > 0, got {r.num_cpus}")
    if not 0 <= r.num_gpus <= 1:
        raise ConfigError(
            f"launcher.ray.num_gpus must be between 0 and 1, got {r.num_gpus}: a Ray task is one process; "
            "train multi-GPU cells with --launcher slurm (launcher.slurm.gpus_per_node) or torchrun"
        )
    if r.local_cpus < 0:
        raise ConfigError(f"launcher.ray.local_cpus must be >= 0 (0: all CPUs), got {r.local_cpus}")


@dataclass(frozen=True)
class _LauncherRoot:
    launcher: LauncherCfg = field(default_factory=LauncherCfg)


def launcher_config(
    base: LauncherCfg | None = None, name: str | None = None, overrides: Sequence[str] = ()
) -> LauncherCfg:
    """``base`` (default: ``local``), then ``name``, then ``launcher.KEY=VALUE`` overrides (``launcher.`` optional).

    Raises:
        ConfigError: an unknown key or a bad value, naming the key.
    """
    cfg = base or LauncherCfg()
    if name is not None:
        cfg = replace(cfg, name=name)
    items = []
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        key, eq, value = text.partition("=")
        if not eq:
            raise ConfigError(
                f"launcher override '{item}' must look like launcher.key=value, e.g. launcher.slurm.partition=gpu"
            )
        key = key.strip()
        items.append(f"{key if key.startswith('launcher.') else 'launcher.' + key}={value}")
    # applied to a one-field root, so an error names the full key (launcher.slurm.partition)
    cfg = apply_overrides(_LauncherRoot(cfg), items).launcher  # type: ignore[arg-type]  # any config dataclass
    check_launcher(cfg)
    return cfg


@dataclass(frozen=True)
class Study:
    """A grid of runs.

    Attributes:
        name: registry name.
        presets: PRESETS entries, trained in this order for each seed.
        seeds: one run per (preset, seed).
        overrides: dotted overrides applied to every run (``train.epochs=2``).
        preset_overrides: per-preset extra overrides, ``((preset, ("key=value", ...)), ...)``.
        evaluate: evaluate each finished run (OOD, calibration, shift, far-away per its eval config).
        report: write the HTML report at the end.
        description: one line for ``rulab list studies`` and the report.
        compare_to: the preset used as baseline for relative numbers (mCE, deltas), default the first.
        skip_eval: presets that are only trained (e.g. self-supervised pre-training).
        launcher: where the cells run and with which resources (:class:`LauncherCfg`; default ``local``).
        ensemble: also evaluate each evaluated preset's seeds as one deep ensemble (a run of its own, group
            ``<preset>+ensemble``; :mod:`rulab.eval.ensemble`), once every seed has finished.
        mc_dropout: T > 0 also evaluates every evaluated cell whose model has dropout with MC dropout over T passes (a
            run of its own, group ``<preset>+mc<T>``; cells without dropout are left out).
    """

    name: str
    presets: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: tuple[str, ...] = ()
    preset_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()
    evaluate: bool = True
    report: bool = True
    description: str = ""
    compare_to: str = ""
    skip_eval: tuple[str, ...] = field(default=())  # presets that are only trained (e.g. self-supervised pre-training)
    launcher: LauncherCfg = field(default_factory=LauncherCfg)  # where the cells run (local, slurm, ray)
    ensemble: bool = False
    mc_dropout: int = 0

    def __post_init__(self) -> None:
        if not self.presets:
            raise ValueError(f"study '{self.name}' has no presets")
        if isinstance(self.mc_dropout, bool) or not isinstance(self.mc_dropout, int) or self.mc_dropout < 0:
            raise ValueError(
                f"study '{self.name}': mc_dropout must be a number of passes >= 0, got {self.mc_dropout!r}"
            )
        if not self.seeds:
            raise ValueError(f"study '{self.name}' has no seeds")
        known = set(self.presets)
        for preset, _ in self.preset_overrides:
            if preset not in known:
                raise ValueError(f"study '{self.name}' overrides preset '{preset}', which it does not run")
        for preset, items in self.preset_overrides:
            for item in items:
                for ref in RUN_REF.findall(item):
                    if ref not in known or self.presets.index(ref) >= self.presets.index(preset):
                        raise ValueError(
                            f"study '{self.name}': '{preset}' refers to {{run:{ref}}}, which must be an earlier preset of the study"
                        )

    def overrides_for(self, preset: str) -> tuple[str, ...]:
        """The overrides of one preset: the study's, then the preset's own."""
        own = dict(self.preset_overrides).get(preset, ())
        return tuple(self.overrides) + tuple(own)

    @property
    def baseline(self) -> str:
        return self.compare_to or self.presets[0]


_STUDY_KEYS = (
    "name",
    "presets",
    "seeds",
    "overrides",
    "preset_overrides",
    "evaluate",
    "report",
    "description",
    "compare_to",
    "skip_eval",
    "launcher",
)


def load_study(path: str | Path) -> Study:
    """A :class:`Study` from a YAML file (``rulab study my-study.yaml``).

    The keys are the fields of :class:`Study`; ``preset_overrides`` maps a preset to its list of overrides and
    ``launcher`` holds the :class:`LauncherCfg` keys::

        name: pretrain-then-finetune
        presets: [fmnist-plain, fmnist-oe]
        seeds: [0, 1]
        overrides: [train.epochs=2]
        preset_overrides:
          fmnist-oe: ["train.init_from={run:fmnist-plain}"]
        launcher:
          name: slurm
          slurm: {partition: gpu, gpus_per_node: 1, cpus_per_task: 8, timeout_min: 120}

    Raises:
        ConfigError: an unreadable file, an unknown key or a bad value, naming the file.
    """
    data = read_yaml(path)
    unknown = [k for k in data if k not in _STUDY_KEYS]
    if unknown:
        raise ConfigError(f"study file {path}: unknown key '{unknown[0]}'; valid keys: {', '.join(_STUDY_KEYS)}")
    kw: dict[str, Any] = {"name": str(data.get("name") or Path(path).stem)}
    try:
        for key in ("presets", "overrides", "skip_eval"):
            if key in data:
                kw[key] = tuple(str(v) for v in _as_list(data[key], key))
        if "seeds" in data:
            kw["seeds"] = tuple(int(v) for v in _as_list(data["seeds"], "seeds"))
        if "preset_overrides" in data:
            po = data["preset_overrides"] or {}
            if not isinstance(po, Mapping):
                raise ConfigError("preset_overrides must map a preset to its list of overrides")
            kw["preset_overrides"] = tuple(
                (str(p), tuple(str(v) for v in _as_list(items, f"preset_overrides.{p}"))) for p, items in po.items()
            )
        for key in ("evaluate", "report"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise ConfigError(f"{key} must be true or false, got {data[key]!r}")
                kw[key] = data[key]
        for key in ("description", "compare_to"):
            if key in data:
                kw[key] = str(data[key])
        if "launcher" in data:
            kw["launcher"] = from_dict(LauncherCfg, data["launcher"] or {}, prefix="launcher")
        if not kw.get("presets"):
            raise ConfigError("it names no presets; give a list such as presets: [fmnist-plain]")
        return Study(**kw)
    except (ConfigError, ValueError, TypeError) as err:
        raise ConfigError(f"study file {path}: {err}") from None


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    raise ConfigError(f"{key} must be a list, got {value!r}")


def launcher_dict(cfg: LauncherCfg) -> dict[str, Any]:
    """The launcher config as plain nested dicts (the driver's state file records it)."""
    return to_dict(cfg)
