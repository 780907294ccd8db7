"""Training throughput: rulab's tensor loader vs a torchvision DataLoader + PIL pipeline, and time to 91%.

Both sides train the same model (the default ``fastcnn``, channels-last) with the same optimizer, batch size and
augmentation (random horizontal flip) on Fashion-MNIST; only the input pipeline differs:

* rulab: uint8 tensors in memory, one index gather per batch, batched flip on the tensor (rulab.data.loader);
* baseline: ``torchvision`` dataset-style ``__getitem__`` → ``PIL.Image`` → ``RandomHorizontalFlip`` →
  ``ToTensor`` per image, batched by ``torch.utils.data.DataLoader`` (``num_workers`` 0 and 2).

Then the default preset (``fmnist-plain``) is trained with test accuracy measured after every epoch, and the
wall time at which it first reaches 91% is printed (training time only; evaluation excluded).

Usage: python benchmarks/train_speed.py [--steps 60] [--quick] [--no-accuracy]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def make_model():
    from rulab.models import create_model

    return create_model("fastcnn", num_classes=10, in_channels=1).to(memory_format=torch.channels_last)


def train_steps(batches, steps: int) -> float:
    """Images per second over ``steps`` SGD steps (after 3 warm-up steps) fed by the iterator ``batches``."""
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    n = 0
    t0 = 0.0
    for i, (x, y) in enumerate(batches):
        if i == 3:
            t0, n = time.perf_counter(), 0
        x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
        if i + 1 >= steps + 3:
            break
    return n / (time.perf_counter() - t0)


def rulab_batches(ds, batch_size: int):
    from rulab.config import AugmentCfg
    from rulab.data.loader import TensorLoader

    loader = TensorLoader(ds.x, ds.y, batch_size, augment=AugmentCfg(hflip=0.5), seed=0)
    while True:
        for b in loader:
            yield b["x"], b["y"]


def torchvision_batches(ds, batch_size: int, workers: int):
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class PILDataset(Dataset):
        """What torchvision.datasets.FashionMNIST does per item: uint8 array → PIL image → transforms."""

        def __init__(self, x, y):
            self.x, self.y = x[:, 0].numpy(), y.numpy()
            self.tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()])

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.tf(Image.fromarray(self.x[i], mode="L")), int(self.y[i])

    dl = DataLoader(
        PILDataset(ds.x, ds.y),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    while True:
        yield from dl


def time_to_accuracy(target: float, epochs: int) -> tuple[float | None, list[tuple[int, float, float]]]:
    """Train the default preset, measuring test accuracy after each epoch; return the first time ≥ target."""
    from rulab.data.loader import TensorLoader, derive_seed
    from rulab.data.splits import load_splits
    from rulab.eval.predict import predict
    from rulab.presets import load_config
    from rulab.train.loop import build_model
    from rulab.train.optim import build_optimizer, lr_at

    cfg = load_config("fmnist-plain", overrides=[f"train.epochs={epochs}", "eval.detectors=[]"])
    splits = load_splits(cfg.data, cfg.seed)
    torch.manual_seed(derive_seed(cfg.seed, 0x1417))
    model, _ = build_model(cfg, 10, splits.train.shape)
    model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg.optim)
    loader = TensorLoader(
        splits.train.x,
        splits.train.y,
        cfg.train.batch_size,
        augment=cfg.data.augment,
        seed=cfg.seed,
        channels_last=True,
    )
    total = epochs * len(loader)
    step, train_time, log, hit = 0, 0.0, [], None
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for b in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg.optim)
            loss = F.cross_entropy(model(b["x"]), b["y"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        train_time += time.perf_counter() - t0
        acc = (
            (predict(model, splits.test.x, 2000, channels_last=True)["logits"].argmax(1) == splits.test.y)
            .float()
            .mean()
            .item()
        )
        log.append((epoch + 1, train_time, acc))
        if hit is None and acc >= target:
            hit = train_time
    return hit, log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps per pipeline")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="fewer steps, no time-to-accuracy run")
    ap.add_argument("--no-accuracy", action="store_true")
    args = ap.parse_args()
    steps = 15 if args.quick else args.steps
    from rulab.registry import DATASETS

    ds = DATASETS.create("fashion_mnist", split="train")
    print(
        f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}; batch {args.batch_size}, {steps} timed steps"
    )
    ours = train_steps(rulab_batches(ds, args.batch_size), steps)
    print(f"{'rulab TensorLoader':<38}{ours:>10.0f} img/s   1.00x")
    for workers in (0, 2):
        base = train_steps(torchvision_batches(ds, args.batch_size, workers), steps)
        print(
            f"{f'DataLoader + PIL (num_workers={workers})':<38}{base:>10.0f} img/s   ratio ours/baseline = {ours / base:.2f}x"
        )
    if not (args.quick or args.no_accuracy):
        hit, log = time_to_accuracy(0.91, 5)
        for epoch, t, acc in log:
            print(f"epoch {epoch}: {t:6.1f} s training, test accuracy {acc:.4f}")
        print(f"time to 91% test accuracy (fmnist-plain): {hit:.1f} s" if hit else "91% not reached in 5 epochs")


if __name__ == "__main__":
    main()
