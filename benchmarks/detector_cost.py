"""What detectors cost on top of the one forward pass (convention 6 in docs/conventions.md: run the network once,
score many times).

Measured in one run on this machine, on ``fastcnn`` (random weights unless ``--checkpoint``) and 28×28 grey images.
The detectors are grouped by what they read (:attr:`rulab.detectors.base.Detector.requires`, so a new registered
detector is measured without an edit here):

1. the forward pass that extraction runs (logits + features, channels-last, eval mode) over N images: the unit;
2. the LOGIT detectors (``requires == {"logits"}``: msp, maxlogit, energy, entropy, gen, klm, openmax; and those
   that read the cached member logits of an averaged predictive, ``"members"``: mutual_info, disagreement, here on
   the logits of three networks) fitted and scored from the cached logits: each one's scoring time as a multiple of
   the forward pass of one network, and all together (forward + scoring) / forward (goal: at most 1.2);
3. the FEATURE detectors (cached logits and features: mahalanobis, knn, react, vim, ash_p/b/s, scale, dice, she,
   gradnorm, rmds, residual, nnguide, fdbd, dml): fitting time on the N images and scoring time, likewise;
4. the detectors that go back to the MODEL, per image and as multiples of the forward pass per image: ODIN at a fixed
   (T, ε) and for its full 10 × 21 tuning grid; RankFeat (one pass per edited block, an SVD per map); Gram (one pass
   plus the statistics of every feature layer; fitting reads the training and validation images once each),
   mahalanobis_layers (one pass per scored set; fitting reads the training and validation images).

Usage:
    PYTHONPATH=src python benchmarks/detector_cost.py [--n 10000] [--model-n 1000] [--checkpoint RUN_DIR] [--threads N]
        [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import date

import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)

from rulab.detectors.base import Extracted
from rulab.detectors.odin import ODIN_EPSILONS, ODIN_TEMPERATURES, odin_grid_scores, odin_score
from rulab.eval.predict import predict
from rulab.registry import DETECTORS, MODELS


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls, in seconds (after one warm-up call)."""
    return best_seconds(fn, repeats, warmup=1)


def groups() -> tuple[list[str], list[str], list[str]]:
    """Registered detectors by what they read: logits only, cached features, the model (ODIN measured apart)."""
    logit, feature, model = [], [], []
    for name in DETECTORS.list():
        req = set(DETECTORS.get(name).requires)
        if "model" in req:
            model.append(name)
        elif "features" in req:
            feature.append(name)
        else:
            logit.append(name)
    return logit, feature, model


def timed_fit(name: str, ex: Extracted, model: torch.nn.Module | None = None) -> tuple[object, float]:
    t0 = time.perf_counter()
    det = DETECTORS.create(name).fit_with(ex, val_id=ex, model=model)
    return det, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images in the forward pass and the logit/feature runs")
    parser.add_argument("--model-n", type=int, default=1_000, help="images in the runs of detectors that use the model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="a run directory to load instead of a random fastcnn")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--quick", action="store_true", help="2,000 images, 200 for the model detectors, 1 repeat")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.model_n, args.repeats = 2_000, 200, 1
    print(
        f"{date.today()}  {platform.node()}  load {os.getloadavg()[0]:.2f}  torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    torch.manual_seed(0)
    if args.checkpoint:
        from rulab.checkpoint import load_model

        model, _ = load_model(args.checkpoint)
    else:
        model = MODELS.create("fastcnn")
    model = model.eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, model.num_classes, (args.n,), generator=g)

    out = predict(model, x, batch_size=1000, features=True, channels_last=True)
    t_fwd = best_of(lambda: predict(model, x, batch_size=1000, features=True, channels_last=True), args.repeats)
    per_fwd = t_fwd / args.n
    w, b = model.fc.weight.detach(), model.fc.bias.detach()
    # the member detectors read the logits of several networks (a deep ensemble): the model and two random fastcnns
    others = [MODELS.create("fastcnn").eval().to(memory_format=torch.channels_last) for _ in range(2)]
    members = torch.stack(
        [out["logits"], *(predict(m, x, batch_size=1000, channels_last=True)["logits"] for m in others)], dim=1
    )
    ex = Extracted(out["logits"], y, out["features"], x=x, head_weight=w, head_bias=b, members=members)
    print(f"forward pass (logits + features) over {args.n} images: {t_fwd:.3f} s ({1e3 * per_fwd:.4f} ms/image)")

    logit, feature, model_dets = groups()
    for title, names in (("logit", logit), ("feature", feature)):
        fitted = {}
        print(f"{title} detectors ({len(names)}), fitted on and scoring {args.n} cached rows:")
        print(f"    {'detector':<12} {'fit s':>8} {'score s':>9} {'score / forward':>16}")
        for n in names:
            det, t_fit = timed_fit(n, ex)
            fitted[n] = det
            t = best_of(lambda d=det: d.score(ex), args.repeats)
            print(f"    {n:<12} {t_fit:8.3f} {t:9.4f} {t / t_fwd:16.4f}")
        t_all = best_of(lambda f=fitted: [d.score(ex) for d in f.values()], args.repeats)
        print(
            f"  all {len(names)} together: scoring / forward = {t_all / t_fwd:.4f}, "
            f"(forward + scoring) / forward = {(t_fwd + t_all) / t_fwd:.4f}"
            + ("   (goal <= 1.2)" if title == "logit" else "")
        )

    xo = x[: args.model_n]
    exo = ex.subset(slice(0, args.model_n))
    print(
        f"detectors that go back to the model, on {args.model_n} images (x forward = per image, as a multiple of "
        "the forward pass per image):"
    )
    t_fixed = best_of(lambda: odin_score(model, xo, 1000.0, 0.0014, batch_size=500), args.repeats)
    print(
        f"    odin at fixed (T=1000, eps=0.0014): {1e3 * t_fixed / args.model_n:.4f} ms/image = "
        f"{t_fixed / args.model_n / per_fwd:.2f} x forward"
    )
    t_grid = best_of(lambda: odin_grid_scores(model, xo, ODIN_TEMPERATURES, ODIN_EPSILONS, batch_size=500), 1)
    n_points = len(ODIN_TEMPERATURES) * len(ODIN_EPSILONS)
    print(
        f"    odin full grid ({len(ODIN_TEMPERATURES)} T x {len(ODIN_EPSILONS)} eps = {n_points} points): "
        f"{1e3 * t_grid / args.model_n:.3f} ms/image = {t_grid / args.model_n / per_fwd:.1f} x forward; tuning on "
        f"1,000 + 1,000 validation images ~{2 * t_grid * 1000 / args.model_n:.1f} s"
    )
    for n in model_dets:
        if n == "odin":
            continue
        det, t_fit = timed_fit(n, exo, model)
        t = best_of(lambda d=det: d.score(exo, model=model), args.repeats)
        fit = (
            f"; fit on {args.model_n} training + {args.model_n} validation images {t_fit:.2f} s" if t_fit > 1e-3 else ""
        )
        print(f"    {n:<12} {1e3 * t / args.model_n:.4f} ms/image = {t / args.model_n / per_fwd:.2f} x forward{fit}")


if __name__ == "__main__":
    main()
