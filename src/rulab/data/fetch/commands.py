"""The two data commands: ``rulab data fetch NAME`` (:func:`fetch`) and ``rulab data list`` (:func:`list_data`)."""

from __future__ import annotations

import difflib
import importlib.util
import os
from typing import Any

from rulab.data.fetch.locate import candidates, ensure_files, ensure_folders, folder_dirs, folder_files, folders_present
from rulab.data.fetch.sources import SOURCES, dataset_root, get_source, import_registrations
from rulab.errors import ConfigError
from rulab.registry import DATASETS, OOD_SETS

__all__ = ["fetch", "list_data"]


def _bundled_with(name: str) -> tuple[str, str] | None:
    """``(pip distribution, import name)`` of the package a bundled OOD set ships with (``("scikit-learn", "sklearn")``)."""
    if name in OOD_SETS:
        return getattr(OOD_SETS.get(name), "bundled_with", None)
    return None


def _source_of(name: str) -> str:
    """The source whose files the dataset or OOD set ``name`` reads: its own, or the one an OOD set built from another
    dataset names in its factory's ``data_source`` attribute (``imagenet_minus`` reads ``imagenet32``)."""
    if name not in SOURCES and name in OOD_SETS:
        return str(getattr(OOD_SETS.get(name), "data_source", name))
    return name


def fetch(name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Make sure the raw data of ``name`` is present and verified, downloading it if needed (``rulab data fetch``).

    Every raw file's MD5 is checked (a full check, unlike a cached load).

    Returns:
        ``{"name", "kind": "files"|"folder"|"bundled"|"generated", "path", "origin", "files": {key: {"path",
        "origin", "md5", "verified"}}}``.

    Raises:
        ConfigError: ``name`` is neither a dataset nor an OOD set (the message lists them).
        ChecksumError, DataError, DatasetMissingError: as :func:`ensure_files` / :func:`ensure_folders`.
    """
    import_registrations()
    if _source_of(name) != name:
        return {**fetch(_source_of(name), root), "name": name}
    if name not in SOURCES:
        if name in OOD_SETS or name in DATASETS:
            pkg = _bundled_with(name)
            kind = "bundled" if pkg else "generated"
            return {
                "name": name,
                "kind": kind,
                "path": None,
                "origin": f"bundled:{pkg[0]}" if pkg else "generated",
                "files": {},
            }
        valid = sorted(set(SOURCES.list()) | set(DATASETS.list()) | set(OOD_SETS.list()))
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"there is no dataset or OOD set called '{name}'{hint}; `rulab data list` shows them: {', '.join(valid)}"
        )
    src = get_source(name)
    base = dataset_root(root)
    if src.image_folder:
        directory, origin = ensure_folders(src, base)
        return {"name": name, "kind": "folder", "path": str(directory), "origin": origin, "files": {}}
    found = ensure_files(src, None, base)
    origins = sorted({f.origin for f in found.values()})
    # where the files really are: the cache, or a system directory when the cache was not written (read-only $RULAB_DATA)
    dirs = sorted({os.path.dirname(os.path.abspath(f.path)) for f in found.values()})
    return {
        "name": name,
        "kind": "files",
        "path": os.path.commonpath(dirs) if dirs else str(base / name),
        "origin": ",".join(origins),
        "files": {
            k: {"path": str(f.path), "origin": f.origin, "md5": f.md5, "checked": f.checked, "verified": f.verified}
            for k, f in found.items()
        },
    }


def list_data(root: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """What every registered dataset and OOD set needs and whether it is here (stat only; nothing is hashed or fetched).

    Returns:
        One dict per name: ``name``, ``kind`` (``"dataset"``, ``"ood"`` or ``"dataset+ood"``), ``present``,
        ``origin`` (``"cache"``, ``"system"``, ``"bundled:<package>"``, ``"generated"``, ``"missing"``), ``path``,
        ``size_bytes`` and ``cached`` (the tensor-cache files already built).
    """
    import_registrations()
    base = dataset_root(root)
    rows = []
    for name in sorted(set(DATASETS.list()) | set(OOD_SETS.list())):
        kind = "+".join(k for k, reg in (("dataset", DATASETS), ("ood", OOD_SETS)) if name in reg)
        row: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "present": False,
            "origin": "missing",
            "path": None,
            "size_bytes": 0,
            "cached": [],
        }
        if _source_of(name) in SOURCES:
            src = SOURCES.get(_source_of(name))
            cache_dir = base / src.name
            row["cached"] = sorted(p.name for p in cache_dir.glob("*.safetensors")) if cache_dir.is_dir() else []
            if src.image_folder:
                for d in folder_dirs(src, base):
                    if d.is_dir() and folders_present(src, d):
                        files = [p for sub in (src.folders or ("",)) for p in folder_files(d, sub)]
                        row.update(present=True, origin="cache" if d == cache_dir else "system", path=str(d))
                        row["size_bytes"] = sum(p.stat().st_size for p in files)
                        break
            else:
                found = [c[0] for rf in src.files if (c := candidates(src, rf, base))]
                if found:
                    row["present"] = len(found) == len(src.files)
                    row["origin"] = ",".join(sorted({f.origin for f in found})) + (
                        "" if row["present"] else " (incomplete)"
                    )
                    row["path"] = str(found[0].path.parent)
                    row["size_bytes"] = sum(f.size for f in found)
        else:
            pkg = _bundled_with(name)
            if pkg:
                row.update(present=importlib.util.find_spec(pkg[1]) is not None, origin=f"bundled:{pkg[0]}")
            else:
                row.update(present=True, origin="generated")
        rows.append(row)
    return rows
