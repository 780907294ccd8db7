"""What the 95% intervals cost: the bootstrap of one default evaluation cell as a multiple of computing its metrics once.

A default ``fmnist`` cell scores 10,000 ID test images and 7 OOD sets of 2,000 images with 11 detectors (77 detection
rows of 6 metrics), computes the ID block from 10 logits raw and temperature-scaled, the MMC of each OOD set, and 39
shift cells (the clean reference and 38 corrupted test sets). This script builds arrays of those sizes (scores and
logits drawn at random; the cost does not depend on the values) and measures, in one run:

* ``once``: computing every number once (``ood_metrics`` per detector and set, ``calibration_metrics`` raw and
  scaled, the MMC, ``cell_metrics`` per shift cell), as the evaluation does;
* ``intervals``: what :mod:`rulab.eval.intervals` adds for ``B`` resamples (drawing the counts, the replicates of every
  row that gets an interval, the percentile intervals), for each ``B`` in ``--resamples``;
* ``naive``: the same detection replicates computed by calling ``ood_metrics`` on each written-out resample (a sort
  per resample, as a loop over scikit-learn would), for one detector and OOD set, scaled to the 77 rows;
* the Monte Carlo error of an interval's endpoint: the standard deviation of the lower AUROC endpoint over 20
  independent sets of ``B`` resamples, in units of the bootstrap standard error (theory for a normal statistic:
  ``sqrt(0.025 · 0.975 / B) / φ(1.96)``, 0.085 at ``B = 1000``).

Usage:
    PYTHONPATH=src python benchmarks/interval_cost.py [--resamples 200,500,1000,2000] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from statistics import NormalDist

import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)

from rulab.eval.intervals import Resampler, id_replicates, ood_replicates, shift_replicates
from rulab.eval.shift import cell_metrics
from rulab.metrics.bootstrap import detection_replicates, percentile_interval, resample_counts
from rulab.metrics.calibration import calibration_metrics, mmc
from rulab.metrics.ood import ood_metrics
from rulab.registry import PROTOCOLS
from rulab.results.table import ResultTable

DETECTORS = 11
OOD_SETS = 7
SHIFT_CELLS = 39


def _data(n_id: int, n_ood: int, classes: int, cells: int) -> dict:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n_id, classes, generator=g) * 3
    labels = torch.where(
        torch.rand(n_id, generator=g) < 0.9, logits.argmax(1), torch.randint(0, classes, (n_id,), generator=g)
    )
    scores = {
        f"det{d}": {
            "id": torch.randn(n_id, generator=g) + 1,
            **{f"set{k}": torch.randn(n_ood, generator=g) for k in range(OOD_SETS)},
        }
        for d in range(DETECTORS)
    }
    ood_conf = {f"set{k}": torch.rand(n_ood, generator=g) for k in range(OOD_SETS)}
    shifted = [(f"c{i}", "3", logits + torch.randn(n_id, classes, generator=g)) for i in range(cells)]
    return {"logits": logits, "labels": labels, "scores": scores, "ood_conf": ood_conf, "shift": shifted}


def _table(d: dict) -> ResultTable:
    """The rows the evaluation would have written (values do not matter here, only which rows exist)."""
    t = ResultTable()
    for det in ("", "ts"):
        t.add_metrics(
            "id",
            {m: 0.0 for m in ("acc", "nll", "brier", "ece", "mce", "rms", "mad", "rms_uniform10", "soft_f1", "mmc")},
            dataset="id",
            detector=det,
        )
    for det, sets in d["scores"].items():
        for s in sets:
            if s != "id":
                t.add_metrics(
                    "ood",
                    dict.fromkeys(("auroc", "aupr_in", "aupr_out", "fpr95_id", "fpr95_ood", "detection_error"), 0.0),
                    dataset=s,
                    detector=det,
                )
    for s in d["ood_conf"]:
        t.add("ood", "mmc", 0.0, dataset=s, detector="msp")
    for shift, sev, _ in d["shift"]:
        t.add_metrics(
            "shift",
            dict.fromkeys(("acc", "nll", "ece", "rms", "rms_uniform10", "mmc", "brier"), 0.0),
            dataset="id",
            shift=shift,
            severity=sev,
        )
    return t


def once(d: dict) -> None:
    calibration_metrics(d["logits"], d["labels"])
    calibration_metrics(d["logits"] / 1.5, d["labels"])
    for sets in d["scores"].values():
        for s, v in sets.items():
            if s != "id":
                ood_metrics(sets["id"], v)
    for c in d["ood_conf"].values():
        mmc(c)
    for _, _, z in d["shift"]:
        cell_metrics(z, d["labels"])


def intervals(d: dict, b: int) -> ResultTable:
    t = _table(d)
    r = Resampler(b)
    id_replicates(t, d["logits"], d["labels"], r, "id", temperature=1.5)
    ood_replicates(t, d["scores"], PROTOCOLS.create("full"), 0, r, msp_ood=d["ood_conf"])
    shift_replicates(t, d["shift"], d["labels"], r, "id")
    t.attach_intervals()
    return t


def naive_one_row(d: dict, b: int) -> None:
    s_id, s_ood = d["scores"]["det0"]["id"], d["scores"]["det0"]["set0"]
    cid, cood = (
        resample_counts(len(s_id), b, torch.Generator().manual_seed(1)),
        resample_counts(len(s_ood), b, torch.Generator().manual_seed(2)),
    )
    for k in range(b):
        ood_metrics(s_id.repeat_interleave(cid[k].long()), s_ood.repeat_interleave(cood[k].long()))


def endpoint_error(d: dict, b: int, sets: int = 20) -> float:
    """sd of the lower AUROC endpoint over ``sets`` independent resample sets, divided by the bootstrap SE."""
    s_id, s_ood = d["scores"]["det0"]["id"], d["scores"]["det0"]["set0"]
    lows, ses = [], []
    for k in range(sets):
        g = torch.Generator().manual_seed(100 + k)
        reps = detection_replicates(s_id, s_ood, resample_counts(len(s_id), b, g), resample_counts(len(s_ood), b, g))[
            "auroc"
        ]
        lows.append(percentile_interval(reps)[0])
        ses.append(float(reps.std()))
    mean = sum(lows) / sets
    sd = math.sqrt(sum((x - mean) ** 2 for x in lows) / (sets - 1))
    return sd / (sum(ses) / sets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", default="200,500,1000,2000", help="values of B, comma-separated")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: PyTorch's choice)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tenth of the images, B = 200 and 1000, one repeat")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_id, n_ood, cells = 10_000, 2_000, SHIFT_CELLS
    bs = [int(x) for x in args.resamples.split(",")]
    if args.quick:
        n_id, n_ood, bs, args.repeats = 1_000, 200, [200, 1000], 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    print(
        f"one cell: {n_id} ID images, {OOD_SETS} OOD sets of {n_ood}, {DETECTORS} detectors, {cells} shift cells, 10 classes"
    )
    d = _data(n_id, n_ood, 10, cells)
    t_once = best_seconds(lambda: once(d), args.repeats, warmup=1)
    print(f"metrics once: {t_once:.2f} s")
    theory = lambda b: math.sqrt(0.025 * 0.975 / b) / NormalDist().pdf(NormalDist().inv_cdf(0.975))  # noqa: E731
    print(f"{'B':>6} {'intervals':>10} {'x once':>8} {'rows':>6} {'endpoint MC sd / SE':>20} {'theory':>7}")
    for b in bs:
        t0 = time.perf_counter()
        rows = sum(r.has_interval for r in intervals(d, b))
        first = time.perf_counter() - t0
        t_int = min(first, best_seconds(lambda b=b: intervals(d, b), args.repeats - 1)) if args.repeats > 1 else first
        err = endpoint_error(d, b, 5 if args.quick else 20)
        print(f"{b:>6} {t_int:>9.2f}s {t_int / t_once:>7.1f}x {rows:>6} {err:>20.3f} {theory(b):>7.3f}")
    b_naive = 20 if args.quick else 100
    t_naive = best_seconds(lambda: naive_one_row(d, b_naive), 1) * DETECTORS * OOD_SETS / b_naive
    print(
        f"naive detection replicates (a sort per resample), per resample for all {DETECTORS * OOD_SETS} detection rows: "
        f"{t_naive:.3f} s, i.e. {t_naive * 1000:.0f} s for B = 1000"
    )


if __name__ == "__main__":
    main()
