"""Peak memory of OOD evaluation on a large synthetic set: streamed (rulab.eval.stream) vs held in memory.

The OOD set is W1's Gaussian noise at 3×32×32 (``rulab.data.noise``), 10⁶ images by default: 3.07 GB as uint8 and
12.3 GB as float32 if materialised. The ID set is the Fashion-MNIST test set padded to 32×32 and repeated over 3
channels (10,000 images, 31 MB). The model is ``fastcnn`` for 3×32×32 inputs (random weights; the point is memory
and equality, not detection quality), scored with five logit detectors (msp, maxlogit, energy, entropy, gen).

Each path runs in its own process so that its peak resident set size (``VmHWM`` from /proc/self/status, or
``ru_maxrss``) is its own:

* **stream**: :class:`rulab.data.noise.NoiseStream` chunks → :func:`rulab.eval.stream.stream_ood_metrics`
  (``quantize=True``: the images a uint8 set would hold); memory = one chunk + one float per image and detector;
* **memory**: ``OOD_SETS.create("gaussian", ...)`` (uint8, all images) → :func:`rulab.eval.extract.extract` →
  detectors → metrics: memory grows with N.

Prints both peaks, the ratio, the seconds, and whether every metric of every detector is equal (exact equality is
expected: same chunks, row-wise scores). The in-memory path runs when N ≤ 200,000 or with ``--compare``.

Usage: PYTHONPATH=src python benchmarks/eval_memory.py [--n 1000000] [--chunk 4096] [--quick] [--compare] [--threads N]
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
    from rulab.registry import DATASETS, DETECTORS as REG

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
        from rulab.data.noise import NoiseStream

        s_ood = score_stream(model, NoiseStream("gaussian", SHAPE, n=n, seed=SEED, chunk=chunk), dets, quantize=True).scores
    else:
        from rulab.eval.extract import extract
        from rulab.registry import OOD_SETS

        ood = OOD_SETS.create("gaussian", shape=SHAPE, n=n, seed=SEED)
        ex = extract(model, ood, batch_size=chunk, features=False, channels_last=True)
        s_ood = {name: det.score(ex).float() for name, det in dets.items()}
        del ood, ex
    metrics = {name: ood_metrics(s_id[name], s_ood[name]) for name in dets}
    seconds = time.perf_counter() - t0
    return {"mode": mode, "n": n, "seconds": seconds, "peak_mb": peak_rss_mb(), "setup_mb": base, "metrics": metrics,
            "threads": torch.get_num_threads()}


def run_child(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--n", str(args.n), "--chunk", str(args.chunk), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        sys.exit(f"{mode} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="OOD images")
    ap.add_argument("--chunk", type=int, default=1000, help="images per chunk / batch (activations of one chunk dominate the stream's memory)")
    ap.add_argument("--quick", action="store_true", help="10^5 images")
    ap.add_argument("--compare", action="store_true", help="also run the in-memory path for N > 200,000")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--child", choices=("stream", "memory"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n = 100_000
    if args.child:
        print(json.dumps(child(args.child, args.n, args.chunk, args.threads)))
        return
    gb_uint8 = args.n * 3 * 32 * 32 / 1e9
    print(f"OOD set: {args.n:,} gaussian images at 3x32x32 ({gb_uint8:.2f} GB as uint8, {4 * gb_uint8:.2f} GB as float32); chunk {args.chunk}")
    s = run_child("stream", args)
    print(f"stream:    peak RSS {s['peak_mb']:8.0f} MB (after setup {s['setup_mb']:.0f} MB), {s['seconds']:7.1f} s, "
          f"{args.n / s['seconds']:,.0f} OOD img/s, {s['threads']} threads")
    if args.n <= 200_000 or args.compare:
        m = run_child("memory", args)
        print(f"in memory: peak RSS {m['peak_mb']:8.0f} MB (after setup {m['setup_mb']:.0f} MB), {m['seconds']:7.1f} s")
        print(f"peak memory ratio in-memory / stream = {m['peak_mb'] / s['peak_mb']:.2f}")
        same = all(s["metrics"][d] == m["metrics"][d] for d in DETECTORS)
        print(f"metrics equal for every detector ({', '.join(DETECTORS)}): {same}")
        if not same:
            for d in DETECTORS:
                print(f"  {d}: stream {s['metrics'][d]}\n  {' ' * len(d)}  memory {m['metrics'][d]}")
            sys.exit(1)
    msp = s["metrics"]["msp"]
    print(f"msp (random weights): auroc {msp['auroc']:.4f}, fpr95_id {msp['fpr95_id']:.4f}")


if __name__ == "__main__":
    main()
