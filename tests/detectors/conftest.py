"""Trained classifiers shared by the detector tests.

* ``toy``: three classes of 3×6×6 images, each a fixed random pattern plus small noise; OOD = uniform noise. A small
  network with a ``Normalize`` first layer learns it in a fraction of a second.
* ``fmnist``: ``fastcnn`` trained for a few hundred steps on Fashion-MNIST classes 0-5, with the held-out classes 6-9
  as near OOD and uniform noise as far OOD: real convolutional features on which the detectors are compared with
  independent implementations (pytorch-ood) and float64 references written from the papers.
* ``toy_ensemble`` / ``fmnist_ensemble``: the same data with a deep ensemble of three such networks (the first is the
  fixture's own, the others trained from seeds 1 and 2), for the detectors that read the members (``"members"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from rulab.data.tensors import TensorDataset
from rulab.detectors.base import Extracted
from rulab.eval.extract import extract
from rulab.models.base import Classifier, Normalize

SHAPE = (3, 6, 6)
MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.25, 0.3)


class TinyNet(Classifier):
    """flatten → Linear(108, 32) → ReLU → Linear(32, 16) → ReLU = features [B, 16]; head Linear(16, K). Feature layers:
    the two hidden ReLU outputs ``body.2`` ``[B, 32]`` and ``body.5`` ``[B, 16]``."""

    feature_layers = ("body.2", "body.5")

    def __init__(self, num_classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = SHAPE
        self.normalize = Normalize(MEAN, STD)
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 16), nn.ReLU()
        )
        self.feature_dim = 16
        self.num_classes = num_classes
        self.fc = nn.Linear(16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def toy_images(n: int, templates: torch.Tensor, g: torch.Generator) -> TensorDataset:
    y = torch.randint(len(templates), (n,), generator=g)
    x = templates[y] + 0.06 * torch.randn(n, *SHAPE, generator=g)
    return TensorDataset(
        (x.clamp(0, 1) * 255).round().to(torch.uint8), y, [f"c{k}" for k in range(len(templates))], "toy"
    )


@dataclass
class Toy:
    model: TinyNet
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    ood: TensorDataset
    val_ood: TensorDataset

    def ex(self, ds: TensorDataset) -> Extracted:
        return extract(self.model, ds, batch_size=128, features=True)


def _train_tiny(train: TensorDataset, seed: int) -> TinyNet:
    """A TinyNet after 150 full-batch Adam steps from the initialisation of ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xb = train.float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only adds synchronisation
    try:
        for _ in range(150):
            loss = nn.functional.cross_entropy(model(xb), train.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="session")
def toy() -> Toy:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    templates = 0.2 + 0.6 * torch.rand(3, *SHAPE, generator=g)
    train, val, test = (toy_images(n, templates, g) for n in (300, 150, 150))
    ood = TensorDataset(
        (torch.rand(150, *SHAPE, generator=g) * 255).to(torch.uint8), torch.full((150,), -1), [], "uniform"
    )
    val_ood = TensorDataset(
        (torch.rand(100, *SHAPE, generator=g) * 255).to(torch.uint8), torch.full((100,), -1), [], "uniform_val"
    )
    return Toy(_train_tiny(train, 0), train, val, test, ood, val_ood)


@pytest.fixture(scope="session")
def toy_ensemble(toy: Toy) -> Toy:
    """The toy's data with a deep ensemble of its network and two more trained from seeds 1 and 2."""
    from rulab.models.ensemble import Ensemble

    members = [toy.model, _train_tiny(toy.train, 1), _train_tiny(toy.train, 2)]
    return Toy(Ensemble(members).eval(), toy.train, toy.val, toy.test, toy.ood, toy.val_ood)  # type: ignore[arg-type]


@dataclass
class Trained:
    """A trained ``fastcnn`` (eval mode) and its data; :meth:`ex` extracts once per dataset."""

    model: nn.Module
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    near: TensorDataset
    far: TensorDataset

    def __post_init__(self) -> None:
        self._cache: dict[str, Extracted] = {}

    def ex(self, ds: TensorDataset) -> Extracted:
        if ds.name not in self._cache:
            self._cache[ds.name] = extract(self.model, ds, batch_size=500, features=True)
        return self._cache[ds.name]


FMNIST_ID = (0, 1, 2, 3, 4, 5)
"""T-shirt, trouser, pullover, dress, coat, sandal; the near-OOD classes are shirt, sneaker, bag and ankle boot."""


@pytest.fixture(scope="session")
def fmnist() -> Trained:
    """``fastcnn`` (width 8, 432-d features) after 300 SGD steps of 128 images on 12,000 Fashion-MNIST training images
    of classes 0-5 (about 88% test accuracy); fit split 2,000 training images, validation 500, ID test 1,000, near
    OOD 1,000 test images of classes 6-9, far OOD 500 uniform-noise images."""
    from rulab.data.splits import filter_classes
    from rulab.registry import DATASETS

    full_train = DATASETS.create("fashion_mnist", split="train")
    full_test = DATASETS.create("fashion_mnist", split="test")
    train = filter_classes(full_train, keep=FMNIST_ID)
    test = filter_classes(full_test, keep=FMNIST_ID)
    near_mask = full_test.y >= len(FMNIST_ID)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train), generator=g)
    fit_rows, val_rows, sgd_rows = order[:2000], order[2000:2500], order[2500:14500]
    model = _train_fastcnn(train.x[sgd_rows], train.y[sgd_rows], 0, g)
    near = TensorDataset(full_test.x[near_mask][:1000], torch.full((1000,), -1), [], "fmnist_near")
    far = TensorDataset(
        (torch.rand(500, 1, 28, 28, generator=g) * 255).to(torch.uint8), torch.full((500,), -1), [], "uniform"
    )
    trained = Trained(
        model,
        train.subset(fit_rows, name="fmnist_fit"),
        train.subset(val_rows, name="fmnist_val"),
        test.subset(torch.arange(1000), name="fmnist_test"),
        near,
        far,
    )
    trained.sgd = (train.x[sgd_rows], train.y[sgd_rows])  # type: ignore[attr-defined]
    return trained


def _train_fastcnn(x: torch.Tensor, y: torch.Tensor, seed: int, g: torch.Generator) -> nn.Module:
    """``fastcnn`` (width 8) after 300 SGD steps of 128 images drawn with ``g``, initialised by ``torch.manual_seed(seed)``;
    eval mode, frozen."""
    from rulab.models import create_model

    torch.manual_seed(seed)
    model = create_model("fastcnn", num_classes=len(FMNIST_ID), width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    for _ in range(300):
        i = torch.randint(len(x), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(x[i].float() / 255), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def fmnist_ensemble(fmnist: Trained) -> Trained:
    """``fmnist``'s data with a deep ensemble of its network and two more trained the same way from seeds 1 and 2."""
    from rulab.models.ensemble import Ensemble

    x, y = fmnist.sgd  # type: ignore[attr-defined]
    members = [fmnist.model] + [_train_fastcnn(x, y, seed, torch.Generator().manual_seed(seed)) for seed in (1, 2)]
    return Trained(Ensemble(members).eval(), fmnist.train, fmnist.val, fmnist.test, fmnist.near, fmnist.far)


def auroc_gaps(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """``{ood set: |AUROC(ours) − AUROC(ref)|}`` for score dicts ``{"test": .., "near": .., "far": ..}`` that are both
    confidences (higher = ID); a reference's outlier score must be negated by the caller."""
    from rulab.metrics.ood import auroc

    return {k: abs(auroc(ours["test"], ours[k]) - auroc(ref["test"], ref[k])) for k in ("near", "far")}


@pytest.fixture
def parity() -> object:
    """``parity(ours, ref)``: the AUROC gaps of :func:`auroc_gaps` (test modules cannot import conftest)."""
    return auroc_gaps


@pytest.fixture
def tinynet() -> type[TinyNet]:
    """The toy network class (the test modules cannot import conftest under --import-mode=importlib)."""
    return TinyNet
