"""Training throughput of ``fastcnn`` on this machine: images per second, one run, for
channels_last vs contiguous memory format, and for the pool-first stages (conv → maxpool → BN → ReLU, the default)
vs rulab 0.1's conv → BN → ReLU → maxpool stages (``fastcnn(pool_first=False)``).

One training step = forward, label-smoothed cross-entropy, backward, SGD-Nesterov update, on a batch of random
28×28 grey images (the Fashion-MNIST shape). The variants are timed in turn, ``--rounds`` times, and the best of
each is kept (a shared machine only ever slows a run down). Prints img/s and the ratios.

Usage:
    PYTHONPATH=src python benchmarks/fastcnn_throughput.py [--steps 10] [--rounds 3] [--batch 256] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from rulab.models import create_model


def images_per_second(
    channels_last: bool, steps: int, batch: int, warmup: int, seed: int, pool_first: bool = True
) -> float:
    """Train ``fastcnn`` for ``warmup + steps`` steps and return the img/s of the last ``steps``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = create_model("fastcnn", pool_first=pool_first)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randint(0, 256, (batch, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (batch,), generator=g)
    t0 = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            t0 = time.perf_counter()
        xb = (x.float() / 255).contiguous(memory_format=fmt)
        loss = F.cross_entropy(model(xb), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--rounds", type=int, default=3, help="time every variant this many times, keep the best")
    parser.add_argument("--quick", action="store_true", help="3 timed steps, one round")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    steps, rounds = (3, 1) if args.quick else (args.steps, args.rounds)
    print(
        f"fastcnn training, batch {args.batch}, 28×28×1, {steps} timed steps, best of {rounds}, {torch.get_num_threads()} threads"
    )
    variants = {  # name: (channels_last, pool_first)
        "pool-first, channels_last": (True, True),
        "pool-first, contiguous": (False, True),
        "rulab 0.1 layout, channels_last": (True, False),
    }
    best = dict.fromkeys(variants, 0.0)
    for _ in range(rounds):
        for name, (cl, pf) in variants.items():
            best[name] = max(best[name], images_per_second(cl, steps, args.batch, args.warmup, seed=0, pool_first=pf))
    for name, rate in best.items():
        print(f"{name:32s} {rate:8.0f} img/s")
    cl, contig, old = best.values()
    print(f"ratio channels_last / contiguous (pool-first): {cl / contig:.2f}")
    print(f"ratio pool-first / rulab 0.1 layout (channels_last): {cl / old:.2f}")
    print(f"one Fashion-MNIST epoch (60,000 images) at the default's speed: {60000 / cl:.1f} s")


if __name__ == "__main__":
    main()
