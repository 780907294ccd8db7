"""Parsers of the raw dataset formats, on small files written in the real formats."""

from __future__ import annotations

import gzip
import io
import pickle
import struct

import numpy as np
import pytest

from rulab.data.formats import (
    gunzip,
    read_cifar_batch,
    read_cifar_meta,
    read_idx,
    read_imagenet32_batch,
    read_medmnist_npz,
    read_svhn_mat,
    safe_unpickle,
)
from rulab.errors import DataError


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding: 0, 0, type code, rank, big-endian uint32 dims, big-endian data."""
    code = {
        np.dtype(np.uint8): 0x08,
        np.dtype(np.int8): 0x09,
        np.dtype(">i2"): 0x0B,
        np.dtype(">i4"): 0x0C,
        np.dtype(">f4"): 0x0D,
    }
    be = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    return bytes([0, 0, code[be.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + be.tobytes()


def test_read_idx_images_and_labels_known_answer():
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(imgs)
    assert data[:4] == b"\x00\x00\x08\x03"  # the MNIST image magic number 2051
    out = read_idx(data)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, imgs)
    labels = np.array([9, 0, 3], dtype=np.uint8)
    assert struct.unpack(">I", idx_bytes(labels)[:4])[0] == 2049  # the MNIST label magic number
    np.testing.assert_array_equal(read_idx(idx_bytes(labels)), labels)


def test_read_idx_big_endian_int32():
    vals = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    out = read_idx(idx_bytes(vals.astype(">i4")))
    assert out.dtype == np.int32 and out.dtype.byteorder in ("=", "<", "|")
    np.testing.assert_array_equal(out, vals)


def test_read_idx_rejects_truncated_and_bad_magic():
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"truncated.*2,368 bytes but has 2,000"):
        read_idx(data[:2000], "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        read_idx(data[:10], "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="too long"):
        read_idx(data + b"\x00")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(b"\x1f\x8b\x08\x00" + data[4:])


def test_gunzip_multi_member_and_truncation():
    a, b = b"first member " * 100, b"second"
    assert gunzip(gzip.compress(a) + gzip.compress(b)) == a + b
    comp = gzip.compress(a)
    with pytest.raises(DataError, match="truncated gzip"):
        gunzip(comp[: len(comp) // 2], "x.gz")
    with pytest.raises(DataError, match="not a valid gzip"):
        gunzip(b"\x1f\x8b" + b"garbage" * 10, "x.gz")


def cifar_pickle(data: np.ndarray, labels: list[int], key: str = "labels", protocol: int = 2) -> bytes:
    # the CIFAR python files are Python-2 pickles of dicts with bytes keys
    return pickle.dumps({b"batch_label": b"x", b"data": data, key.encode(): labels}, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar_batch_plane_layout(protocol):
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    x, y = read_cifar_batch(cifar_pickle(rows, [4, 0, 9], protocol=protocol))
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.uint8
    # row = 1024 red values, then 1024 green, then 1024 blue, each row-major 32x32
    assert x[1, 0, 0, 0] == rows[1, 0] and x[1, 1, 0, 0] == rows[1, 1024] and x[1, 2, 31, 31] == rows[1, 3071]
    assert x[2, 0, 1, 2] == rows[2, 34]
    np.testing.assert_array_equal(y, [4, 0, 9])
    assert y.dtype == np.int64


def test_read_cifar100_fine_labels_and_meta():
    rows = np.zeros((2, 3072), np.uint8)
    blob = pickle.dumps({b"data": rows, b"fine_labels": [99, 1], b"coarse_labels": [0, 0]}, protocol=2)
    _, y = read_cifar_batch(blob)
    np.testing.assert_array_equal(y, [99, 1])
    meta = pickle.dumps({b"fine_label_names": [b"apple", b"bear"]}, protocol=2)
    assert read_cifar_meta(meta, "fine_label_names") == ["apple", "bear"]


def test_read_cifar_batch_errors():
    with pytest.raises(DataError, match="3 images but 2 labels"):
        read_cifar_batch(cifar_pickle(np.zeros((3, 3072), np.uint8), [1, 2]))
    with pytest.raises(DataError, match="expected uint8"):
        read_cifar_batch(cifar_pickle(np.zeros((3, 100), np.uint8), [1, 2, 3]))
    blob = cifar_pickle(np.zeros((3, 3072), np.uint8), [1, 2, 3])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_cifar_batch(blob[: len(blob) // 2], "data_batch_1")


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_safe_unpickle_refuses_code(tmp_path):
    target = tmp_path / "pwned"
    blob = pickle.dumps({b"data": _Evil(str(target))}, protocol=2)
    with pytest.raises(DataError, match=r"refusing to load (io|builtins)\.open"):
        safe_unpickle(blob, "data_batch_1")
    assert not target.exists()
    assert safe_unpickle(pickle.dumps({"a": [1, 2.5, "s", b"b"]})) == {"a": [1, 2.5, "s", b"b"]}


def test_read_svhn_mat(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)  # H x W x C x N as in the release
    y = np.array([[10], [1], [9], [10]], dtype=np.uint8)  # digit 0 is stored as 10
    path = tmp_path / "test_32x32.mat"
    scipy_io.savemat(path, {"X": X, "y": y})
    x, labels = read_svhn_mat(path)
    assert x.shape == (4, 3, 32, 32)
    assert x[2, 1, 5, 7] == X[5, 7, 1, 2] and x[3, 0, 31, 0] == X[31, 0, 0, 3]
    np.testing.assert_array_equal(labels, [0, 1, 9, 0])
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 50)
    with pytest.raises(DataError, match="bad.mat"):
        read_svhn_mat(bad)


def test_read_imagenet32_pickle_and_npz_labels_shift(tmp_path):
    rng = np.random.default_rng(2)
    rows = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    d = {"data": rows, "labels": [1, 1000, 5], "mean": np.zeros(3072)}
    for blob in (pickle.dumps(d, protocol=2), _npz_bytes(data=rows, labels=np.array([1, 1000, 5]))):
        x, y = read_imagenet32_batch(blob)
        np.testing.assert_array_equal(y, [0, 999, 4])
        assert x.shape == (3, 3, 32, 32) and x[0, 2, 0, 0] == rows[0, 2048]
    with pytest.raises(DataError, match="start at 1"):
        read_imagenet32_batch(pickle.dumps({"data": rows, "labels": [0, 1, 2]}))


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_read_medmnist_npz(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, (n, 1))
    path = tmp_path / "pathmnist.npz"
    np.savez_compressed(path, **arrays)
    x, y = read_medmnist_npz(path, "val")
    assert x.shape == (2, 3, 28, 28)
    np.testing.assert_array_equal(x[1, 2], arrays["val_images"][1, :, :, 2])
    np.testing.assert_array_equal(y, arrays["val_labels"][:, 0])
    grey = tmp_path / "grey.npz"
    np.savez(grey, test_images=np.zeros((2, 28, 28), np.uint8), test_labels=np.zeros((2, 1)))
    assert read_medmnist_npz(grey, "test")[0].shape == (2, 1, 28, 28)
    with pytest.raises(DataError, match="no 'train_images'"):
        read_medmnist_npz(grey, "train")
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="cut.npz"):
        read_medmnist_npz(truncated, "train")
