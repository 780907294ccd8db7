"""Cost of ODIN's (T, ε) tuning grid as a multiple of one forward pass over the validation sets.

ODIN (rulab.detectors.odin) tunes T over 10 values and ε over 21 (the ``paper`` grid; ``coarse``: 4 × 5) on the validation data of the ``fmnist`` benchmark
(1,000 held-out Fashion-MNIST images + 1,000 photo crops). Computed naively, each of the 210 cells costs one
gradient pass (forward + backward) and one perturbed forward pass. rulab's grid computes the input gradient once per
temperature (the sign map does not depend on ε), stacks the ε copies into large batches, reuses the unperturbed
logits for ε = 0 and reuses an image's perturbed logits when its sign map equals the one at the previous temperature.

Printed, in one run on this machine:

* the time of one forward pass over the validation images (the unit);
* the grid on the inference copy (what ``evaluate`` runs: BatchNorm folded, channels-last) and on the model as
  trained, as seconds and as multiples of the unit; the images sent through the network (forward and backward),
  counted, which does not depend on the machine's load;
* the naive per-cell computation (``odin_score`` at each (T, ε)), timed on a few cells and scaled to 210, with the
  largest difference between its scores and the grid's on those cells (equal up to float rounding).

The model is ``fastcnn`` trained for ``--steps`` SGD steps on Fashion-MNIST (a stand-in for a trained checkpoint:
how often sign maps repeat across temperatures depends on the weights), or a run directory given by ``--run``.

Usage: PYTHONPATH=src python benchmarks/odin_grid.py [--quick] [--grid paper|coarse] [--batch-size 256] [--steps 300]
       [--run runs/fmnist-plain] [--cells 6] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)
from torch import nn


def machine() -> str:
    """One line: CPU, cores, torch threads, torch version and the load average (the machine may be shared)."""
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"] * 3
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, nproc {os.cpu_count()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; load average {' '.join(load)}"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime: n/a"


def trained_fastcnn(steps: int, seed: int = 0) -> nn.Module:
    """fastcnn after ``steps`` SGD steps (batch 256, one-cycle peak 0.4, flips) on Fashion-MNIST's training split."""
    from rulab.config import AugmentCfg, OptimCfg
    from rulab.data.loader import TensorLoader
    from rulab.models import create_model
    from rulab.registry import DATASETS
    from rulab.train.optim import lr_at

    torch.manual_seed(seed)
    model = create_model("fastcnn").to(memory_format=torch.channels_last).train()
    train = DATASETS.create("fashion_mnist", split="train")
    cfg = OptimCfg(lr=0.4, schedule="onecycle", warmup_frac=0.2, lr_floor=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = TensorLoader(train.x, train.y, 256, augment=AugmentCfg(hflip=0.5), seed=seed, channels_last=True)
    step = 0
    while step < steps:
        for b in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, cfg)
            loss = F.cross_entropy(model(b["x"]), b["y"], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return model.eval()


def validation_images(seed: int = 0, per_set: int = 0) -> tuple[torch.Tensor, dict[str, int]]:
    """The ``fmnist`` benchmark's tuning data: ``n_val_id`` held-out ID images + each validation-OOD set, uint8
    (only the first ``per_set`` images of each when ``per_set > 0``)."""
    from rulab.config import DataCfg
    from rulab.data.loader import derive_seed
    from rulab.data.splits import load_splits
    from rulab.eval.evaluate import _VAL_OOD_SALT, resolve_benchmark
    from rulab.eval.ood_eval import load_ood_set

    bench = resolve_benchmark("fmnist")
    val = load_splits(DataCfg(), seed).val
    parts = {"val_id": val.x[: bench.n_val_id]}
    for name in bench.val_ood:
        parts[name] = load_ood_set(name, val.shape, bench.n_val_ood, derive_seed(seed, _VAL_OOD_SALT), base=val).x
    if per_set:
        parts = {k: v[:per_set] for k, v in parts.items()}
    return torch.cat(list(parts.values())), {k: len(v) for k, v in parts.items()}


@contextmanager
def count_images(model: nn.Module) -> Any:
    """Count the images sent forward through ``model`` and the input-gradient (backward) passes, image-weighted."""
    counts = {"forward": 0, "backward": 0}
    handle = model.register_forward_hook(
        lambda _m, args, _out: counts.__setitem__("forward", counts["forward"] + len(args[0]))
    )
    real_grad = torch.autograd.grad

    def counting_grad(outputs: Any, inputs: Any, *a: Any, **k: Any) -> Any:
        xs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        counts["backward"] += sum(len(x) for x in xs)
        return real_grad(outputs, inputs, *a, **k)

    torch.autograd.grad = counting_grad
    try:
        yield counts
    finally:
        torch.autograd.grad = real_grad
        handle.remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="50 training steps, 200 images per validation set, 3 naive cells, one timing each",
    )
    ap.add_argument("--steps", type=int, default=300, help="SGD steps of the stand-in model")
    ap.add_argument("--run", default="", help="a run directory (or .safetensors) to load instead of training")
    ap.add_argument("--cells", type=int, default=6, help="grid cells computed naively (timed and compared)")
    ap.add_argument(
        "--batch-size", type=int, default=0, help="ODIN's images per gradient pass (0: the detector's default)"
    )
    ap.add_argument(
        "--grid",
        default="paper",
        help="the (T, ε) grid, a key of rulab.detectors.odin.ODIN_GRIDS (paper: 10 × 21, coarse: 4 × 5)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, cells, repeats = (50, 3, 1) if args.quick else (args.steps, args.cells, 2)

    import inspect

    from rulab.detectors.odin import ODIN, ODIN_GRIDS, odin_grid_scores, odin_score
    from rulab.eval.predict import predict
    from rulab.models.fuse import inference_copy

    if args.grid not in ODIN_GRIDS:
        raise SystemExit(f"--grid must be one of {', '.join(ODIN_GRIDS)}, got '{args.grid}'")
    temps, epss = ODIN_GRIDS[args.grid]["t"], ODIN_GRIDS[args.grid]["eps"]
    if not args.batch_size:
        args.batch_size = inspect.signature(ODIN).parameters["batch_size"].default
    print(f"machine: {machine()}")
    print(uptime())
    if args.run:
        from rulab.checkpoint import load_model

        model, _ = load_model(args.run)
        source = args.run
    else:
        model = trained_fastcnn(steps)
        source = f"fastcnn after {steps} SGD steps"
    model.eval()
    x, sizes = validation_images(per_set=200 if args.quick else 0)
    n = len(x)
    nt, ne = len(temps), len(epss)
    print(
        f"model: {source}; validation images: {n:,} ({', '.join(f'{k} {v:,}' for k, v in sizes.items())}); "
        f"{args.grid} grid {nt} T × {ne} ε = {nt * ne} cells; batch {args.batch_size}"
    )

    fast = inference_copy(model)
    t_fwd = best_seconds(lambda: predict(fast, x, args.batch_size, channels_last=True), 3 * repeats)
    print(f"unit: one forward pass over the validation images (inference copy): {t_fwd * 1e3:.0f} ms")

    with count_images(fast) as counts:
        t0 = time.perf_counter()
        grid = odin_grid_scores(fast, x, temps, epss, args.batch_size)
        t_grid = time.perf_counter() - t0
    if repeats > 1:
        t_grid = min(t_grid, best_seconds(lambda: odin_grid_scores(fast, x, temps, epss, args.batch_size), repeats - 1))
    nz = sum(1 for e in epss if e != 0)
    naive_fwd = nt * nz * 2 + nt * (
        ne - nz
    )  # per image: per cell with ε > 0 a gradient forward + a perturbed forward; ε = 0 one
    print(
        f"grid, inference copy:   {t_grid:7.2f} s = {t_grid / t_fwd:6.1f} × forward;  images forward {counts['forward'] / n:.1f} × N, "
        f"backward {counts['backward'] / n:.1f} × N  (naive: {naive_fwd} × N forward, {nt * nz} × N backward)"
    )
    t_grid_model = best_seconds(lambda: odin_grid_scores(model, x, temps, epss, args.batch_size), repeats)
    print(
        f"grid, model as trained: {t_grid_model:7.2f} s = {t_grid_model / t_fwd:6.1f} × forward  "
        f"(inference copy / as trained: {t_grid_model / t_grid:.2f}× faster)"
    )

    # naive per-cell recomputation on a spread of cells (ε > 0: every cell then needs its own gradient pass)
    g = torch.Generator().manual_seed(0)
    picks = [
        (int(i), int(j))
        for i, j in zip(torch.randint(nt, (cells,), generator=g), torch.randint(1, ne, (cells,), generator=g))
    ]
    worst, t_cells = 0.0, 0.0
    for ti, ej in picks:
        t0 = time.perf_counter()
        s = odin_score(fast, x, temps[ti], epss[ej], args.batch_size)
        t_cells += time.perf_counter() - t0
        worst = max(worst, float((s - grid[ti, ej]).abs().max()))
    n_zero = sum(1 for e in epss if e == 0)
    t_naive = t_cells / len(picks) * nt * (ne - n_zero) + nt * n_zero * t_fwd  # a cell with ε = 0 is one forward pass
    print(
        f"naive per-cell grid:    {t_naive:7.2f} s = {t_naive / t_fwd:6.1f} × forward  (scaled from {len(picks)} cells; "
        f"grid speed-up {t_naive / t_grid:.1f}×)"
    )
    print(f"largest |grid − naive| score difference on those cells: {worst:.2e}")
    print(uptime())


if __name__ == "__main__":
    main()
