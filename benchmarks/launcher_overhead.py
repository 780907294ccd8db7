"""What a cluster launcher costs per cell: the same tiny study under ``local``, ``slurm`` (submitit's LocalExecutor,
the code path of SLURM on this machine) and ``ray`` (a local instance), as a multiple of the ``local`` launcher.

The study: ``fmnist-plain`` and ``fmnist-oe`` fine-tuned from it (a pre-train → fine-tune pair), × ``--seeds``
seeds, ``--steps`` optimizer steps per cell on 1,024 images, trained only (``evaluate=False``: the evaluation is
the same work under every launcher, so leaving it out shows the launcher's share). Each launcher runs it once from
an empty directory, in this one run of the script. Printed per launcher: the wall time, the time per cell, its
multiple of the local launcher's, and the seconds each cell costs beyond the local launcher (a fresh process with
its imports per cell under the LocalExecutor; task scheduling and one instance start for Ray; the driver's polling
and ingestion for both). The local launcher runs the cells one after the other in this process with every thread;
the cluster launchers run one thread per cell and as many cells at once as the dependencies and the CPUs allow.

Usage:
    PYTHONPATH=src python benchmarks/launcher_overhead.py [--seeds 2] [--steps 10] [--only local,slurm,ray] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from rulab.presets.study_spec import Study
from rulab.study import run_study

POLL = "launcher.poll_s=0.5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds (cells = 2 × seeds)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per cell")
    parser.add_argument(
        "--only", default="local,slurm,ray", help="launchers to measure, comma-separated (local is always run)"
    )
    parser.add_argument("--quick", action="store_true", help="one seed (2 cells), 2 steps")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps = 1, 2
    study = Study(
        "overhead",
        presets=("fmnist-plain", "fmnist-oe"),
        seeds=tuple(range(args.seeds)),
        report=False,
        preset_overrides=(("fmnist-oe", ("train.init_from={run:fmnist-plain}",)),),
    )
    n = 2 * args.seeds
    overrides = [
        f"train.max_steps={args.steps}",
        "train.epochs=1",
        "train.batch_size=64",
        "data.train_subset=1024",
        "data.val_size=200",
        "train.deterministic=false",
        "device=cpu",
    ]
    launchers = ["local", *[x for x in args.only.split(",") if x and x != "local"]]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()}"
    )
    print(f"study: {n} cells (fmnist-plain -> fmnist-oe, {args.seeds} seed(s)), {args.steps} steps each, trained only")
    extra = {
        "local": [],
        "slurm": ["launcher.slurm.executor=local", "launcher.slurm.cpus_per_task=1", POLL],
        "ray": ["launcher.ray.num_cpus=1", POLL],
    }
    root = Path(tempfile.mkdtemp(prefix="rulab-launchers-"))
    cwd = os.getcwd()
    walls: dict[str, float] = {}
    try:
        for name in launchers:
            d = root / name
            d.mkdir()
            os.chdir(d)
            t0 = time.perf_counter()
            res = run_study(
                study, out_dir="runs", overrides=overrides + extra[name], evaluate=False, progress=False, launcher=name
            )
            walls[name] = time.perf_counter() - t0
            os.chdir(cwd)
            assert len(res.ran) == n, res.ran
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
    local = walls["local"] / n
    print(f"{'launcher':<28}{'wall s':>9}{'s per cell':>12}{'x local':>9}{'extra s per cell':>18}")
    names = {"local": "local", "slurm": "slurm (LocalExecutor)", "ray": "ray (local instance)"}
    for name, wall in walls.items():
        per = wall / n
        print(f"{names.get(name, name):<28}{wall:>9.1f}{per:>12.2f}{per / local:>9.2f}{per - local:>18.2f}")


if __name__ == "__main__":
    main()
