"""Time to 90 / 91 / 92% Fashion-MNIST test accuracy: the ``fmnist-fast`` preset vs a conventional input pipeline.

Both sides train the same network (``fastcnn``, channels-last) from the same initial weights with the same
optimizer, learning-rate schedule, loss, batch size, number of epochs and augmentation (random horizontal flip),
and are scored the same way; only the input pipeline differs:

* **rulab** (the preset, exactly as ``rulab train fmnist-fast`` runs it): uint8 tensors in memory, one index gather
  per batch, the flip applied to the whole batch as a tensor op (``rulab.data.loader.TensorLoader``);
* **baseline** (what a torchvision user writes): a ``Dataset`` whose ``__getitem__`` does what
  ``torchvision.datasets.FashionMNIST`` does (``PIL.Image.fromarray``) followed by ``transforms.RandomHorizontalFlip``
  and ``transforms.ToTensor``, batched by ``torch.utils.data.DataLoader`` (shuffle, ``--workers`` processes).

The clock runs from before the data are loaded to the end of each epoch; the test-set evaluation after each epoch
(flip test-time augmentation on the inference copy: ``eval.flip_tta`` of the preset) is excluded from it and timed
apart. "time to X%" is the clock at the first epoch end whose test accuracy is ≥ X; "wall" adds one test evaluation
to the clock of the last epoch: the whole recipe, data loading to reported accuracy.

The preset's loop is reproduced step for step here (same seeds, same order of random draws) so that the test
accuracy can be read after every epoch; ``--check-fit`` also runs ``rulab.train.loop.fit`` on the preset for the
first seed and prints its final test accuracy, which must be the same.

The machine may be shared (load average printed before and after every run): wall times are only comparable within
one run of this script, and the ratio baseline / rulab is the figure to keep.

Usage:
    PYTHONPATH=src python benchmarks/time_to_accuracy.py --quick            # one seed, 40 steps per side (smoke test)
    PYTHONPATH=src python benchmarks/time_to_accuracy.py --seeds 5          # the full figure (about 10 min on 2 cores)
    PYTHONPATH=src python benchmarks/time_to_accuracy.py --seeds 2 --first-seed 2 --out tta.jsonl   # a slice
    PYTHONPATH=src python benchmarks/time_to_accuracy.py --summarize tta.jsonl                      # slices together
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from dataclasses import replace
from typing import Any

import torch
from torch import nn

PRESET = "fmnist-fast"
TARGETS = (0.90, 0.91, 0.92)


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def machine() -> str:
    """One line: CPU model, ``nproc``, torch threads and version, and ``uptime``."""
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        up = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        up = f"load average {load()}"
    return f"{cpu}, nproc {os.cpu_count()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}\n{up}"


def test_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, flip_tta: bool) -> float:
    """Top-1 accuracy of ``model`` on uint8 images ``x`` [N, C, H, W] (what ``rulab eval`` computes for the preset)."""
    from rulab.eval.predict import predict
    from rulab.models.fuse import inference_copy
    from rulab.models.tta import FlipTTA

    net = inference_copy(FlipTTA(model) if flip_tta else model)
    logits = predict(net, x, batch_size=1000, channels_last=True)["logits"]
    return (logits.argmax(1) == y).double().mean().item()


class PILDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.FashionMNIST.__getitem__`` does: uint8 array → ``PIL.Image`` (mode L) → transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Any) -> None:
        self.x, self.y, self.transform = x[:, 0].numpy(), y.tolist(), transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i], mode="L")), self.y[i]


def train(cfg: Any, pipeline: str, max_steps: int = 0, workers: int = 0, contiguous: bool = False) -> dict[str, Any]:
    """Train ``cfg`` with the rulab or the baseline input pipeline; test accuracy after every epoch (off the clock).

    Returns:
        ``{"epochs": [{"epoch", "clock", "acc"}], "hit": {target: clock or None}, "wall", "acc", "acc_plain" (the same
        weights without flip TTA), "eval_s", "steps", "images_per_s"}``; times in seconds.
    """
    from rulab.data.loader import TensorLoader, derive_seed, make_generator
    from rulab.data.splits import load_splits
    from rulab.registry import METHODS
    from rulab.train.loop import build_model
    from rulab.train.optim import build_optimizer, lr_at

    t0 = time.perf_counter()
    eval_s = off_clock = 0.0  # seconds of test evaluation with the recipe's TTA; of all test evaluation
    splits = load_splits(cfg.data, cfg.seed)
    train_set, test = splits.train, splits.test
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(derive_seed(cfg.seed, 0x1417))  # as rulab.train.loop.fit: the same initial weights on both sides
    model, _ = build_model(cfg, len(splits.classes), train_set.shape)
    channels_last = cfg.train.channels_last and not contiguous
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = METHODS.create(cfg.method.name, **dict(cfg.method.kwargs))
    method.setup(model, len(splits.classes), train_set.shape)
    optimizer = build_optimizer(model, cfg.optim)
    if pipeline == "rulab":
        loader: Any = TensorLoader(
            train_set.x,
            train_set.y,
            cfg.train.batch_size,
            shuffle=True,
            drop_last=True,
            augment=cfg.data.augment,
            seed=cfg.seed,
            channels_last=channels_last,
        )
        steps_per_epoch = len(loader)
    else:
        from torchvision import transforms

        tf = transforms.Compose([transforms.RandomHorizontalFlip(cfg.data.augment.hflip), transforms.ToTensor()])
        g = torch.Generator().manual_seed(cfg.seed)
        loader = torch.utils.data.DataLoader(
            PILDataset(train_set.x, train_set.y, tf),
            batch_size=cfg.train.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            generator=g,
            persistent_workers=workers > 0,
        )
        steps_per_epoch = len(loader)
    total = cfg.train.epochs * steps_per_epoch
    if max_steps:
        total = min(total, max_steps)
    epochs, hit, step = [], {t: None for t in TARGETS}, 0
    model.train()
    for epoch in range(-(-total // steps_per_epoch)):
        if pipeline == "rulab":
            loader.set_position(epoch, 0)
        for batch in loader:
            if pipeline == "rulab":  # the preset's loop (rulab.train.loop.fit): per-step seeds, then the method
                torch.manual_seed(derive_seed(cfg.seed, 0x57E9, step))
                batch["generator"] = make_generator(cfg.seed, 0x9E7, step)
                batch["step"] = step
            else:
                x, y = batch
                batch = {"x": x.contiguous(memory_format=torch.channels_last) if channels_last else x, "y": y}
            lr = lr_at(step, total, cfg.optim)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
            loss = method(model, batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= total:
                break
        clock = time.perf_counter() - t0 - off_clock
        e0 = time.perf_counter()
        acc = test_accuracy(model, test.x, test.y, cfg.eval.flip_tta)
        eval_s += time.perf_counter() - e0
        # the same weights without test-time augmentation (what TTA adds; off the clock and not in the wall either)
        acc_plain = test_accuracy(model, test.x, test.y, False) if cfg.eval.flip_tta else acc
        off_clock += time.perf_counter() - e0
        model.train()
        epochs.append({"epoch": epoch + 1, "clock": round(clock, 2), "acc": acc, "acc_plain": acc_plain})
        for t in TARGETS:
            if hit[t] is None and acc >= t:
                hit[t] = round(clock, 2)
    last_eval = eval_s / max(len(epochs), 1)
    train_clock = epochs[-1]["clock"]
    return {
        "epochs": epochs,
        "hit": {str(t): v for t, v in hit.items()},
        "wall": round(train_clock + last_eval, 2),
        "acc": epochs[-1]["acc"],
        "acc_plain": epochs[-1]["acc_plain"],
        "eval_s": round(last_eval, 2),
        "steps": step,
        "images_per_s": round(step * cfg.train.batch_size / train_clock),
    }


def fmt_hits(r: dict[str, Any]) -> str:
    return "  ".join(f"{float(t):.0%}: {'—' if v is None else f'{v:5.1f} s':>7}" for t, v in r["hit"].items())


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from rulab.presets import load_config

    cfg = replace(load_config(PRESET), seed=seed)
    max_steps = 40 if args.quick else 0
    out: dict[str, Any] = {"seed": seed}
    sides: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("rulab", "rulab", cfg, {}),
        ("baseline", "baseline", cfg, {"workers": args.workers, "contiguous": args.baseline_contiguous}),
    ]
    if args.ablate_ls:  # the recipe without label smoothing: what it adds
        no_ls = replace(cfg, method=replace(cfg.method, kwargs={**dict(cfg.method.kwargs), "label_smoothing": 0.0}))
        sides.append(("no_ls", "rulab", no_ls, {}))
    for side, pipeline, side_cfg, kw in sides:
        before = load()
        r = train(side_cfg, pipeline, max_steps=max_steps, **kw)
        r["load_before"], r["load_after"] = before, load()
        out[side] = r
        per_epoch = ", ".join(f"{e['acc']:.4f}" for e in r["epochs"])
        print(
            f"seed {seed} {side:<8} {fmt_hits(r)}   wall {r['wall']:5.1f} s  acc {r['acc']:.4f}  "
            f"({r['images_per_s']} img/s; per epoch {per_epoch}; load {r['load_before']} → {r['load_after']})",
            flush=True,
        )
    ratios = {
        t: (out["baseline"]["hit"][t] / out["rulab"]["hit"][t])
        if out["baseline"]["hit"][t] and out["rulab"]["hit"][t]
        else None
        for t in out["rulab"]["hit"]
    }
    out["ratio"] = ratios
    out["ratio_wall"] = out["baseline"]["wall"] / out["rulab"]["wall"]
    print(
        f"seed {seed} ratio baseline / rulab: "
        + "  ".join(f"{float(t):.0%}: {'—' if v is None else f'{v:.2f}x'}" for t, v in ratios.items())
        + f"   wall: {out['ratio_wall']:.2f}x",
        flush=True,
    )
    return out


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return (
        f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"
    )


def summarize(rows: list[dict[str, Any]]) -> None:
    """Mean ± sample standard deviation over seeds of every time, accuracy and ratio."""
    print(f"\nsummary over {len(rows)} seed(s) {[r['seed'] for r in rows]} (mean ± std, min, max):")
    for side in [k for k in ("rulab", "baseline", "no_ls") if all(k in r for r in rows)]:
        for t in map(str, TARGETS):
            vals = [r[side]["hit"][t] for r in rows if r[side]["hit"][t] is not None]
            print(f"  {side:<8} time to {float(t):.0%}: {mean_std(vals)} s  (reached by {len(vals)}/{len(rows)})")
        print(f"  {side:<8} wall (data → trained → tested): {mean_std([r[side]['wall'] for r in rows])} s")
        print(f"  {side:<8} final test accuracy: {mean_std([100 * r[side]['acc'] for r in rows])} %")
        plain = [100 * r[side]["acc_plain"] for r in rows if "acc_plain" in r[side]]
        if plain:
            print(f"  {side:<8} final test accuracy without flip TTA: {mean_std(plain)} % ({len(plain)} seeds)")
    for t in map(str, TARGETS):
        vals = [r["ratio"][t] for r in rows if r["ratio"][t] is not None]
        print(f"  ratio baseline / rulab, time to {float(t):.0%}: {mean_std(vals)}")
    print(f"  ratio baseline / rulab, wall: {mean_std([r['ratio_wall'] for r in rows])}")


def check_fit(seed: int, expected: float) -> None:
    """Run the preset through ``rulab.train.loop.fit`` and compare its test accuracy with the reproduced loop's."""
    import tempfile

    from rulab.checkpoint import load_model
    from rulab.data.splits import load_splits
    from rulab.presets import load_config
    from rulab.train.loop import fit

    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(load_config(PRESET), seed=seed, out_dir=tmp, name="tta-check")
        t0 = time.perf_counter()
        run = fit(cfg, progress=False)
        t_fit = time.perf_counter() - t0
        model, _ = load_model(run)
        test = load_splits(cfg.data, seed).test
        acc = test_accuracy(model, test.x, test.y, cfg.eval.flip_tta)
    same = "the same" if acc == expected else f"DIFFERENT from the reproduced loop's {expected:.4f}"
    print(
        f"check: rulab.train.loop.fit({PRESET}, seed {seed}) took {t_fit:.1f} s (with its checkpoints and metrics files); "
        f"test accuracy {acc:.4f}, {same}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="one seed, 40 steps per side: checks that everything runs")
    ap.add_argument(
        "--workers", type=int, default=0, help="DataLoader worker processes of the baseline (2 cores: 0 is fastest)"
    )
    ap.add_argument(
        "--baseline-contiguous", action="store_true", help="baseline model in the default (contiguous) memory format"
    )
    ap.add_argument(
        "--ablate-ls", action="store_true", help="also train the recipe without label smoothing (rulab pipeline)"
    )
    ap.add_argument(
        "--check-fit", action="store_true", help="also train the first seed with rulab.train.loop.fit and compare"
    )
    ap.add_argument("--out", default="", help="append one JSON line per seed to this file")
    ap.add_argument("--summarize", default="", help="only print the summary of the seeds in this JSON-lines file")
    args = ap.parse_args()
    if args.summarize:
        with open(args.summarize, encoding="utf-8") as fh:
            summarize([json.loads(line) for line in fh if line.strip()])
        return
    from rulab.presets import load_config

    cfg = load_config(PRESET)
    print(machine())
    print(
        f"{PRESET}: {cfg.model.name} {dict(cfg.model.kwargs)}, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
        f"{cfg.optim.name} lr {cfg.optim.lr} ({cfg.optim.schedule}, warm-up {cfg.optim.warmup_frac}), method {cfg.method.name} "
        f"{dict(cfg.method.kwargs)}, flips {cfg.data.augment.hflip}, val_size {cfg.data.val_size}, flip TTA {cfg.eval.flip_tta}; "
        f"baseline: DataLoader + PIL, {args.workers} workers, {'contiguous' if args.baseline_contiguous else 'channels-last'} model"
    )
    seeds = [args.first_seed] if args.quick else list(range(args.first_seed, args.first_seed + args.seeds))
    rows = []
    for seed in seeds:
        row = run_seed(seed, args)
        rows.append(row)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    summarize(rows)
    if args.check_fit and not args.quick:
        check_fit(seeds[0], rows[0]["rulab"]["acc"])
    print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
