"""Where ``fastcnn``'s time goes, stage by stage, against this machine's own matrix-multiply rate (one run).

For each of the three stages (conv3×3 → maxpool2 → BN → ReLU) this prints the multiply-adds per image, the
milliseconds per batch and the achieved G multiply-adds per second, for the evaluation forward pass (the inference
copy: BN folded, channels-last, no gradients) and for the training step (forward + backward in training mode,
channels-last). The reference is a large square float32 ``torch.mm`` on the same threads, i.e. what this CPU
reaches on dense arithmetic. A stage near that rate is compute-bound: only less arithmetic makes it faster. A stage
far below it is bound by memory traffic (its activations are large for its arithmetic).

Usage:
    PYTHONPATH=src python benchmarks/fastcnn_stages.py [--batch 256] [--repeats 20] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)
from torch import nn

from rulab.models import create_model
from rulab.models.fuse import inference_copy


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Milliseconds of the fastest of ``repeats`` calls of ``fn()``, after one warm-up call."""
    return 1e3 * best_seconds(fn, repeats, warmup=1)


def conv_macs(stage: nn.Sequential, side: int) -> int:
    """Multiply-adds per image of the stage's 3×3 convolution (``side`` × ``side`` output, padding 1)."""
    conv = stage[0]
    return side * side * conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, batch 64")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    batch, repeats = (64, 3) if args.quick else (args.batch, args.repeats)
    torch.manual_seed(0)
    print(
        f"nproc {os.cpu_count()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; batch {batch}, best of {repeats}"
    )

    n = 1024 if args.quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm_rate = n**3 / best_ms(lambda: torch.mm(a, b), repeats) / 1e6  # G multiply-adds per second
    print(f"reference: torch.mm {n}×{n} float32: {mm_rate:6.1f} G multiply-adds/s")

    model = create_model("fastcnn").eval()
    fast = inference_copy(model)
    train = create_model("fastcnn").to(memory_format=torch.channels_last).train()
    x = torch.rand(batch, 1, 28, 28)
    header = f"{'stage':24s} {'MACs/img':>9s} {'eval ms':>8s} {'eval GMAC/s':>11s} {'% of mm':>7s} {'train ms':>9s} {'train GMAC/s':>12s} {'% of mm':>7s}"
    print(header)
    total_eval = total_train = 0.0
    z_eval = fast.normalize(x).contiguous(memory_format=torch.channels_last)
    z_train = train.normalize(x).contiguous(memory_format=torch.channels_last)
    side = 28
    for i, (s_eval, s_train) in enumerate(zip(fast.stages, train.stages)):
        macs = conv_macs(s_train, side)
        with torch.inference_mode():
            ms_eval = best_ms(lambda s=s_eval, z=z_eval: s(z), repeats)
            out_eval = s_eval(z_eval)
        inp = z_train.detach().requires_grad_(i > 0)  # the first stage's input needs no gradient in training

        def step(s: nn.Module = s_train, z: torch.Tensor = inp) -> None:
            s(z).sum().backward()

        ms_train = best_ms(step, repeats)
        with torch.no_grad():
            out_train = s_train(z_train)
        # training: forward, gradient w.r.t. the weights and (after stage 1) w.r.t. the input: 2 or 3 × the MACs
        train_macs = macs * (3 if i > 0 else 2)
        r_eval = macs * batch / ms_eval / 1e6
        r_train = train_macs * batch / ms_train / 1e6
        print(
            f"{i + 1}: {s_train[0].in_channels:>2d}→{s_train[0].out_channels:<3d} at {side:>2d}×{side:<2d}       {macs:9,d} "
            f"{ms_eval:8.2f} {r_eval:11.1f} {100 * r_eval / mm_rate:6.0f}% {ms_train:9.2f} {r_train:12.1f} {100 * r_train / mm_rate:6.0f}%"
        )
        total_eval += ms_eval
        total_train += ms_train
        z_eval, z_train = out_eval, out_train
        side //= 2
    print(
        f"three stages: eval {total_eval:.2f} ms/batch = {batch / total_eval * 1e3:,.0f} img/s; "
        f"train (forward + backward) {total_train:.2f} ms/batch = {batch / total_train * 1e3:,.0f} img/s"
    )


if __name__ == "__main__":
    main()
