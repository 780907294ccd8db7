"""What KNN's bank size costs: AUROC and time of the KNN detector against the size of its training-feature bank.

Measured in one run on this machine: a trained fastcnn checkpoint (``--checkpoint``; a random-weight fastcnn
otherwise) on Fashion-MNIST, the ID test images and the ``fmnist`` benchmark's OOD sets. For each bank size M (a seeded
random subset of the training features, as ``KNN(max_bank=M)``) it prints the AUROC per OOD set at k = 50 (the
paper's CIFAR-10 choice) and at k scaled with the bank (``k = 50 · M / M_full``, at least 1; Sun et al. 2022 scale k
with the sampling ratio), the seconds to score every query, the bank's memory, and the AUROC change and time ratio
against the largest bank. ``rulab eval`` fits on at most 10,000 training images (``fit_size``), so 10,000 is the
bank of the default evaluation.

Usage:
    PYTHONPATH=src python benchmarks/knn_bank.py [--checkpoint RUN_DIR] [--sizes 1000,2000,5000,10000,55000] [--quick]
"""

from __future__ import annotations

import argparse
import os

import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)

from rulab.detectors.base import Extracted
from rulab.eval.ood_eval import load_ood_set
from rulab.eval.predict import predict
from rulab.metrics.ood import auroc
from rulab.registry import DATASETS, DETECTORS, MODELS

OOD = ("digits", "textures", "gaussian", "uniform", "rademacher", "blobs", "hein")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a run directory (fastcnn on fashion_mnist); default: random weights")
    parser.add_argument("--sizes", default="1000,2000,5000,10000,20000,55000", help="bank sizes, comma-separated")
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--n-ood", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="banks up to 5,000, 1,000 test and 500 OOD images")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.quick:
        sizes, args.n_test, args.n_ood = [s for s in sizes if s <= 5_000] or [1_000], 1_000, 500
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")

    torch.manual_seed(0)
    if args.checkpoint:
        from rulab.checkpoint import load_model

        model, _ = load_model(args.checkpoint)
    else:
        model = MODELS.create("fastcnn")
    model = model.eval()
    train = DATASETS.create("fashion_mnist", split="train")
    test = DATASETS.create("fashion_mnist", split="test").subset(slice(0, args.n_test))
    g = torch.Generator().manual_seed(0)
    pool = train.subset(torch.randperm(len(train), generator=g)[: max(sizes)].sort().values)

    def feats(x: torch.Tensor) -> torch.Tensor:
        return predict(model, x, batch_size=1000, features=True, channels_last=True)["features"]

    z_pool = feats(pool.x)
    queries = {"id": feats(test.x), **{o: feats(load_ood_set(o, test.shape, args.n_ood, 0, base=test).x) for o in OOD}}
    n_q = sum(len(q) for q in queries.values())
    print(
        f"bank pool {len(z_pool)} × {z_pool.shape[1]} features; {n_q} queries ({args.n_test} ID + {len(OOD)} × {args.n_ood} OOD)"
    )

    rows = []
    for m in sizes:
        k_scaled = max(1, round(50 * m / max(sizes)))
        det = DETECTORS.create("knn", k=50, max_bank=m).fit(
            Extracted(torch.zeros(len(z_pool), 1), torch.zeros(len(z_pool), dtype=torch.long), features=z_pool)
        )
        bank = det.bank

        def score_all(k: int, det: object = det) -> dict[str, torch.Tensor]:
            det.k = k
            return {
                n: det.score(Extracted(torch.zeros(len(q), 1), torch.zeros(len(q), dtype=torch.long), features=q))
                for n, q in queries.items()
            }

        seconds = best_seconds(lambda: score_all(50), args.repeats)
        s50, sk = score_all(50), score_all(min(k_scaled, m))
        rows.append(
            (
                m,
                k_scaled,
                seconds,
                bank.numel() * bank.element_size(),
                {o: auroc(s50["id"], s50[o]) for o in OOD},
                {o: auroc(sk["id"], sk[o]) for o in OOD},
            )
        )
        print(f"  bank {m}: {seconds:.2f} s")

    ref = rows[-1]
    print(f"\nAUROC at k = 50 per OOD set ({', '.join(OOD)}), and against the largest bank ({ref[0]}):")
    print(
        f"{'bank':>7} {'MiB':>6} {'seconds':>8} {'time ratio':>10}  "
        + " ".join(f"{o[:8]:>8}" for o in OOD)
        + f"  {'mean Δ':>8} {'max |Δ|':>8}"
    )
    for m, _, sec, mem, a50, _ in rows:
        d = [a50[o] - ref[4][o] for o in OOD]
        print(
            f"{m:7d} {mem / 2**20:6.1f} {sec:8.2f} {sec / ref[2]:10.3f}  "
            + " ".join(f"{a50[o]:8.4f}" for o in OOD)
            + f"  {sum(d) / len(d):+8.4f} {max(abs(v) for v in d):8.4f}"
        )
    print("\nAUROC with k scaled with the bank (k = 50 · M / M_largest):")
    for m, k, _, _, _, ak in rows:
        d = [ak[o] - ref[5][o] for o in OOD]
        print(
            f"{m:7d} k={k:<4d} "
            + " ".join(f"{ak[o]:8.4f}" for o in OOD)
            + f"  {sum(d) / len(d):+8.4f} {max(abs(v) for v in d):8.4f}"
        )


if __name__ == "__main__":
    main()
