"""Studies as data: a grid of presets × seeds (× the evaluation of each run), registered in ``STUDIES``.

A cell is one (preset, seed) run followed by its evaluation. Overrides may refer to another cell of the same
seed with ``{run:PRESET}``, which the study runner replaces by that run's directory, so a pre-train → fine-tune
pipeline is two presets in order (two runs linked by a checkpoint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Study", "RUN_REF"]

RUN_REF = re.compile(r"\{run:([A-Za-z0-9_.\-]+)\}")


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
    ensemble: bool = False
    mc_dropout: int = 0

    def __post_init__(self) -> None:
        if not self.presets:
            raise ValueError(f"study '{self.name}' has no presets")
        if isinstance(self.mc_dropout, bool) or not isinstance(self.mc_dropout, int) or self.mc_dropout < 0:
            raise ValueError(f"study '{self.name}': mc_dropout must be a number of passes >= 0, got {self.mc_dropout!r}")
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
                        raise ValueError(f"study '{self.name}': '{preset}' refers to {{run:{ref}}}, which must be an earlier preset of the study")

    def overrides_for(self, preset: str) -> tuple[str, ...]:
        """The overrides of one preset: the study's, then the preset's own."""
        own = dict(self.preset_overrides).get(preset, ())
        return tuple(self.overrides) + tuple(own)

    @property
    def baseline(self) -> str:
        return self.compare_to or self.presets[0]
