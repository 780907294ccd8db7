"""The cache of shifted test sets (:class:`ShiftCache`): each ``(test images, corruption, level, seed, chunk)``
cell is corrupted once, kept as uint8 in memory and/or on disk, and shared by every checkpoint a study evaluates.

Only valid for quantized evaluation (:func:`rulab.eval.shift.evaluate_shift` with ``quantize=True``, the default),
where a cached uint8 set gives exactly the images the uncached path would feed the model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from rulab.data.corruptions import corrupt_dataset, level_label
from rulab.data.tensors import TensorDataset

__all__ = ["CHUNK", "ShiftCache"]

CHUNK = 1000
"""Default images per corruption call: :func:`~rulab.data.corruptions.corrupt_dataset`'s default batch size."""


def _fingerprint(x: torch.Tensor) -> str:
    """blake2b of the image bytes and shape (16 hex digits): the cache key of a test set."""
    h = hashlib.blake2b(digest_size=8)
    h.update(repr(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ShiftCache:
    """Shifted uint8 test sets, kept in memory and/or on disk, keyed by (test images, corruption, level, seed, chunk).

    A shifted test set depends only on the test images, the cell and the seed, never on the model, so a study that
    evaluates many checkpoints builds each one once. The key uses a hash of the test images (not only the
    dataset's name), so a different subset or split never reads a stale entry. Disk entries are safetensors files
    ``<cache_dir>/<dataset>-<hash>/<corruption>_<level>_seed<seed>_chunk<chunk>_v<rulab version>.safetensors``
    written atomically; an unreadable file is rebuilt and overwritten.

    Memory: one entry is the size of the test set (7.8 MB for the Fashion-MNIST test set; 30.7 MB for a 32×32
    colour one), so the 38-cell ``fmnist-default`` suite holds about 300 MB with ``memory=True``.

    Args:
        cache_dir: directory of the disk cache (None: no disk cache).
        memory: also keep every entry in memory for the lifetime of this object.

    Example:
        >>> cache = ShiftCache("runs/.shift-cache")
        >>> for model in models:
        ...     table = evaluate_shift(model, test, "fmnist-default", seed=0, cache=cache)
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, memory: bool = True) -> None:
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.memory = bool(memory)
        self._mem: dict[tuple[Any, ...], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def fingerprint(test: TensorDataset) -> str:
        """Hash of the test images and their shape (16 hex digits; ~20 ms for the Fashion-MNIST test set)."""
        return _fingerprint(test.x)

    def _path(self, test: TensorDataset, fp: str, corruption: str, level: float, seed: int, chunk: int) -> Path:
        from rulab import __version__

        assert self.cache_dir is not None
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in (test.name or "test"))
        return (
            self.cache_dir
            / f"{name}-{fp}"
            / f"{corruption}_{level_label(level)}_seed{int(seed)}_chunk{chunk}_v{__version__}.safetensors"
        )

    def get(
        self,
        test: TensorDataset,
        corruption: str,
        level: float,
        seed: int,
        chunk: int = CHUNK,
        fingerprint: str | None = None,
    ) -> TensorDataset:
        """The shifted copy of ``test`` (``corrupt_dataset(test, corruption, level, seed, chunk)``), cached.

        Args:
            fingerprint: :meth:`fingerprint` of ``test`` if already computed (it is recomputed otherwise, so images
                changed in place are never served from a stale entry).

        Returns:
            A :class:`TensorDataset` with ``uint8 [N, C, H, W]`` images on the CPU (labels and metadata as
            :func:`~rulab.data.corruptions.corrupt_dataset` sets them).
        """
        fp = self.fingerprint(test) if fingerprint is None else fingerprint
        key = (fp, corruption, level_label(level), int(seed), int(chunk))
        meta = dict(test.meta, shift=corruption, level=level, shift_seed=int(seed), shift_batch_size=int(chunk))
        x = self._mem.get(key)
        if x is None and self.cache_dir is not None:
            x = self._read(self._path(test, fp, corruption, level, seed, chunk), tuple(test.x.shape))
        if x is None:
            self.misses += 1
            x = corrupt_dataset(test, corruption, level, seed, batch_size=chunk).x.cpu()
            if self.cache_dir is not None:
                self._write(self._path(test, fp, corruption, level, seed, chunk), x)
        else:
            self.hits += 1
        if self.memory:
            self._mem[key] = x
        return TensorDataset(x, test.y.clone(), list(test.classes), test.name, test.source, meta)

    @staticmethod
    def _read(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            from safetensors.torch import load_file

            x = load_file(str(path))["x"]
        except Exception:  # a truncated or foreign file: rebuild it
            return None
        return x if x.dtype == torch.uint8 and tuple(x.shape) == shape else None

    @staticmethod
    def _write(path: Path, x: torch.Tensor) -> None:
        from safetensors.torch import save_file

        from rulab.io import atomic_path, ensure_writable_dir

        ensure_writable_dir(path.parent)
        with atomic_path(path) as tmp:
            save_file({"x": x.contiguous()}, str(tmp))

    def __len__(self) -> int:
        return len(self._mem)
