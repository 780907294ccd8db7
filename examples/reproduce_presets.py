"""Reproduce the four papers' protocols at CPU scale (Fashion-MNIST), one preset each.

=========================  =======================================================================================
``hendrycks2019-fmnist``   W1: pre-training vs training from scratch; MSP OOD detection (2,000 × 5 runs protocol),
                           RMS / MAD calibration with adaptive bins (Hendrycks, Lee & Mazeika, ICML 2019)
``coursework-fmnist``      W2: brightness and Gaussian-blur shifts, accuracy and 10-bin RMS calibration per level
                           (Wirojwatanakul, Wang & Yu, ECE 228 course project report)
``hein2019-fmnist``        W3: plain / CEDA / ACET, mean max-confidence far away, alpha scaling, adversarial noise
                           (Hein, Andriushchenko & Bitterwolf, CVPR 2019)
``odin-fmnist``            W4: ODIN's temperature and input perturbation tuned on validation OOD data
                           (Liang, Li & Srikant, ICLR 2018)
=========================  =======================================================================================

The protocol of each work, with its sources, is in docs/protocols/.

Each name may be a registered study (several presets × seeds, run with ``rulab.api.study``) or a single preset
(trained with ``rulab.api.train`` and evaluated with ``rulab.api.evaluate_checkpoint``). A name that this build does
not register yet is skipped with a message (``rulab list presets`` / ``rulab list studies`` show what exists).

Run:  python examples/reproduce_presets.py [--tiny] [--only NAME ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import rulab.api as api
from rulab.registry import PRESETS, STUDIES
from rulab.reports import evaluation_report

PAPER_PRESETS = ("hendrycks2019-fmnist", "coursework-fmnist", "hein2019-fmnist", "odin-fmnist")
TINY = [
    "train.max_steps=10",
    "data.train_subset=600",
    "data.val_size=200",
    "eval.n_ood=200",
    "eval.adv_n=20",
    "eval.adv_steps=3",
    "eval.alpha_trials=10",
]


def reproduce(name: str, out: Path, tiny: bool) -> str:
    """Run one paper preset or study; returns a one-line outcome."""
    overrides = TINY if tiny else []
    if tiny and name == "odin-fmnist":  # ODIN's protocol skips the first 1,000 images of each set (calData.py)
        overrides = [*overrides, "eval.n_ood=1200"]
    t0 = time.time()
    if name in STUDIES:
        result = api.study(
            name, out_dir=str(out / name), seeds=[0] if tiny else None, overrides=overrides, progress=not tiny
        )
        return f"{name}: study of {len(result.run_ids)} runs in {time.time() - t0:.0f} s; report {result.report}"
    if name in PRESETS:
        run_dir = api.train(name, overrides=[*overrides, f"out_dir={out}"], progress=not tiny)
        table = api.evaluate_checkpoint(run_dir, progress=not tiny)
        print(table.summary())
        report = evaluation_report(table, run_dir / "report.html")
        return f"{name}: trained and evaluated in {time.time() - t0:.0f} s; report {report}"
    return f"skipping {name}: not registered in this build (see `rulab list presets` and `rulab list studies`)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", default=os.environ.get("RULAB_EXAMPLE_TINY") == "1")
    p.add_argument("--only", nargs="*", default=list(PAPER_PRESETS), help="which presets to run")
    p.add_argument("--out", default="example-output/papers")
    args = p.parse_args()
    for name in args.only:
        print(reproduce(name, Path(args.out), args.tiny), flush=True)


if __name__ == "__main__":
    main()
