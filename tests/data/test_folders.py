"""Image folders: ImageFolder semantics, the crop/resize protocols (against torchvision), robustness to bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rulab.data.folders import find_images, load_image_files, load_image_folder
from rulab.errors import ConfigError, DataError


def save(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def gradient(h: int, w: int) -> np.ndarray:
    """RGB image whose pixel (i, j) is (i, j, (i + j) % 256): every crop position is identifiable."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([i % 256, j % 256, (i + j) % 256], axis=-1).astype(np.uint8)


def test_imagefolder_classes_labels_and_skipped(tmp_path):
    save(tmp_path / "zebra" / "a.png", np.zeros((4, 4, 3), np.uint8))
    save(tmp_path / "apple" / "deep" / "b.PNG", np.full((4, 4, 3), 9, np.uint8))
    save(tmp_path / "apple" / "c.jpg", np.full((4, 4, 3), 200, np.uint8))
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("loose file")
    (tmp_path / "empty").mkdir()
    out = load_image_folder(tmp_path, (4, 4), "resize", 3)
    assert out.classes == ["apple", "zebra"]  # sorted, empty folders are not classes
    assert [p.name for p in out.files] == ["c.jpg", "b.PNG", "a.png"]  # files sorted within each class, at any depth
    assert out.y.tolist() == [0, 0, 1] and out.skipped == 2
    assert out.x.shape == (3, 3, 4, 4) and out.x.dtype == torch.uint8
    assert out.x[1].unique().tolist() == [9] and out.x[2].unique().tolist() == [0]


def test_flat_folder_is_one_class(tmp_path):
    save(tmp_path / "imgs" / "1.png", np.zeros((5, 5, 3), np.uint8))
    save(tmp_path / "imgs" / "2.png", np.zeros((5, 5, 3), np.uint8))
    (tmp_path / "imgs" / "list.txt").write_text("x")
    files, labels, classes, skipped = find_images(tmp_path / "imgs")
    assert classes == ["imgs"] and labels == [0, 0] and skipped == 1 and len(files) == 2


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        find_images(tmp_path)


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    save(tmp_path / "c" / "good.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "c" / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"bad.jpg is not a readable image"):
        load_image_folder(tmp_path, (8, 8), "resize", 3)
    (tmp_path / "c" / "bad.jpg").unlink()
    jpg = save(tmp_path / "c" / "cut.jpg", gradient(64, 64), fmt="JPEG")
    jpg.write_bytes(jpg.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.jpg"):
        load_image_folder(tmp_path, (8, 8), "resize", 3)


@pytest.mark.parametrize("hw", [(48, 80), (80, 48), (33, 33)])
def test_resize_crop_matches_torchvision(tmp_path, hw):
    T = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    path = save(tmp_path / "a.png", arr)
    ours = load_image_files([path], (32, 32), "resize_crop", 3)[0]
    ref = T.Compose([T.Resize(32), T.CenterCrop(32), T.PILToTensor()])(Image.open(path).convert("RGB"))
    assert torch.equal(ours, ref)
    ours = load_image_files([path], (32, 32), "resize", 3)[0]
    ref = T.Compose([T.Resize((32, 32)), T.PILToTensor()])(Image.open(path).convert("RGB"))
    assert torch.equal(ours, ref)


def test_center_crop_and_padding(tmp_path):
    path = save(tmp_path / "g.png", gradient(40, 50))
    x = load_image_files([path], (10, 20), "crop", 3)[0]
    # centre: top = round((40 - 10) / 2) = 15, left = round((50 - 20) / 2) = 15
    assert x[0, 0, 0] == 15 and x[1, 0, 0] == 15 and x[0, 9, 19] == 24 and x[1, 9, 19] == 34
    small = save(tmp_path / "s.png", np.full((4, 6, 3), 77, np.uint8))
    y = load_image_files([small], (8, 8), "crop", 3)[0]
    assert y[:, 2:6, 1:7].unique().tolist() == [77] and y[:, 0].unique().tolist() == [0]  # zero padding around


def test_random_crop_is_a_seeded_window(tmp_path):
    paths = [save(tmp_path / f"{k}.png", gradient(60, 70)) for k in range(4)]
    a = load_image_files(paths, (16, 16), "random_crop", 3, seed=3)
    b = load_image_files(paths, (16, 16), "random_crop", 3, seed=3)
    c = load_image_files(paths, (16, 16), "random_crop", 3, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for img in a:  # an exact window of the gradient: rows top..top+15, columns left..left+15
        top, left = int(img[0, 0, 0]), int(img[1, 0, 0])
        assert 0 <= top <= 60 - 16 and 0 <= left <= 70 - 16
        assert torch.equal(img[0, :, 0], torch.arange(top, top + 16, dtype=torch.uint8))
        assert torch.equal(img[1, 0, :], torch.arange(left, left + 16, dtype=torch.uint8))
    assert len({(int(i[0, 0, 0]), int(i[1, 0, 0])) for i in a}) > 1  # positions differ between images


def test_grey_is_pil_luma_and_grey_to_rgb_replicates(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    path = save(tmp_path / "c.png", arr)
    grey = load_image_files([path], (12, 12), "resize", 1)[0, 0].numpy()
    np.testing.assert_array_equal(grey, np.asarray(Image.fromarray(arr).convert("L")))
    approx = arr @ np.array([0.299, 0.587, 0.114])
    assert np.abs(grey - approx).max() <= 1.0
    gpath = save(tmp_path / "g.png", arr[..., 0])
    rgb = load_image_files([gpath], (12, 12), "resize", 3)[0]
    assert (
        torch.equal(rgb[0], rgb[1])
        and torch.equal(rgb[1], rgb[2])
        and torch.equal(rgb[0], torch.from_numpy(arr[..., 0]))
    )


def test_limit_is_a_seeded_subset(tmp_path):
    for k in range(10):
        save(tmp_path / "c" / f"{k:02d}.png", np.full((3, 3, 3), k, np.uint8))
    full = load_image_folder(tmp_path, (3, 3), "resize", 1)
    part = load_image_folder(tmp_path, (3, 3), "resize", 1, limit=4, seed=7)
    again = load_image_folder(tmp_path, (3, 3), "resize", 1, limit=4, seed=7)
    other = load_image_folder(tmp_path, (3, 3), "resize", 1, limit=4, seed=8)
    assert len(full.x) == 10 and len(part.x) == 4 and torch.equal(part.x, again.x)
    values = part.x[:, 0, 0, 0].tolist()
    assert values == sorted(values) and len(set(values)) == 4  # distinct images, kept in folder order
    assert values != other.x[:, 0, 0, 0].tolist()
    assert len(load_image_folder(tmp_path, (3, 3), "resize", 1, limit=50).x) == 10


def test_bad_arguments(tmp_path):
    path = save(tmp_path / "c" / "a.png", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ConfigError, match="valid modes"):
        load_image_files([path], (3, 3), "stretch", 3)
    with pytest.raises(ConfigError, match="channels"):
        load_image_files([path], (3, 3), "resize", 2)
    with pytest.raises(ConfigError, match="limit"):
        load_image_folder(tmp_path, (3, 3), "resize", 3, limit=0)
