"""Training throughput of ``fastcnn`` on this machine: images per second, channels_last vs contiguous, one run.

One training step = forward, label-smoothed cross-entropy, backward, SGD-Nesterov update, on a batch of random
28×28 grey images (the Fashion-MNIST shape). Prints img/s for both memory formats and their ratio.

Usage:
    PYTHONPATH=src python benchmarks/fastcnn_throughput.py [--steps 10] [--batch 256] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from rulab.models import create_model


def images_per_second(channels_last: bool, steps: int, batch: int, warmup: int, seed: int) -> float:
    """Train ``fastcnn`` for ``warmup + steps`` steps and return the img/s of the last ``steps``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = create_model("fastcnn")
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
    parser.add_argument("--quick", action="store_true", help="3 timed steps")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    steps = 3 if args.quick else args.steps
    print(f"fastcnn training, batch {args.batch}, 28×28×1, {steps} timed steps, {torch.get_num_threads()} threads")
    cl = images_per_second(True, steps, args.batch, args.warmup, seed=0)
    contig = images_per_second(False, steps, args.batch, args.warmup, seed=0)
    print(f"channels_last: {cl:8.0f} img/s")
    print(f"contiguous:    {contig:8.0f} img/s")
    print(f"ratio channels_last / contiguous: {cl / contig:.2f}")
    print(f"one Fashion-MNIST epoch (60,000 images) at channels_last speed: {60000 / cl:.1f} s")


if __name__ == "__main__":
    main()
