"""What detectors cost on top of the one forward pass (convention 6 in docs/conventions.md: run the network once,
score many times).

Measured in one run on this machine, on ``fastcnn`` (random weights unless ``--checkpoint``) and 28×28 grey images:

1. the forward pass that extraction runs (logits + features, channels-last, eval mode) over N images;
2. scoring every LOGIT detector (msp, maxlogit, energy, entropy, gen, klm) from the cached logits: the ratio of
   scoring time to forward time, and (forward + scoring) / forward (goal: at most 1.2);
3. fitting and scoring the FEATURE detectors (mahalanobis, knn, react, vim) from cached features, same ratios;
4. ODIN, which goes back to the model: milliseconds per image at a fixed (T, ε) and for its full 10 × 21 tuning grid,
   and both as multiples of the forward pass per image.

Usage:
    PYTHONPATH=src python benchmarks/detector_cost.py [--n 10000] [--odin-n 1000] [--checkpoint RUN_DIR] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)

from rulab.detectors.base import Extracted
from rulab.detectors.odin import ODIN_EPSILONS, ODIN_TEMPERATURES, odin_grid_scores, odin_score
from rulab.eval.predict import predict
from rulab.registry import DETECTORS, MODELS

LOGIT = ("msp", "maxlogit", "energy", "entropy", "gen", "klm")
FEATURE = ("mahalanobis", "knn", "react", "vim")


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls, in seconds (after one warm-up call)."""
    return best_seconds(fn, repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images in the forward pass and scoring runs")
    parser.add_argument("--odin-n", type=int, default=1_000, help="images in the ODIN runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="a run directory to load instead of a random fastcnn")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--quick", action="store_true", help="2,000 images, 200 for ODIN, 1 repeat")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.odin_n, args.repeats = 2_000, 200, 1

    torch.manual_seed(0)
    if args.checkpoint:
        from rulab.checkpoint import load_model

        model, _ = load_model(args.checkpoint)
    else:
        model = MODELS.create("fastcnn")
    model = model.eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (args.n,), generator=g)

    out = predict(model, x, batch_size=1000, features=True, channels_last=True)
    t_fwd = best_of(lambda: predict(model, x, batch_size=1000, features=True, channels_last=True), args.repeats)
    ex = Extracted(out["logits"], y, out["features"], head_weight=model.fc.weight.detach(), head_bias=model.fc.bias.detach())
    print(f"forward pass (logits + features) over {args.n} images: {t_fwd:.3f} s ({1e3 * t_fwd / args.n:.4f} ms/image)")

    logit_dets = {n: DETECTORS.create(n).fit(ex, val_id=ex) for n in LOGIT}
    t_logit = best_of(lambda: [d.score(ex) for d in logit_dets.values()], args.repeats)
    print(f"scoring {len(LOGIT)} logit detectors from cached logits: {t_logit:.4f} s")
    print(f"  scoring / forward            = {t_logit / t_fwd:.4f}")
    print(f"  (forward + scoring) / forward = {(t_fwd + t_logit) / t_fwd:.4f}   (goal <= 1.2)")

    t_fit = 0.0
    feat_dets = {}
    for n in FEATURE:
        t0 = time.perf_counter()
        feat_dets[n] = DETECTORS.create(n).fit(ex)
        t_fit += time.perf_counter() - t0
    t_feat = best_of(lambda: [d.score(ex) for d in feat_dets.values()], args.repeats)
    print(f"fitting {len(FEATURE)} feature detectors on {args.n} cached features: {t_fit:.3f} s; scoring: {t_feat:.3f} s")
    print(f"  scoring / forward            = {t_feat / t_fwd:.4f}")
    print(f"  (forward + scoring) / forward = {(t_fwd + t_feat) / t_fwd:.4f}")
    for n, d in feat_dets.items():
        t = best_of(lambda d=d: d.score(ex), 1)
        print(f"    {n:<12} {t:.4f} s  ({t / t_fwd:.3f} x forward)")

    xo = x[: args.odin_n]
    per_fwd = t_fwd / args.n
    t_fixed = best_of(lambda: odin_score(model, xo, 1000.0, 0.0014, batch_size=500), args.repeats)
    ms_fixed = 1e3 * t_fixed / args.odin_n
    print(f"ODIN at fixed (T=1000, eps=0.0014): {ms_fixed:.4f} ms/image = {t_fixed / args.odin_n / per_fwd:.2f} x forward")
    t_grid = best_of(lambda: odin_grid_scores(model, xo, ODIN_TEMPERATURES, ODIN_EPSILONS, batch_size=500), 1)
    ms_grid = 1e3 * t_grid / args.odin_n
    n_points = len(ODIN_TEMPERATURES) * len(ODIN_EPSILONS)
    print(f"ODIN full grid ({len(ODIN_TEMPERATURES)} T x {len(ODIN_EPSILONS)} eps = {n_points} points): {ms_grid:.3f} ms/image "
          f"= {t_grid / args.odin_n / per_fwd:.1f} x forward ({ms_grid / n_points:.4f} ms per image and grid point)")
    print(f"  tuning on 1,000 + 1,000 validation images: ~{2 * t_grid * 1000 / args.odin_n:.1f} s on this machine")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
