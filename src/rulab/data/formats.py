"""Parsers for the raw file formats the ID datasets are published in.

Every parser takes the bytes (or path) of one file, checks its structure and returns NumPy arrays:
images ``uint8 [N, C, H, W]`` (pixel values 0..255) and labels ``int64 [N]``. A malformed file raises
:class:`rulab.errors.DataError` naming the file and what to do; nothing here looks at checksums (that is
:mod:`rulab.data.fetch`).

Formats:
    * IDX (MNIST, Fashion-MNIST), optionally gzip-compressed: :func:`read_idx`, :func:`gunzip`.
    * CIFAR-10/100 "python version" batches (pickled dicts): :func:`read_cifar_batch`, :func:`read_cifar_meta`.
    * SVHN cropped digits ``*_32x32.mat`` (MATLAB v5): :func:`read_svhn_mat`.
    * Downsampled ImageNet (Chrabaszcz et al. 2017) 32×32 and 64×64 pickled batches or their ``.npz`` variant:
      :func:`read_imagenet32_batch` with ``side=32`` or ``64`` (labels are 1-indexed in the files; W1's
      ``imagenet_downsampled.py`` subtracts 1), and the devkit's class list :func:`read_map_clsloc`.
    * MedMNIST ``.npz`` (pathMNIST, W2): :func:`read_medmnist_npz`.

Pickles are never unpickled with the plain :mod:`pickle` loader: :func:`safe_unpickle` only lets through
builtin containers and NumPy arrays, so a tampered file cannot run code (convention 11 in docs/conventions.md).
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
import zlib
from typing import Any

import numpy as np

from rulab.errors import DataError

__all__ = [
    "gunzip",
    "read_idx",
    "read_idx_images",
    "safe_unpickle",
    "read_cifar_batch",
    "read_cifar_meta",
    "read_svhn_mat",
    "read_imagenet32_batch",
    "read_medmnist_npz",
    "read_map_clsloc",
]

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_REDOWNLOAD = "delete it and fetch it again with `rulab data fetch`"


def _name(path: str | os.PathLike[str] | None) -> str:
    return str(path) if path is not None else "<bytes>"


def gunzip(data: bytes, path: str | os.PathLike[str] | None = None, todo: str = _REDOWNLOAD) -> bytes:
    """Decompress gzip ``data`` (all members), raising :class:`DataError` for a truncated or corrupt stream.

    Args:
        data: the bytes of a ``.gz`` file.
        path: the file name, used in error messages.
        todo: what the error message tells the user to do (the source chain names the dataset's fetch command).

    Returns:
        The decompressed bytes.
    """
    out: list[bytes] = []
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            out.append(d.decompress(rest))
            out.append(d.flush())
            if not d.eof:
                raise DataError(f"{_name(path)} is a truncated gzip file; {todo}")
            rest = d.unused_data.lstrip(b"\0")
    except zlib.error as err:
        raise DataError(f"{_name(path)} is not a valid gzip file ({err}); {todo}") from None
    return b"".join(out)


def read_idx(data: bytes, path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Parse an IDX file (the MNIST format: 2 zero bytes, a type code, a rank, big-endian int32 dims, data).

    Args:
        data: the file's bytes, already decompressed (see :func:`gunzip`).
        path: the file name, used in error messages.

    Returns:
        An array of the stored type and shape, e.g. ``uint8 [N, 28, 28]`` for images or ``uint8 [N]`` for labels.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(
            f"{_name(path)} is not an IDX file (bad magic number {data[:4].hex() or 'empty'}); {_REDOWNLOAD}"
        )
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{_name(path)} is a truncated IDX file (header cut short); {_REDOWNLOAD}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "too long"
        raise DataError(
            f"{_name(path)} is {what}: an IDX file of shape {dims} needs {expected:,} bytes but has {len(data):,}; {_REDOWNLOAD}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr


def read_idx_images(images: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """An IDX image file and its label file, checked to belong together (MNIST, Fashion-MNIST, EMNIST).

    Args:
        images, labels: found files (:class:`rulab.data.fetch.FoundFile`: ``.data()`` gives the decompressed bytes,
            ``.path`` names them in errors).

    Returns:
        ``(uint8 [N, H, W] images, [N] labels)`` as stored.
    """
    x, y = read_idx(images.data(), images.path), read_idx(labels.data(), labels.path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(
            f"{images.path} holds {x.dtype} data of shape {x.shape}, not uint8 images [N, H, W]; is it the right file?"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"{labels.path} has {y.shape} labels for {len(x)} images in {images.path}; delete both and fetch them again"
        )
    return x, y


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a class outside the allow-list."""


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds NumPy arrays and builtin containers (no code execution)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise _Refused(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def safe_unpickle(data: bytes, path: str | os.PathLike[str] | None = None) -> Any:
    """Unpickle ``data`` allowing only NumPy arrays, numbers, strings, bytes, lists, tuples and dicts.

    Python-2 pickles (CIFAR, downsampled ImageNet) are read with ``encoding="bytes"``, so their dict keys are
    ``bytes`` (``b"data"``); Python-3 pickles keep ``str`` keys. Callers accept both.
    """
    try:
        return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as err:
        raise DataError(f"{_name(path)} is not a plain data pickle ({err}); {_REDOWNLOAD}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise DataError(
            f"{_name(path)} is a truncated or corrupt pickle ({type(err).__name__}: {err}); {_REDOWNLOAD}"
        ) from None


def _get(d: Any, key: str, path: str | os.PathLike[str] | None) -> Any:
    if not isinstance(d, dict):
        raise DataError(f"{_name(path)} does not hold a dict as the format requires; {_REDOWNLOAD}")
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise DataError(
        f"{_name(path)} has no '{key}' entry (found {sorted(map(str, d))}); is it the right file? {_REDOWNLOAD}"
    )


def _has(d: Any, key: str) -> bool:
    return isinstance(d, dict) and (key in d or key.encode() in d)


def _rows_to_images(data: Any, side: int, path: str | os.PathLike[str] | None) -> np.ndarray:
    """``[N, 3*side*side]`` rows stored channel-planar (R plane, G plane, B plane) → ``uint8 [N, 3, side, side]``."""
    arr = np.asarray(data)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != 3 * side * side:
        raise DataError(
            f"{_name(path)} holds images of dtype {arr.dtype} and shape {arr.shape}, expected uint8 [N, {3 * side * side}]; {_REDOWNLOAD}"
        )
    return arr.reshape(-1, 3, side, side)


def _labels(values: Any, n: int, path: str | os.PathLike[str] | None) -> np.ndarray:
    y = np.asarray(values).reshape(-1).astype(np.int64)
    if len(y) != n:
        raise DataError(f"{_name(path)} has {n} images but {len(y)} labels; {_REDOWNLOAD}")
    return y


def read_cifar_batch(data: bytes, path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Parse one CIFAR "python version" batch (``data_batch_1``, ``test_batch``, CIFAR-100 ``train``/``test``).

    The pickle holds ``b"data"``: ``uint8 [N, 3072]`` (1024 red, 1024 green, 1024 blue values, row-major) and
    ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).

    Returns:
        ``(x, y)``: images ``uint8 [N, 3, 32, 32]`` and labels ``int64 [N]``.
    """
    d = safe_unpickle(data, path)
    x = _rows_to_images(_get(d, "data", path), 32, path)
    key = "fine_labels" if _has(d, "fine_labels") else "labels"
    return x, _labels(_get(d, key, path), len(x), path)


def read_cifar_meta(data: bytes, key: str, path: str | os.PathLike[str] | None = None) -> list[str]:
    """Class names from a CIFAR meta pickle (``batches.meta`` with ``label_names``, ``meta`` with ``fine_label_names``)."""
    names = _get(safe_unpickle(data, path), key, path)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_svhn_mat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Parse an SVHN cropped-digits file (``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``).

    The file holds ``X``: ``uint8 [32, 32, 3, N]`` and ``y``: ``[N, 1]`` with digit 0 stored as label 10; the label
    is mapped 10 → 0 (as torchvision and W1's SVHN loader do).

    Returns:
        ``(x, y)``: images ``uint8 [N, 3, 32, 32]`` and labels ``int64 [N]`` in 0..9.
    """
    try:
        import scipy.io
    except ImportError:
        from rulab.errors import RulabError

        raise RulabError("reading SVHN needs scipy; install it with: pip install 'rulab[datasets]'") from None
    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except (ValueError, OSError, TypeError, NotImplementedError, IndexError, KeyError, EOFError) as err:
        raise DataError(f"{path} is not a readable SVHN .mat file ({err}); {_REDOWNLOAD}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} has no 'X'/'y' arrays, so it is not an SVHN file; {_REDOWNLOAD}")
    X = mat["X"]
    if X.ndim != 4 or X.shape[2] != 3 or X.dtype != np.uint8:
        raise DataError(
            f"{path} holds X of dtype {X.dtype} and shape {X.shape}, expected uint8 [32, 32, 3, N]; {_REDOWNLOAD}"
        )
    x = np.ascontiguousarray(X.transpose(3, 2, 0, 1))
    y = _labels(mat["y"], len(x), path)
    y[y == 10] = 0
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path} has labels outside 1..10; {_REDOWNLOAD}")
    return x, y


def read_imagenet32_batch(
    data: bytes, path: str | os.PathLike[str] | None = None, side: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Parse one downsampled-ImageNet batch (``train_data_batch_1`` … ``train_data_batch_10``, ``val_data``) of the
    32×32 (``side=32``) or 64×64 (``side=64``, ``Imagenet64_train_part1/2`` and ``Imagenet64_val``) release.

    Accepts the pickled-dict release and the ``.npz`` release; both hold ``data``: ``uint8 [N, 3*side*side]``
    (channel-planar like CIFAR) and ``labels`` numbered 1..1000 (the training batches also hold ``mean``, unused). Labels are shifted to 0..999
    (as W1's ``downsampled_train/imagenet_downsampled.py`` does).

    Returns:
        ``(x, y)``: images ``uint8 [N, 3, side, side]`` and labels ``int64 [N]`` in 0..999.
    """
    if data[:2] == b"PK":
        d = _read_npz(data, path)
    else:
        d = safe_unpickle(data, path)
    x = _rows_to_images(_get(d, "data", path), side, path)
    y = _labels(_get(d, "labels", path), len(x), path)
    if y.size and y.min() < 1:
        raise DataError(
            f"{_name(path)} has a label {int(y.min())} but downsampled-ImageNet labels start at 1; {_REDOWNLOAD}"
        )
    return x, y - 1


def read_map_clsloc(data: bytes | str, path: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Parse the ILSVRC devkit's ``map_clsloc.txt`` (``n02119789 1 kit_fox`` per line), which numbers the classes of
    downsampled ImageNet (Chrabaszcz et al. 2017): WordNet id → label 1..1000.

    Returns:
        ``{wnid: label}`` with the 1-based labels of the file (the datasets subtract 1).

    Raises:
        DataError: a line is not ``<wnid> <id> <name>``, or the file does not map 1,000 WordNet ids to ids 1..1000.
    """
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    ids: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[1].isdigit() or not parts[0].startswith("n"):
            raise DataError(
                f"{_name(path)} line {n} is not '<wnid> <id> <name>' ('{line[:60]}'); use the devkit's map_clsloc.txt"
            )
        ids[parts[0]] = int(parts[1])
    if len(ids) != 1000 or sorted(ids.values()) != list(range(1, 1001)):
        raise DataError(
            f"{_name(path)} lists {len(ids)} classes; it must map the 1,000 ILSVRC-2012 WordNet IDs to ids 1..1000"
        )
    return ids


def _read_npz(data: bytes | str | os.PathLike[str], path: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    try:
        with (
            io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb") as fh,
            np.load(fh, allow_pickle=False) as z,
        ):
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{_name(path)} is not a readable .npz file ({err}); {_REDOWNLOAD}") from None


def read_medmnist_npz(path: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one split of a MedMNIST ``.npz`` (``{split}_images``, ``{split}_labels``; the arrays W2's ``dataset.py`` loads).

    Args:
        path: the ``.npz`` file (e.g. ``pathmnist.npz``).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``(x, y)``: images ``uint8 [N, C, H, W]`` (``[N, H, W, C]`` or ``[N, H, W]`` in the file) and labels ``int64 [N]``.
    """
    d = _read_npz(path, path)
    ik, lk = f"{split}_images", f"{split}_labels"
    if ik not in d or lk not in d:
        raise DataError(
            f"{path} has no '{ik}'/'{lk}' arrays (found {sorted(d)}), so it is not a MedMNIST file; {_REDOWNLOAD}"
        )
    imgs = d[ik]
    if imgs.dtype != np.uint8 or imgs.ndim not in (3, 4):
        raise DataError(
            f"{path} holds {ik} of dtype {imgs.dtype} and shape {imgs.shape}, expected uint8 [N, H, W(, C)]; {_REDOWNLOAD}"
        )
    x = imgs[:, None] if imgs.ndim == 3 else imgs.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x)
    return x, _labels(d[lk], len(x), path)
