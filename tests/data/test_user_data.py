"""A user's data in every common form → uint8 TensorDataset (rulab.data.user)."""

from __future__ import annotations

import warnings

import pytest
import torch

from rulab.data.tensors import TensorDataset
from rulab.data.user import as_dataset, to_pixels
from rulab.errors import ConfigError, InputError

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 3, 6, 5), dtype=torch.uint8, generator=g)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 255  # both ends of the range
    return x, torch.randint(0, 4, (12,), generator=g)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_round_trips_are_exact(images) -> None:
    x, y = images
    assert as_dataset((x, y)).x.data_ptr() == x.data_ptr()  # uint8 is used as it is, not copied
    ds = as_dataset(((x.float() / 255).numpy(), y.numpy()), "pix")
    assert torch.equal(ds.x, x) and torch.equal(ds.y, y) and ds.name == "pix"
    ds = as_dataset((_norm(x), y), pixels=False, mean=MEAN, std=STD)  # float32 normalised → the same 8-bit pixels
    assert torch.equal(ds.x, x)
    assert ds.classes == ["0", "1", "2", "3"][: int(y.max()) + 1]


def test_layouts(images) -> None:
    x, y = images
    nhwc = x.permute(0, 2, 3, 1).numpy()
    assert torch.equal(as_dataset((nhwc, y)).x, x)
    grey = x[:, 0]
    assert as_dataset((grey, y)).x.shape == (12, 1, 6, 5)
    with pytest.raises(InputError, match=r"\[N, C, H, W\]"):
        as_dataset((x[0, 0, 0], y))


def test_errors_say_what_to_do(images) -> None:
    x, y = images
    with pytest.raises(InputError, match="pass pixels=False"):
        as_dataset((_norm(x), y))
    with pytest.raises(ConfigError, match="give the mean and std"):
        as_dataset((_norm(x), y), pixels=False)
    with pytest.raises(InputError, match="mean/std do not match"):
        as_dataset((_norm(x) * 3, y), pixels=False, mean=MEAN, std=STD)
    with pytest.raises(InputError, match="one value per channel"):
        as_dataset((_norm(x), y), pixels=False, mean=(0.1, 0.2), std=(0.3, 0.3))
    with pytest.raises(InputError, match="needs labels"):
        as_dataset(x)
    with pytest.raises(InputError, match="12 images but 3 labels"):
        as_dataset((x, y[:3]))
    bad = x.float() / 255
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        as_dataset((bad, y))
    with pytest.raises(InputError, match="not images"):
        as_dataset(({"a": 1}, y))


def test_non_8bit_float_data_is_rounded_with_a_warning_when_asked(images) -> None:
    x, _ = images
    off = x.float() / 255 + 0.4 / 255  # 0.4 of a level off the grid
    with pytest.warns(UserWarning, match="not 8-bit"):
        q = to_pixels(off.clamp(0, 1), quantize=True)
    assert (q.int() - x.int()).abs().max() <= 1


def test_float_data_off_the_8bit_grid_are_kept_exactly(images) -> None:
    x, y = images
    off = (x.float() / 255 + 0.4 / 255).clamp(0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no rounding warning: nothing is rounded
        ds = as_dataset((off, y), "off")
    assert ds.x.dtype == torch.float32 and torch.equal(ds.x, off)
    g = torch.Generator().manual_seed(1)
    noise64 = torch.rand(4, 3, 6, 5, generator=g, dtype=torch.float64)  # float64 is held at the model's float32
    assert torch.equal(as_dataset(noise64.numpy(), ood=True).x, noise64.float())
    normalised = (off - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    back = as_dataset((normalised, y), pixels=False, mean=MEAN, std=STD).x
    assert back.dtype == torch.float32 and (back - off).abs().max() < 1e-6
    # 8-bit data given as float stay uint8 (k / 255 exactly, as ToTensor gives)
    assert as_dataset((x.float() / 255, y)).x.dtype == torch.uint8
    # a loader mixing 8-bit and other float batches is held as float, each batch exact
    mixed = [(x[:6].float() / 255, y[:6]), (off[6:], y[6:])]
    got = as_dataset(torch.utils.data.DataLoader(_ListData(mixed), batch_size=None))
    assert (
        got.x.dtype == torch.float32 and torch.equal(got.x[:6], x[:6].float() / 255) and torch.equal(got.x[6:], off[6:])
    )


class _ListData(torch.utils.data.IterableDataset):
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def test_ood_sets_get_label_minus_one(images) -> None:
    x, y = images
    ds = as_dataset(x, "noise", ood=True)
    assert (ds.y == -1).all() and ds.classes == []
    ds = as_dataset(TensorDataset(x, y, ["a"] * 4, "t"), ood=True)
    assert (ds.y == -1).all()


class _Pairs(torch.utils.data.Dataset):
    """A torchvision-style dataset: PIL images through a transform."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform=None) -> None:
        from PIL import Image

        self.images = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in x]
        self.y, self.transform = y, transform
        self.classes = ["cat", "dog", "emu", "fox"]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.images[i]
        return (self.transform(img) if self.transform else img), int(self.y[i])


def test_torch_datasets_and_loaders(images) -> None:
    from torchvision import transforms

    x, y = images
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    ds = as_dataset(_Pairs(x, y, tf), pixels=False, mean=MEAN, std=STD, batch_size=5)
    assert torch.equal(ds.x, x) and torch.equal(ds.y, y) and ds.classes == ["cat", "dog", "emu", "fox"]
    raw = as_dataset(_Pairs(x, y))  # PIL images, no transform
    assert torch.equal(raw.x, x)
    loader = torch.utils.data.DataLoader(_Pairs(x, y, transforms.ToTensor()), batch_size=4)
    assert torch.equal(as_dataset(loader).x, x)
    only_x = torch.utils.data.DataLoader(x, batch_size=5)
    assert torch.equal(as_dataset(only_x, labels=y).y, y)


def test_image_folder(tmp_path, images) -> None:
    from PIL import Image

    x, y = images
    for i, (img, label) in enumerate(zip(x, y)):
        d = tmp_path / f"class{int(label)}"
        d.mkdir(exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i}.png")
    with pytest.raises(ConfigError, match="needs size"):
        as_dataset(tmp_path)
    ds = as_dataset(str(tmp_path), size=(6, 5), channels=3)
    assert ds.x.shape == (12, 3, 6, 5) and ds.classes == sorted({f"class{int(v)}" for v in y})
    # the same images, whatever the file order: compare as sets of (image bytes, class name)
    got = {(bytes(a.numpy().tobytes()), ds.classes[int(b)]) for a, b in zip(ds.x, ds.y)}
    want = {(bytes(a.numpy().tobytes()), f"class{int(b)}") for a, b in zip(x, y)}
    assert got == want


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x.float() / 255, self.y.tolist()))


def test_iterable_dataset(images) -> None:
    x, y = images
    ds = as_dataset(_Stream(x, y), batch_size=5)
    assert torch.equal(ds.x, x) and torch.equal(ds.y, y)


def test_corrupted_copies_of_float_data_are_8_bit() -> None:
    """Shift evaluation quantises its corrupted copies to 8 bits (the CIFAR-10-C protocol), whatever the input dtype:
    float32 pixels equal to an 8-bit set give that set's corrupted copy exactly."""
    from rulab.data.corruptions import corrupt_dataset

    x, y = (
        torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)),
        torch.zeros(4, dtype=torch.long),
    )
    as_float = TensorDataset(x.float() / 255, y, [], "f")
    out_f, out_u = (
        corrupt_dataset(as_float, "gaussian_noise", 3, seed=0),
        corrupt_dataset(TensorDataset(x, y, [], "u"), "gaussian_noise", 3, seed=0),
    )
    assert out_f.x.dtype == torch.uint8 and torch.equal(out_f.x, out_u.x)
