"""Speed of ``rulab.metrics.ood_metrics`` against one ``torch.sort`` and against scikit-learn.

For n pooled float32 scores (n_id = n_ood = n/2) it times, in one run on this machine:

* ``sort``: one ``torch.sort(scores, descending=True)`` of the pooled float scores (the reference),
* ``key sort``: the sort ``ood_metrics`` actually does: a stable ascending sort of integer keys that order like
  the scores (a radix sort on the CPU), shown so the ratio can be read honestly,
* ``ood_metrics``: all six exact metrics (AUROC, AUPR-In/Out, both FPR@95, detection error), input checks included,
* ``sklearn``: ``roc_auc_score`` + 2 x ``average_precision_score`` + ``roc_curve`` (the same set, computed the
  usual way).

Each time is the best of a few repeats. Usage:
``python benchmarks/metrics_speed.py [--quick] [--sizes 1e5 1e6] [--threads 1] [--no-sklearn]``
(``--quick``: 1e5 and 1e6 only; the default adds 1e7, which needs ~2 GB of memory and about a minute).
On a shared machine, ``--threads 1`` avoids timing the wake-up latency of a busy intra-op thread pool.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)

from rulab.metrics import ood_metrics
from rulab.metrics.ood import _descending_keys


def sklearn_set(y: np.ndarray, s: np.ndarray) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    roc_auc_score(y, s)
    average_precision_score(y, s)
    average_precision_score(1 - y, -s)
    roc_curve(y, s, drop_intermediate=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 1e5 and 1e6 scores")
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=None, help="pooled score counts (default 1e5 1e6 1e7)"
    )
    parser.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn column")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in (args.sizes or ([1e5, 1e6] if args.quick else [1e5, 1e6, 1e7]))]

    g = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 scores, n_id = n_ood = n/2")
    print(
        f"{'n':>8} {'sort s':>8} {'key sort s':>11} {'ood_metrics s':>14} {'/ sort':>7} {'sklearn s':>10} {'sklearn / ours':>15}"
    )
    for n in sizes:
        half = n // 2
        s_id = torch.randn(half, generator=g) + 1.0
        s_ood = torch.randn(n - half, generator=g)
        pooled = torch.cat([s_id, s_ood])
        repeats = 3 if n <= 10**6 else 2
        ood_metrics(s_id, s_ood)  # warm-up
        keys = _descending_keys(pooled.clone())
        t_sort = best_seconds(lambda: torch.sort(pooled, descending=True), repeats)  # noqa: B023
        t_keys = best_seconds(lambda: torch.sort(keys, stable=True), repeats)  # noqa: B023
        t_ours = best_seconds(lambda: ood_metrics(s_id, s_ood), repeats)  # noqa: B023
        line = f"{n:>8.0e} {t_sort:>8.3f} {t_keys:>11.3f} {t_ours:>14.3f} {t_ours / t_sort:>7.2f}"
        if not args.no_sklearn:
            y = np.r_[np.ones(half), np.zeros(n - half)]
            s = pooled.numpy()
            t_sk = best_seconds(lambda: sklearn_set(y, s), 1 if n >= 10**7 else repeats)  # noqa: B023
            line += f" {t_sk:>10.3f} {t_sk / t_ours:>15.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
