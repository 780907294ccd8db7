"""What the inference copy (rulab.models.fuse.inference_copy) and flip TTA cost and save at evaluation time.

Evaluation runs a trained network in eval mode: forward passes (extraction, shift cells) and input gradients (ODIN,
PGD). For ``fastcnn`` on 1×28×28 this prints the images per second of

* the model as trained (contiguous weights), the same in channels-last memory format, and the inference copy
  (BatchNorm folded into the convolutions, max-pooling before ReLU, channels-last), for a forward pass and for a
  forward + input-gradient pass;
* the inference copy of the flip-TTA predictor (two views per image: half the images per second, by construction).

Each figure is the best of ``--repeats`` timings (the least disturbed on a shared machine) and all run in one process,
so the ratios are comparable; the logits of the copy are checked against the model's.

Usage: PYTHONPATH=src python benchmarks/inference_copy.py [--quick] [--batch 1000] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Callable

import torch
from _timing import best_seconds  # benchmarks/_timing.py (the script's directory)
from torch import nn


def best_rate(fn: Callable[[], None], images: int, repeats: int) -> float:
    """Images per second of ``fn`` (which processes ``images`` images): the fastest of ``repeats`` runs after one warm-up."""
    return images / best_seconds(fn, repeats, warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 repeats, batch 500")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, repeats = (500, 2) if args.quick else (args.batch, args.repeats)

    from rulab.models import create_model
    from rulab.models.fuse import inference_copy
    from rulab.models.tta import FlipTTA
    from rulab.registry import DATASETS

    try:
        up = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        up = "uptime: n/a"
    print(f"nproc {os.cpu_count()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; {up}")
    torch.manual_seed(0)
    model = create_model("fastcnn").train()
    train = DATASETS.create("fashion_mnist", split="train")
    with torch.no_grad():  # realistic BatchNorm statistics: a few training-mode passes over real images
        for i in range(0, 5000, 500):
            model(train.x[i : i + 500].float() / 255)
    model.eval()
    x = train.x[:batch].float() / 255
    variants: dict[str, nn.Module] = {
        "model, contiguous": model,
        "model, channels-last": _channels_last(model),
        "inference copy": inference_copy(model),
    }
    with torch.no_grad():
        ref = model(x)
        err = float((variants["inference copy"](x) - ref).abs().max() / ref.abs().max())
    print(
        f"fastcnn (width 16), batch {batch}, 1×28×28; inference copy vs model: largest logit difference {err:.1e} of the largest logit"
    )

    def forward(net: nn.Module, xb: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                net(xb)

        return run

    def input_grad(net: nn.Module, xb: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            xg = xb.detach().requires_grad_(True)
            torch.autograd.grad(net(xg).logsumexp(1).sum(), xg)

        return run

    rows = []
    for name, net in variants.items():
        xb = x if name == "model, contiguous" else x.contiguous(memory_format=torch.channels_last)
        rows.append((name, best_rate(forward(net, xb), batch, repeats), best_rate(input_grad(net, xb), batch, repeats)))
    tta = inference_copy(FlipTTA(model))
    xc = x.contiguous(memory_format=torch.channels_last)
    rows.append(
        (
            "inference copy of flip TTA",
            best_rate(forward(tta, xc), batch, repeats),
            best_rate(input_grad(tta, xc), batch, repeats),
        )
    )
    base_f, base_g = rows[0][1], rows[0][2]
    print(f"{'':<28}{'forward img/s':>15}{'ratio':>8}{'input-grad img/s':>19}{'ratio':>8}")
    for name, f, g in rows:
        print(f"{name:<28}{f:>15,.0f}{f / base_f:>7.2f}x{g:>19,.0f}{g / base_g:>7.2f}x")
    print(subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip())


def _channels_last(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with channels-last weights and nothing else changed (BatchNorm kept, same layer order)."""
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


if __name__ == "__main__":
    main()
