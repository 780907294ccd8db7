"""Evaluate a torchvision model you trained yourself, outside rulab.

1. Train ``torchvision.models.resnet18`` (with a 1-channel stem) on Fashion-MNIST in plain PyTorch, with the usual
   ``Normalize(mean, std)`` preprocessing: nothing here knows about rulab.
2. ``rulab.evaluate`` it: calibration (raw and temperature-scaled), OOD detection with logit detectors (MSP, energy)
   and feature detectors (Mahalanobis, KNN, taken at the input of ``fc``) against your own OOD data and a
   registered noise set, and accuracy under a covariate shift.
3. Write the single-file HTML report and, optionally, a rulab checkpoint (``rulab convert``) for ``rulab eval``.

Run:  python examples/evaluate_torchvision_model.py [--tiny] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset

import rulab
from rulab.registry import DATASETS, OOD_SETS

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST statistics in [0, 1] pixel units


class FashionMNIST(Dataset):
    """Fashion-MNIST as a torchvision user sees it: (normalised image tensor [1, 28, 28], label)."""

    def __init__(self, split: str, n: int | None = None) -> None:
        ds = DATASETS.create("fashion_mnist", split=split)  # offline copy (Debian's dataset-fashion-mnist or ~/.cache)
        self.x, self.y = ds.x[:n], ds.y[:n]
        self.classes = ds.classes
        self.transform = torchvision.transforms.Normalize((MEAN,), (STD,))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.x[i].float() / 255), int(self.y[i])


def train_outside_rulab(steps: int, batch_size: int = 128) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # grey input
    loader = DataLoader(
        FashionMNIST("train", n=50_000), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    step = 0
    while step < steps:
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 0 or step == steps:
                print(f"step {step}/{steps}: loss {loss.item():.3f}")
            if step == steps:
                break
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tiny",
        action="store_true",
        default=os.environ.get("RULAB_EXAMPLE_TINY") == "1",
        help="a few seconds: tiny data, few steps",
    )
    p.add_argument("--out", default="example-output/torchvision", help="where the report and checkpoint go")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps, n_test, n_ood, n_fit, n_val = (5, 500, 200, 500, 300) if args.tiny else (300, None, 2000, 5000, 2000)

    t0 = time.time()
    model = train_outside_rulab(steps)
    print(f"trained in {time.time() - t0:.0f} s")

    # your own OOD data, here scikit-learn's digits upsampled to 28x28, as a NumPy array normalised like the training data
    digits = OOD_SETS.create("digits", shape=(1, 28, 28), n=n_ood, seed=0)
    digits_np = ((digits.x.float() / 255 - MEAN) / STD).numpy()

    train = FashionMNIST("train")
    table = rulab.evaluate(
        model,
        id_test=FashionMNIST("test", n=n_test),  # a torch Dataset (with a torchvision transform)
        ood={"digits": digits_np, "gaussian": "gaussian"},  # your data, and a registered noise set by name
        shifts=[("gaussian_blur_sigma", 0.5)],  # one covariate-shift cell (or a suite name)
        detectors=["msp", "energy", "mahalanobis", "knn"],
        id_train=(train.x[:n_fit], train.y[:n_fit]),  # detectors fit on training images (uint8 tensors)
        id_val=(
            train.x[50_000 : 50_000 + n_val],
            train.y[50_000 : 50_000 + n_val],
        ),  # held out: temperature scaling, tuning
        ood_val=["photos"],  # validation-OOD set: tunes KNN's k, never tested on
        pixels=False,
        mean=MEAN,
        std=STD,  # the data above is normalised; rulab maps it back to pixels
        id_name="fashion_mnist",
        n_ood=n_ood,
        n_val_ood=n_val,
    )
    print(table.summary())
    for what, why in table.meta["skipped"].items():
        print(f"skipped {what}: {why}")
    table.to_csv(out / "results.csv")
    try:
        print("report:", rulab.reports.evaluation_report(table, out / "report.html"))
    except rulab.errors.RulabError as err:  # matplotlib missing
        print("no report:", err)

    # the same weights as a rulab checkpoint: `rulab eval <run_dir>` gives the same numbers on the same data
    torch.save(model.state_dict(), out / "resnet18_fmnist.pt")
    run_dir = rulab.convert(
        out / "resnet18_fmnist.pt",
        "torchvision:resnet18",
        mean=MEAN,
        std=STD,
        name="resnet18-fmnist",
        out_dir=out / "runs",
        overwrite=True,
    )
    print(f"checkpoint: {run_dir} (evaluate it with: rulab eval {run_dir})")


if __name__ == "__main__":
    main()
