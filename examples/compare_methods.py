"""Compare training methods across seeds: a small study, then the stored results as mean ± std.

A :class:`~rulab.presets.study_spec.Study` is a grid of presets × seeds. ``rulab.api.study`` trains and evaluates every
cell into one SQLite results database (re-running skips finished cells), prints the per-method summary and writes
the HTML report; ``rulab.api.results`` reads the long table back (a pandas DataFrame) for your own analysis.

Compared here: plain cross-entropy (``fmnist-plain``) against MixUp (``fmnist-mixup``) when that preset is
registered, else against the same recipe with label smoothing 0.1 (registered below as an example preset).

Run:  python examples/compare_methods.py [--tiny] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import rulab.api as api
from rulab.config import MethodCfg, RunCfg
from rulab.presets.study_spec import Study
from rulab.registry import PRESETS


@PRESETS.register("example-label-smoothing", overwrite=True)
def label_smoothing() -> RunCfg:
    """``fmnist-plain`` with label smoothing 0.1."""
    base = PRESETS.create("fmnist-plain")
    return replace(base, name="example-label-smoothing", method=MethodCfg(name="erm", kwargs={"label_smoothing": 0.1}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", default=os.environ.get("RULAB_EXAMPLE_TINY") == "1")
    p.add_argument("--out", default="example-output/compare")
    args = p.parse_args()

    other = "fmnist-mixup" if "fmnist-mixup" in PRESETS else "example-label-smoothing"
    study = Study(
        name="example-compare",
        presets=("fmnist-plain", other),
        seeds=(0, 1) if args.tiny else (0, 1, 2),
        overrides=("eval.shift=''", "eval.farconf=false", "eval.detectors=[msp,energy,mahalanobis]"),
        description="plain vs " + other,
        report=not args.tiny,
    )
    tiny = (
        [
            "train.max_steps=20",
            "data.train_subset=600",
            "data.val_size=200",
            "eval.detectors=[msp,energy]",
            "eval.n_ood=200",
        ]
        if args.tiny
        else []
    )
    result = api.study(study, out_dir=args.out, overrides=tiny, progress=not args.tiny)
    if args.tiny:
        print(result.text())

    # the long table, as a DataFrame: mean AUROC over the OOD sets per run, then mean ± std over seeds per method
    df = api.results(Path(args.out) / "results.db", frame=True, study="example-compare", kind="ood", metric="auroc")
    per_run = df.groupby(["preset", "seed", "detector"])["value"].mean().reset_index()
    table = per_run.groupby(["preset", "detector"])["value"].agg(["mean", "std", "count"])
    print("\nmean AUROC over the OOD sets (mean ± std over seeds):")
    for (preset, det), row in table.iterrows():
        print(f"  {preset:<26}{det:<14}{100 * row['mean']:6.2f} ± {100 * row['std']:5.2f}  (n={int(row['count'])})")


if __name__ == "__main__":
    main()
