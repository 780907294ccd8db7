"""Train the CPU-scale method presets over seeds and measure what the methods are for (docs/results.md).

For every (preset, seed): test accuracy, mean max-confidence (MMC) on the ID test set, on uniform noise, on W3's
low-pass noise (``hein``, built from the test set) and on adversarial noise (PGD on the confidence, ε = 0.3,
40 steps of 0.03 with keep-best, from 128 uniform + 128 low-pass noise images), and accuracy under a PGD-CE attack
(ε = 8/255, 10 steps of 2/255) on 500 test images. Rows go to a JSONL file (a finished row is not recomputed), and
``--table`` prints mean ± std over seeds as markdown.

    python benchmarks/method_effects.py --out /tmp/effects            # all presets, 3 seeds (long: hours on 2 cores)
    python benchmarks/method_effects.py --quick --out /tmp/effects    # plain, ceda, acet; 1 seed
    python benchmarks/method_effects.py --table --out /tmp/effects

Without ``--out`` the rows go to ``rulab-method-effects`` in the system's temporary directory (``make bench`` runs
``--quick`` that way). A run ends by printing the table of what it has.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from rulab.attacks import log_max_confidence, pgd_ce, pgd_confidence
from rulab.checkpoint import load_model
from rulab.data.splits import load_splits
from rulab.eval.predict import predict
from rulab.presets import load_config
from rulab.registry import OOD_SETS
from rulab.train.loop import fit

# (label, preset, overrides); a {run:PRESET} in an override names that preset's run of the same seed
JOBS: list[tuple[str, str, tuple[str, ...]]] = [
    ("plain", "fmnist-plain", ("train.epochs=3",)),
    ("mixup", "fmnist-mixup", ()),
    ("oe", "fmnist-oe", ()),
    ("ceda", "fmnist-ceda", ()),
    ("acet", "fmnist-acet", ()),
    ("adv", "fmnist-adv", ()),
    ("barlow", "fmnist-barlow", ()),
    ("barlow-ft", "fmnist-barlow-ft", ("train.init_from={run:barlow}",)),
    ("pretrain-0to4", "fmnist-pretrain-0to4", ()),
    ("scratch-5to9", "fmnist-scratch-5to9", ()),
    ("finetune-5to9", "fmnist-finetune-5to9", ("train.init_from={run:pretrain-0to4}",)),
    ("scratch-5to9-small", "fmnist-scratch-5to9-small", ()),
    ("finetune-5to9-small", "fmnist-finetune-5to9-small", ("train.init_from={run:pretrain-0to4}",)),
]
UNSUPERVISED = {"barlow"}


def mmc(model: torch.nn.Module, x: torch.Tensor) -> float:
    return predict(model, x)["logits"].softmax(1).max(1).values.mean().item()


def evaluate(run_dir: Path, cfg, seed: int) -> dict[str, float]:
    model, _ = load_model(run_dir)
    splits = load_splits(cfg.data, seed)
    test = splits.test
    logits = predict(model, test.x)["logits"]
    shape = tuple(test.x.shape[1:])
    out = {
        "acc": (logits.argmax(1) == test.y).double().mean().item(),
        "mmc_id": logits.softmax(1).max(1).values.mean().item(),
    }
    out["mmc_uniform"] = mmc(model, OOD_SETS.create("uniform", shape=shape, n=2000, seed=101).x)
    out["mmc_hein"] = mmc(model, OOD_SETS.create("hein", shape=shape, n=2048, seed=102, base=test).x)
    z = (
        torch.cat(
            [OOD_SETS.create(name, shape=shape, n=128, seed=103).x for name in ("uniform", "lowpass_noise")]
        ).float()
        / 255
    )
    _, val = pgd_confidence(model, z, eps=0.3, steps=40, step_size=0.03, generator=torch.Generator().manual_seed(104))
    out["mmc_adv_noise"] = val.exp().mean().item()
    xs, ys = test.x[:500].float() / 255, test.y[:500]
    x_adv, _ = pgd_ce(
        model, xs, ys, eps=8 / 255, steps=10, step_size=2 / 255, generator=torch.Generator().manual_seed(105)
    )
    with torch.no_grad():
        out["adv_acc"] = (model.eval()(x_adv).argmax(1) == ys).double().mean().item()
    assert torch.isfinite(log_max_confidence(logits)).all()
    return out


def run(out: Path, seeds: list[int], labels: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    done = (
        {(r["label"], r["seed"]) for r in map(json.loads, rows_path.read_text().splitlines())}
        if rows_path.exists()
        else set()
    )
    for seed in seeds:
        for label, preset, overrides in JOBS:
            if label not in labels or (label, seed) in done:
                continue
            ov = [o.replace("{run:", f"{out}/runs/").replace("}", f"-s{seed}") for o in overrides]
            cfg = load_config(
                preset,
                overrides=[*ov, f"seed={seed}", f"name={label}-s{seed}", f"out_dir={out}/runs", "eval.detectors=[]"],
            )
            t0, c0 = time.time(), time.process_time()
            run_dir = fit(cfg, resume=True, progress=False)  # a finished run is reused, an interrupted one resumed
            row = {
                "label": label,
                "preset": preset,
                "seed": seed,
                "train_s": round(time.time() - t0, 1),
                "train_cpu_s": round(time.process_time() - c0, 1),
            }
            if label not in UNSUPERVISED:
                row.update(evaluate(run_dir, cfg, seed))
            print(json.dumps(row), flush=True)
            with open(rows_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")


def table(out: Path) -> None:
    if not (out / "rows.jsonl").is_file():
        raise SystemExit(f"{out} holds no rows.jsonl yet; run this script with --out {out} (without --table) first")
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    keys = ["acc", "mmc_id", "mmc_uniform", "mmc_hein", "mmc_adv_noise", "adv_acc", "train_cpu_s"]
    print("| run | seeds | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for label, _, _ in JOBS:
        sel = [r for r in rows if r["label"] == label]
        if not sel:
            continue
        cells = []
        for k in keys:
            v = torch.tensor([r[k] for r in sel if k in r], dtype=torch.float64)
            if len(v) == 0:
                cells.append("–")
                continue
            scale = 1.0 if k == "train_cpu_s" else 100.0
            mean = f"{v.mean().item() * scale:.1f}"
            cells.append(f"{mean} ± {v.std().item() * scale:.1f}" if len(v) > 1 else mean)  # one seed: no spread
        print(f"| {label} | {len(sel)} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "rulab-method-effects",
        help="folder of the runs and rows.jsonl (default: %(default)s)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", default=[label for label, _, _ in JOBS])
    p.add_argument("--quick", action="store_true", help="plain, ceda and acet with one seed")
    p.add_argument("--table", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.table:
        table(a.out)
        return
    run(a.out, [0] if a.quick else a.seeds, ["plain", "ceda", "acet"] if a.quick else a.only)
    table(a.out)


if __name__ == "__main__":
    main()
