"""Acceptance test of "bring your own model" (issue 9): a torchvision ResNet-18 trained OUTSIDE rulab, evaluated with
``rulab.evaluate`` on Fashion-MNIST against two OOD sets and one shift with logit and feature detectors, gives the
same numbers as the same weights converted with ``rulab convert`` and evaluated with ``rulab eval``."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530
DETECTORS = ["msp", "energy", "mahalanobis", "knn", "vim"]
DATA = ["--data.train_subset=3000", "--data.val_size=500"]


class NormalisedFMNIST(torch.utils.data.Dataset):
    """What a torchvision user has: a Dataset applying ``ToTensor()`` + ``Normalize(MEAN, STD)`` to each image."""

    def __init__(self, ds) -> None:
        from torchvision import transforms

        self.ds = ds
        self.tf = transforms.Normalize((MEAN,), (STD,))

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.tf(self.ds.x[i].float() / 255), int(self.ds.y[i])


def _train_outside(train) -> nn.Module:
    """Plain PyTorch: a torchvision ResNet-18 with a 1-channel stem, 25 Adam steps on normalised images."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(25):
        idx = torch.randint(len(train), (64,), generator=g)
        x = (train.x[idx].float() / 255 - MEAN) / STD
        loss = nn.functional.cross_entropy(net(x), train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture
def one_cell_suite(monkeypatch):
    """A registered one-cell shift suite, so that `rulab eval --shift` (which takes suite names) runs one shift."""
    import rulab.data.corruptions as corruptions
    import rulab.data.corruptions.suites as suites

    suite = suites.ShiftSuite("test-blur-0.5", (("gaussian_blur_sigma", 0.5),), "one W2 blur level")
    for mod in (corruptions, suites):
        monkeypatch.setattr(mod, "SHIFT_SUITES", (*suites.SHIFT_SUITES, suite))
    return suite.name


@pytest.fixture
def two_ood_benchmark():
    """``fmnist`` with only the two OOD sets of this test (the command line takes registered benchmarks)."""
    from dataclasses import replace

    from rulab.registry import BENCHMARKS

    bench = replace(
        BENCHMARKS.create("fmnist"),
        name="fmnist-byom-test",
        ood=("digits", "gaussian"),
        near=("digits",),
        far=("gaussian",),
    )
    BENCHMARKS.register(bench.name, overwrite=True)(lambda: bench)
    return bench.name


@pytest.mark.slow
def test_torchvision_model_api_equals_convert_and_cli(tmp_path, monkeypatch, one_cell_suite, two_ood_benchmark):
    import rulab
    from rulab.cli import main
    from rulab.config import DataCfg
    from rulab.data.splits import load_splits
    from rulab.eval.ood_eval import load_ood_set

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RULAB_DATA", str(tmp_path / "data-cache"))  # the CLI's shift cache goes here, not to ~/.cache
    splits = load_splits(DataCfg(train_subset=3000, val_size=500), seed=0)
    net = _train_outside(splits.train)

    # ---- the Python API on the user's own data objects
    digits = load_ood_set("digits", splits.test.shape, 500, 0)
    digits_normalised = (
        (digits.x.float() / 255 - MEAN) / STD
    ).numpy()  # a NumPy array, normalised like the training data
    table = rulab.evaluate(
        net,
        id_test=NormalisedFMNIST(splits.test),  # a torch Dataset with torchvision transforms
        ood={"digits": digits_normalised, "gaussian": "gaussian"},  # own data + a registered OOD set
        shifts=one_cell_suite,
        detectors=DETECTORS,
        id_train=(splits.train.x, splits.train.y),  # uint8 tensors
        id_val=torch.utils.data.DataLoader(NormalisedFMNIST(splits.val), batch_size=100),  # a DataLoader
        ood_val=["photos"],
        pixels=False,
        mean=MEAN,
        std=STD,
        id_name="fashion_mnist",
        n_ood=500,
    )
    api_rows = {r.key: r.value for r in table}
    assert {r.dataset for r in table.filter(kind="ood")} == {"digits", "gaussian"}
    assert {r.detector for r in table.filter(kind="ood", metric="auroc")} == set(DETECTORS)
    assert table.value(kind="id", metric="acc", detector="") > 0.3  # it learned something in 25 steps

    # ---- the same weights through the command line
    torch.save(net.state_dict(), tmp_path / "resnet18_fmnist.pt")
    assert (
        main(
            [
                "convert",
                "resnet18_fmnist.pt",
                "--model",
                "torchvision:resnet18",
                "--mean",
                str(MEAN),
                "--std",
                str(STD),
                "--name",
                "tv",
                "--out",
                "runs",
                *DATA,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "runs/tv",
                "--benchmark",
                two_ood_benchmark,
                "--shift",
                one_cell_suite,
                "--no-farconf",
                "--detectors",
                ",".join(DETECTORS),
                "--eval.n_ood=500",
            ]
        )
        == 0
    )
    with open(tmp_path / f"runs/tv/eval/{two_ood_benchmark}/results.csv", newline="") as fh:
        cli_rows = {
            (r["kind"], r["dataset"], r["shift"], r["severity"], r["detector"], r["metric"]): float(r["value"])
            for r in csv.DictReader(fh)
        }

    # the same numbers, every one of them
    assert len(api_rows) > 100 and api_rows.keys() == cli_rows.keys()
    for key, value in api_rows.items():
        assert key in cli_rows, key
        assert (math.isnan(value) and math.isnan(cli_rows[key])) or value == cli_rows[key], (key, value, cli_rows[key])
    assert (
        api_rows[("shift", "fashion_mnist", "gaussian_blur_sigma", "0.5", "", "acc")]
        < api_rows[("id", "fashion_mnist", "", "", "", "acc")] + 0.05
    )
    np.testing.assert_array_equal(
        table.arrays["scores/knn/digits"].numpy(),
        rulab.ResultTable.load_arrays(tmp_path / f"runs/tv/eval/{two_ood_benchmark}/arrays.safetensors")[
            "scores/knn/digits"
        ].numpy(),
    )
