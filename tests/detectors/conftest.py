"""A tiny trained classifier on a toy image problem, shared by the detector tests.

Three classes of 3×6×6 images, each a fixed random pattern plus small noise; OOD = uniform noise. A small MLP with a
``Normalize`` first layer learns it in a fraction of a second, after which every sensible detector separates ID from
OOD almost perfectly.
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
    """flatten → Linear(108, 32) → ReLU → Linear(32, 16) → ReLU = features [B, 16]; head Linear(16, K)."""

    def __init__(self, num_classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = SHAPE
        self.normalize = Normalize(MEAN, STD)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 16), nn.ReLU())
        self.feature_dim = 16
        self.num_classes = num_classes
        self.fc = nn.Linear(16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def toy_images(n: int, templates: torch.Tensor, g: torch.Generator) -> TensorDataset:
    y = torch.randint(len(templates), (n,), generator=g)
    x = templates[y] + 0.06 * torch.randn(n, *SHAPE, generator=g)
    return TensorDataset((x.clamp(0, 1) * 255).round().to(torch.uint8), y, [f"c{k}" for k in range(len(templates))], "toy")


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


@pytest.fixture(scope="session")
def toy() -> Toy:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    templates = 0.2 + 0.6 * torch.rand(3, *SHAPE, generator=g)
    train, val, test = (toy_images(n, templates, g) for n in (300, 150, 150))
    ood = TensorDataset((torch.rand(150, *SHAPE, generator=g) * 255).to(torch.uint8), torch.full((150,), -1), [], "uniform")
    val_ood = TensorDataset((torch.rand(100, *SHAPE, generator=g) * 255).to(torch.uint8), torch.full((100,), -1), [], "uniform_val")
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
    model.eval()
    return Toy(model, train, val, test, ood, val_ood)


@pytest.fixture
def tinynet() -> type[TinyNet]:
    """The toy network class (the test modules cannot import conftest under --import-mode=importlib)."""
    return TinyNet
