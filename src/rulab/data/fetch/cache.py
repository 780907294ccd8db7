"""The tensor cache: a parsed split stored as safetensors with the stamp of the raw files it came from (the
"Tensor cache" part of :mod:`rulab.data.fetch`).
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from rulab.data.fetch.locate import ensure_files, ensure_folders, folder_stamp, locate_files, stat_file
from rulab.data.fetch.sources import FoundFile, Source, dataset_root, get_source
from rulab.errors import DatasetMissingError, RulabError, RulabWarning
from rulab.io import atomic_path

__all__ = ["CACHE_FORMAT", "Prepared", "load_prepared", "load_prepared_folder"]

CACHE_FORMAT = "rulab-tensors-1"


class Prepared(NamedTuple):
    """A parsed split: images ``uint8 [N, C, H, W]``, labels ``int64 [N]`` and metadata (``classes``, ``source``, ``files``)."""

    x: torch.Tensor
    y: torch.Tensor
    meta: dict[str, Any]


# ----------------------------------------------------------------------------------------------- tensor cache
def _crc(t: torch.Tensor) -> str:
    return f"{zlib.crc32(t.contiguous().numpy().reshape(-1).view('uint8')):08x}"


def _read_cache(path: Path, params: str, stamp: str | None) -> Prepared | None:
    """Load a cached split if it exists, was built with ``params`` and (unless ``stamp`` is None) from ``stamp``."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            md = fh.metadata() or {}
            if md.get("format") != CACHE_FORMAT or md.get("params") != params:
                return None
            if stamp is not None and md.get("stamp") != stamp:
                return None
            x, y = fh.get_tensor("x"), fh.get_tensor("y")
        if _crc(x) != md.get("crc_x") or _crc(y) != md.get("crc_y"):
            raise ValueError("CRC mismatch")
        return Prepared(x, y, json.loads(md["meta"]))
    except Exception as err:  # safetensors raises its own error types for a truncated or garbled file
        warnings.warn(
            f"the cached tensors {path} are corrupt ({type(err).__name__}: {err}); rebuilding them from the source",
            RulabWarning,
            stacklevel=3,
        )
        return None


def _write_cache(path: Path, prep: Prepared, params: str, stamp: str) -> None:
    from safetensors.torch import save_file

    x, y = prep.x.contiguous(), prep.y.contiguous()
    md = {
        "format": CACHE_FORMAT,
        "params": params,
        "stamp": stamp,
        "crc_x": _crc(x),
        "crc_y": _crc(y),
        "meta": json.dumps(prep.meta, default=str),
    }
    try:
        with atomic_path(path) as tmp:
            save_file({"x": x, "y": y}, str(tmp), metadata=md)
    except (RulabError, OSError) as err:
        warnings.warn(
            f"could not cache the parsed data at {path} ({err}); it will be parsed again next time",
            RulabWarning,
            stacklevel=3,
        )


def _source_label(source: Source, files: Iterable[FoundFile]) -> str:
    files = list(files)
    if files and all(f.origin == "system" for f in files) and source.apt_package:
        return f"debian:{source.apt_package}"
    dirs = sorted({str(f.path.parent) for f in files})
    return "; ".join(dirs)


def load_prepared(
    name: str,
    key: str,
    keys: Sequence[str],
    parse: Callable[[dict[str, FoundFile]], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    root: str | os.PathLike[str] | None = None,
    params: dict[str, Any] | None = None,
) -> Prepared:
    """Load a parsed split from the tensor cache, or build it from verified raw files and cache it.

    Args:
        name: the dataset (its :class:`Source` in :data:`SOURCES`).
        key: the cache file's name (``"train"`` → ``<root>/<name>/train.safetensors``).
        keys: the raw files the split is parsed from.
        parse: ``{key: FoundFile} -> (x uint8 [N, C, H, W], y int64 [N], meta)``; runs only on a cache miss.
        root: the data cache (default :func:`dataset_root`).
        params: anything else that shapes the result (part of the cache key).

    Returns:
        :class:`Prepared` with ``meta["source"]`` (where the raw files came from) and ``meta["files"]``
        (path, origin and MD5 of each raw file).
    """
    src = get_source(name)
    base = dataset_root(root)
    cache = base / name / f"{key}.safetensors"
    params_json = json.dumps({"key": key, "keys": list(keys), **(params or {})}, sort_keys=True, default=str)
    located = locate_files(src, keys, base)
    if located is not None:
        stamp = json.dumps({k: f.stamp() for k, f in located.items()}, sort_keys=True)
        hit = _read_cache(cache, params_json, stamp)
        if hit is not None:
            return hit
    elif cache.is_file():
        # the raw files are gone, but the cache was built from verified copies of them
        hit = _read_cache(cache, params_json, None)
        if hit is not None:
            hit.meta["note"] = "raw files no longer present; loaded from the tensor cache"
            return hit
    found = ensure_files(src, keys, base)
    x, y, meta = parse(found)
    meta = {
        "source": _source_label(src, found.values()),
        "files": {
            k: {"path": str(f.path), "origin": f.origin, "md5": f.md5, "checked": f.checked, "verified": f.verified}
            for k, f in found.items()
        },
        **meta,
    }
    prep = Prepared(x.contiguous(), y.to(torch.int64).contiguous(), meta)
    # stamp of the files as verified (a download or extraction may have created them after _locate)
    restat = {k: stat_file(k, f.path, f.origin) for k, f in found.items()}
    _write_cache(cache, prep, params_json, json.dumps({k: f.stamp() for k, f in restat.items()}, sort_keys=True))
    return prep


def load_prepared_folder(
    name: str,
    key: str,
    parse: Callable[[Path], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]],
    root: str | os.PathLike[str] | None = None,
    params: dict[str, Any] | None = None,
) -> Prepared:
    """Like :func:`load_prepared` for an image-folder dataset; ``parse(directory)`` decodes the images.

    The cache key is the folder listing (number of files, total bytes, newest mtime) plus ``params``. When the
    folder is gone but a cache built with the same ``params`` exists, the cache is used.
    """
    src = get_source(name)
    base = dataset_root(root)
    cache = base / name / f"{key}.safetensors"
    params_json = json.dumps({"key": key, **(params or {})}, sort_keys=True, default=str)
    try:
        directory, origin = ensure_folders(src, base)
    except DatasetMissingError:
        # the images are gone, but the cache was built from them
        hit = _read_cache(cache, params_json, None)
        if hit is None:
            raise
        hit.meta["note"] = "image folder no longer present; loaded from the tensor cache"
        return hit
    stamp = json.dumps({"dir": str(directory), **folder_stamp(directory, src)}, sort_keys=True)
    hit = _read_cache(cache, params_json, stamp)
    if hit is not None:
        return hit
    x, y, meta = parse(directory)
    meta = {"source": str(directory), "origin": origin, **meta}
    prep = Prepared(x.contiguous(), y.to(torch.int64).contiguous(), meta)
    _write_cache(cache, prep, params_json, stamp)
    return prep
