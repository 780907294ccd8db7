"""Planning a study: every (preset, seed) cell resolved and validated before anything runs.

For each seed the presets are planned in the study's order, so a ``{run:PRESET}`` override resolves to the run
directory of the same seed's earlier cell (a pre-train → fine-tune pipeline is two presets in order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rulab.checks import check_seed
from rulab.config import RunCfg, config_hash
from rulab.errors import ConfigError
from rulab.eval.validate import validate_run
from rulab.presets import load_config
from rulab.presets.study_spec import RUN_REF, Study, load_study
from rulab.registry import PAPER_TABLES, STUDIES, UnknownNameError
from rulab.results.store import run_id_for

__all__ = ["StudyCell", "get_study", "plan_cells"]


@dataclass(frozen=True)
class StudyCell:
    """One (preset, seed) run of a study.

    Attributes:
        cfg: the resolved run config (``name = <preset>-s<seed>``, ``out_dir`` of the study).
        run_id: its row in the results database (``<name>-<config hash>``).
        parents: run ids of the cells its overrides refer to with ``{run:PRESET}``.
        evaluate: whether the cell is evaluated after training.
    """

    preset: str
    seed: int
    cfg: RunCfg
    run_id: str
    parents: tuple[str, ...] = ()
    evaluate: bool = True

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out_dir) / self.cfg.name

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "model.safetensors"


def get_study(study: Study | str | Path) -> Study:
    """A :class:`Study` from itself, its registered name (``rulab list studies``) or a YAML file (``*.yaml``).

    Raises:
        ConfigError: an unknown name, or a study file that cannot be read (see :func:`load_study`).
    """
    if isinstance(study, Study):
        return study
    if isinstance(study, Path) or str(study).endswith((".yaml", ".yml")):
        return load_study(study)
    try:
        return STUDIES.create(study)
    except UnknownNameError as err:
        raise ConfigError(str(err)) from None


def _link(item: str, done: Mapping[str, StudyCell], refs: list[str], study: str, preset: str) -> str:
    """Replace each ``{run:PRESET}`` in an override by that (same-seed) cell's run directory; note it in ``refs``."""

    def sub(m: Any) -> str:
        ref = m.group(1)
        if ref not in done:
            raise ConfigError(
                f"study '{study}': '{preset}' refers to {{run:{ref}}}, which is not an earlier preset of the study"
            )
        refs.append(ref)
        return str(done[ref].run_dir)

    return RUN_REF.sub(sub, item)


def plan_cells(
    study: Study, seeds: Sequence[int] | None = None, out_dir: str = "runs", overrides: Sequence[str] = ()
) -> list[StudyCell]:
    """Resolve and validate every cell of ``study`` (seed-major, presets in study order).

    ``{run:PRESET}`` in an override becomes that preset's run directory for the same seed. A cell whose
    ``train.init_from`` names such a directory is validated without it (the directory appears when its parent
    has trained); everything else is fully validated here, before anything runs.

    Raises:
        ConfigError: an unknown preset, a bad override, or a bad value, naming the preset; a paper table that
            is not registered.
    """
    if seeds is not None and len(seeds) == 0:  # an empty list is a mistake, not "the study's own seeds"
        raise ConfigError(
            f"no seeds given for study '{study.name}'; pass seeds like --seeds 0,1, or none to run the study's own"
        )
    seeds = tuple(check_seed("a seed", s) for s in (seeds if seeds is not None else study.seeds))
    if not seeds:
        raise ConfigError(f"study '{study.name}' has no seeds to run; pass seeds like --seeds 0,1")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"the seeds {list(seeds)} list a seed twice; give each seed once")
    table = getattr(study, "paper_table", "")
    if table and table not in PAPER_TABLES:
        raise ConfigError(f"study '{study.name}' names paper table '{table}'; valid: {', '.join(PAPER_TABLES.list())}")
    cells: list[StudyCell] = []
    for seed in seeds:
        done: dict[str, StudyCell] = {}
        for preset in study.presets:
            refs: list[str] = []
            items = [_link(item, done, refs, study.name, preset) for item in (*study.overrides_for(preset), *overrides)]
            items += [f"seed={seed}", f"out_dir={out_dir}", f"name={preset}-s{seed}"]
            try:
                cfg = load_config(preset, overrides=items, check=False)
                validate_run(replace(cfg, train=replace(cfg.train, init_from="", reset_head=False)) if refs else cfg)
            except ConfigError as err:
                raise ConfigError(f"study '{study.name}', preset '{preset}': {err}") from None
            cell = StudyCell(
                preset,
                seed,
                cfg,
                run_id_for(cfg.name, config_hash(cfg)),
                tuple(done[r].run_id for r in dict.fromkeys(refs)),
                evaluate=study.evaluate and preset not in study.skip_eval,
            )
            done[preset] = cell
            cells.append(cell)
    return cells
