"""Peak memory of OOD evaluation on a large synthetic set: streamed (rulab.eval.stream) vs held in memory.

The OOD set is W1's Gaussian noise at 3×32×32 (``rulab.data.ood.noise_sets``), 10⁶ images by default: 3.07 GB as uint8 and
12.3 GB as float32 if materialised. The ID set is the Fashion-MNIST test set padded to 32×32 and repeated over 3
channels (10,000 images, 31 MB). The model is ``fastcnn`` for 3×32×32 inputs (random weights; the point is memory
and equality, not detection quality), scored with five logit detectors (msp, maxlogit, energy, entropy, gen).

Each path runs in its own process so that its peak resident set size (``VmHWM`` from /proc/self/status, or
``ru_maxrss``) is its own:

* **stream**: :class:`rulab.data.ood.noise_sets.NoiseStream` chunks → :func:`rulab.eval.stream.stream_ood_metrics`
  (``quantize=True``: the images a uint8 set would hold); memory = one chunk + one float per image and detector;
* **memory**: ``OOD_SETS.create("gaussian", ...)`` (uint8, all images) → :func:`rulab.eval.extract.extract` →
  detectors → metrics: memory grows with N.

Prints the stream's peak at N (10⁶) and at a smaller size (10⁵), which shows that it does not grow with N beyond
the 4 bytes per image and detector of the scores it keeps; the in-memory path's peak at the smaller size; and whether
every metric of every detector is equal there (identical for MSP, max-logit, energy and entropy; within float
rounding, ``TOL``, for GEN). With
``--compare`` the in-memory path also runs at N (it needs several GB).

Usage: PYTHONPATH=src python benchmarks/eval_memory.py [--n 1000000] [--compare-n 100000] [--chunk 1000] [--quick] [--compare] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

DETECTORS = ("msp", "maxlogit", "energy", "entropy", "gen")
SHAPE = (3, 32, 32)
SEED = 7
TOL = 1e-6
"""Largest accepted difference between a metric of the two paths: MSP, max-logit, energy and entropy come out
identical; GEN's vectorised reductions round differently over a chunk than over the whole set."""


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(threads: int):
    import torch
    import torch.nn.functional as F

    from rulab.data.tensors import TensorDataset
    from rulab.models import create_model
    from rulab.models.fuse import inference_copy
    from rulab.registry import DATASETS
    from rulab.registry import DETECTORS as REG

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = inference_copy(create_model("fastcnn", in_channels=3, input_size=32))
    fm = DATASETS.create("fashion_mnist", split="test")
    x = F.pad(fm.x, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()
    id_set = TensorDataset(x, fm.y.clone(), list(fm.classes), "fashion_mnist_32x3")
    dets = {n: REG.create(n) for n in DETECTORS}
    return model, id_set, dets


def child(mode: str, n: int, chunk: int, threads: int) -> dict:
    import torch

    from rulab.eval.stream import chunks_of, score_stream
    from rulab.metrics.ood import ood_metrics

    model, id_set, dets = setup(threads)
    base = peak_rss_mb()
    t0 = time.perf_counter()
    s_id = score_stream(model, chunks_of(id_set, chunk), dets).scores
    if mode == "stream":
        from rulab.data.ood.noise_sets import NoiseStream

        s_ood = score_stream(
            model, NoiseStream("gaussian", SHAPE, n=n, seed=SEED, chunk=chunk), dets, quantize=True
        ).scores
    else:
        from rulab.eval.extract import extract
        from rulab.registry import OOD_SETS

        ood = OOD_SETS.create("gaussian", shape=SHAPE, n=n, seed=SEED)
        ex = extract(model, ood, batch_size=chunk, features=False, channels_last=True)
        s_ood = {name: det.score(ex).float() for name, det in dets.items()}
        del ood, ex
    metrics = {name: ood_metrics(s_id[name], s_ood[name]) for name in dets}
    seconds = time.perf_counter() - t0
    return {
        "mode": mode,
        "n": n,
        "seconds": seconds,
        "peak_mb": peak_rss_mb(),
        "setup_mb": base,
        "metrics": metrics,
        "threads": torch.get_num_threads(),
    }


def run_child(mode: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--n",
        str(args.n),
        "--chunk",
        str(args.chunk),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        sys.exit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def show(r: dict) -> str:
    return (
        f"{r['mode']:<9} N = {r['n']:>9,}: peak RSS {r['peak_mb']:7.0f} MB (after setup {r['setup_mb']:.0f} MB), "
        f"{r['seconds']:7.1f} s, {r['n'] / r['seconds']:>9,.0f} OOD img/s, {r['threads']} threads"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="OOD images streamed")
    ap.add_argument(
        "--compare-n", type=int, default=100_000, help="OOD images of the stream vs in-memory equality check"
    )
    ap.add_argument(
        "--chunk",
        type=int,
        default=1000,
        help="images per chunk / batch (activations of one chunk dominate the stream's memory)",
    )
    ap.add_argument("--quick", action="store_true", help="10^5 images streamed, equality checked on 2·10^4")
    ap.add_argument(
        "--compare",
        action="store_true",
        help="also run the in-memory path on all N images (needs N × 3 kB of RAM and more)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--child", choices=("stream", "memory"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.compare_n = 100_000, 20_000
    if args.child:
        print(json.dumps(child(args.child, args.n, args.chunk, args.threads)))
        return
    try:
        up = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        up = "uptime: n/a"
    print(f"machine: nproc {os.cpu_count()}; {up}")
    gb_uint8 = args.n * 3 * 32 * 32 / 1e9
    print(
        f"OOD set: {args.n:,} gaussian images at 3x32x32 ({gb_uint8:.2f} GB as uint8, {4 * gb_uint8:.2f} GB as float32); "
        f"ID: 10,000 Fashion-MNIST test images; chunk {args.chunk}; detectors {', '.join(DETECTORS)}"
    )

    def sized(n: int) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(args), "n": n})

    big = run_child("stream", args)
    print(show(big))
    small_s = run_child("stream", sized(args.compare_n))
    small_m = run_child("memory", sized(args.compare_n))
    print(show(small_s))
    print(show(small_m))
    scores_mb = 4 * len(DETECTORS) * (args.n - args.compare_n) / 2**20
    print(
        f"stream peak RSS from N = {args.compare_n:,} to {args.n:,}: {small_s['peak_mb']:.0f} → {big['peak_mb']:.0f} MB "
        f"(+{big['peak_mb'] - small_s['peak_mb']:.0f} MB; the scores kept, 4 bytes per image and detector, are {scores_mb:.0f} MB of it)"
    )
    per_image_kb = (small_m["peak_mb"] - small_s["peak_mb"]) * 1024 / args.compare_n
    print(
        f"in-memory path: +{per_image_kb:.1f} kB per OOD image over the stream at N = {args.compare_n:,}; "
        f"at N = {args.n:,} that is about {per_image_kb * args.n / 2**20:.1f} GB more (not run; --compare runs it)"
    )
    diffs = {
        d: max(abs(small_s["metrics"][d][k] - small_m["metrics"][d][k]) for k in small_m["metrics"][d])
        for d in DETECTORS
    }
    print(
        f"N = {args.compare_n:,}, stream vs in memory, largest metric difference per detector: "
        + ", ".join(f"{d} {'0 (identical)' if v == 0 else f'{v:.1e}'}" for d, v in diffs.items())
    )
    if max(diffs.values()) > TOL:
        for d in DETECTORS:
            print(f"  {d}: stream {small_s['metrics'][d]}\n  {' ' * len(d)}  memory {small_m['metrics'][d]}")
        sys.exit(f"the stream's metrics differ from the in-memory path's by more than {TOL}")
    if args.compare:
        full_m = run_child("memory", args)
        print(show(full_m))
        worst = max(
            abs(big["metrics"][d][k] - full_m["metrics"][d][k]) for d in DETECTORS for k in full_m["metrics"][d]
        )
        print(
            f"peak memory ratio in-memory / stream at N = {args.n:,}: {full_m['peak_mb'] / big['peak_mb']:.2f}; "
            f"largest metric difference {worst:.1e}"
        )
        if worst > TOL:
            sys.exit(1)
    msp = big["metrics"]["msp"]
    print(f"msp (random weights) at N = {args.n:,}: auroc {msp['auroc']:.4f}, fpr95_id {msp['fpr95_id']:.4f}")


if __name__ == "__main__":
    main()
