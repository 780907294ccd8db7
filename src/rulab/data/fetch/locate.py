"""The source chain: find each raw file (or image folder) of a dataset in the cache, the system directories, an
archive or a download, and verify it (the "Source chain" part of :mod:`rulab.data.fetch`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from rulab.data.fetch.download import extract_archive, try_download, verify_archive, verify_file
from rulab.data.fetch.sources import (
    ENV_OFFLINE,
    Archive,
    FoundFile,
    RawFile,
    Source,
    dataset_root,
    downloads_off,
    get_source,
    system_data_dirs,
)
from rulab.errors import DataError, DatasetMissingError, RulabWarning

__all__ = [
    "candidates",
    "locate_files",
    "stat_file",
    "ensure_files",
    "folder_files",
    "folder_dirs",
    "folders_present",
    "ensure_folders",
    "folder_stamp",
]


# ----------------------------------------------------------------------------------------------- file chain
def candidates(source: Source, rf: RawFile, root: Path) -> list[FoundFile]:
    """Existing copies of ``rf`` in chain order (cache first, then system directories); stat only, no hashing."""
    out: list[FoundFile] = []
    places: list[tuple[Path, str]] = [(root / source.name / p, "cache") for p in rf.paths]
    for sysdir in system_data_dirs():
        for sub in source.system_subdirs:
            for p in rf.paths:
                places += [(sysdir / sub / q, "system") for q in dict.fromkeys((p, Path(p).name))]
    for path, origin in places:
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            out.append(FoundFile(rf.key, path, origin, st.st_size, st.st_mtime_ns))
    return out


def locate_files(source: Source, keys: Sequence[str], root: Path) -> dict[str, FoundFile] | None:
    """The first copy of every key (stat only), or ``None`` if any key has no copy."""
    found = {}
    for key in keys:
        c = candidates(source, source.file(key), root)
        if not c:
            return None
        found[key] = c[0]
    return found


def _first_valid(source: Source, rf: RawFile, root: Path, errors: list[DataError]) -> FoundFile | None:
    for cand in candidates(source, rf, root):
        try:
            return verify_file(source, rf, cand)
        except DataError as err:
            errors.append(err)
    return None


def _looked_in(source: Source, root: Path) -> str:
    places = [str(root / source.name)]
    places += [str(d / sub) for d in system_data_dirs() for sub in source.system_subdirs]
    return ", ".join(places)


def _missing(source: Source, root: Path, failures: list[str], what: str) -> DatasetMissingError:
    where = root / source.name
    if downloads_off():
        tried = f"downloads are off ({ENV_OFFLINE} is set)"
    elif failures:
        tried = failures[0] + (f" (and {len(failures) - 1} more download attempts failed)" if len(failures) > 1 else "")
    else:
        tried = "it cannot be downloaded automatically"
    todo = []
    if source.apt_package:
        todo.append(f"install it with `sudo apt-get install {source.apt_package}`")
    urls = [u for a in source.archives for u in a.urls] + [u for rf in source.files for u in rf.urls]
    if urls:
        more = ", …" if len(urls) > 1 else ""
        todo.append(f"run `rulab data fetch {source.name}` on a machine with internet (it downloads {urls[0]}{more})")
    if source.manual:
        todo.append(f"download it from {source.manual}")
    todo.append(f"copy {what} to {where}/")
    return DatasetMissingError(
        f"{source.title} ('{source.name}') is not available: it is not in {_looked_in(source, root)}, and {tried}; "
        f"to fix it, {', or '.join(todo)}"
    )


def ensure_files(
    source: Source | str,
    keys: Sequence[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    download_ok: bool = True,
) -> dict[str, FoundFile]:
    """Find and verify raw files through the chain, extracting or downloading what is missing.

    Order per file: the cache directory, the system directories, an archive already in the cache directory,
    a direct download of the file, a download of an archive that holds it.

    Args:
        source: a :class:`Source` or its name in :data:`SOURCES`.
        keys: which files (default: all of the source's files).
        root: the data cache (default :func:`dataset_root`).
        download_ok: allow downloads (they are also off when ``$RULAB_OFFLINE`` is set).

    Returns:
        ``{key: FoundFile}`` with verified MD5s.

    Raises:
        ChecksumError: a copy exists (or was downloaded) but is corrupt, and no source had a good one.
        DatasetMissingError: no source had the files; the message says what was tried and what to do.
    """
    src = get_source(source)
    base = dataset_root(root)
    target = base / src.name
    keys = list(keys) if keys is not None else [rf.key for rf in src.files]
    errors: list[DataError] = []
    failures: list[str] = []
    found: dict[str, FoundFile] = {}

    def settle(origin: str | None = None) -> list[str]:
        for key in keys:
            if key not in found:
                got = _first_valid(src, src.file(key), base, errors)
                if got is not None:
                    found[key] = got if origin is None else replace(got, origin=origin)
        return [k for k in keys if k not in found]

    missing = settle()
    if missing:  # an archive placed in the dataset directory by hand, or left by an earlier download
        for arc in src.archives:
            path = target / arc.filename
            if path.is_file():
                try:
                    verify_archive(src, arc, path)
                    extract_archive(path, target)
                except DataError as err:
                    errors.append(err)
        missing = settle()
    if missing and download_ok and not downloads_off():
        for key in missing:
            rf = src.file(key)
            if rf.urls and try_download(
                rf.urls, target / rf.paths[0], lambda p, rf=rf: _check_download(src, rf, p), failures, errors
            ):
                found[key] = verify_file(src, rf, stat_file(key, target / rf.paths[0], "download"))
        missing = [k for k in keys if k not in found]
        for arc in src.archives:
            if missing and arc.urls:
                path = target / arc.filename
                if try_download(arc.urls, path, lambda p, arc=arc: verify_archive(src, arc, p), failures, errors):
                    extract_archive(path, target)
                    missing = settle(origin="download")
    if missing:
        if errors:
            raise errors[0]
        paths = [src.file(k).paths[0] for k in missing]
        names = ", ".join(paths) if len(paths) <= 4 else f"the {len(paths)} files {paths[0]} … {paths[-1]}"
        arcs = " or ".join(a.filename for a in src.archives)
        raise _missing(src, base, failures, names + (f" (or {arcs})" if arcs else ""))
    for err in errors:
        warnings.warn(f"{err} (a good copy from another source was used instead)", RulabWarning, stacklevel=2)
    return found


def stat_file(key: str, path: Path, origin: str) -> FoundFile:
    """An unverified :class:`FoundFile` for ``path`` (size and mtime from one ``stat``)."""
    st = path.stat()
    return FoundFile(key, path, origin, st.st_size, st.st_mtime_ns)


def _check_download(source: Source, rf: RawFile, tmp: Path) -> None:
    verify_file(source, rf, stat_file(rf.key, tmp, "download"))


# ----------------------------------------------------------------------------------------------- folder chain
_SKIP_SUFFIXES = (".safetensors", ".tmp", ".tar", ".tgz", ".gz", ".zip", ".part")


def folder_files(base: Path, sub: str) -> Iterable[Path]:
    """The image files under ``base/sub`` in sorted order (hidden files, archives and caches skipped)."""
    top = base / sub if sub else base
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and not f.endswith(_SKIP_SUFFIXES):
                yield Path(dirpath) / f


def folder_dirs(source: Source, root: Path) -> list[Path]:
    """Candidate directories holding the folders: the cache directory, then system directories."""
    dirs = [root / source.name]
    dirs += [d / sub for d in system_data_dirs() for sub in source.system_subdirs]
    return dirs


def folders_present(source: Source, base: Path) -> bool:
    """Whether ``base`` holds the source's folders, each with at least one file."""
    if source.folders:
        return all((base / f).is_dir() and next(iter(folder_files(base, f)), None) is not None for f in source.folders)
    return next(iter(folder_files(base, "")), None) is not None


def ensure_folders(
    source: Source | str, root: str | os.PathLike[str] | None = None, download_ok: bool = True
) -> tuple[Path, str]:
    """Make sure an image-folder dataset is on disk; return ``(directory, origin)``.

    The chain is: the folder(s) already in the cache directory or a system directory; an archive in the cache
    directory (checked, then extracted); a download of the archive(s) (checked, then extracted).

    Raises:
        ChecksumError: an archive exists but is corrupt.
        DatasetMissingError: the folder is absent and no archive could be had; the message names where to get it.
    """
    src = get_source(source)
    base = dataset_root(root)
    for d in folder_dirs(src, base):
        if d.is_dir() and folders_present(src, d):
            return d, "cache" if d == base / src.name else "system"
    target = base / src.name
    errors: list[DataError] = []
    failures: list[str] = []

    def wanted(arc: Archive) -> bool:
        return not arc.provides or not all((target / f).is_dir() for f in arc.provides)

    for arc in src.archives:
        path = target / arc.filename
        if path.is_file() and wanted(arc):
            try:
                verify_archive(src, arc, path)
                extract_archive(path, target)
            except DataError as err:
                errors.append(err)
    if folders_present(src, target):
        return target, "cache"
    if download_ok and not downloads_off():
        for arc in src.archives:
            if arc.urls and wanted(arc):
                path = target / arc.filename
                if try_download(arc.urls, path, lambda p, arc=arc: verify_archive(src, arc, p), failures, errors):
                    extract_archive(path, target)
        if folders_present(src, target):
            return target, "download"
    if errors:
        raise errors[0]
    what = " and ".join(a.filename for a in src.archives) or "the images"
    if src.archives:
        what += " (or the extracted folder" + ("s " + ", ".join(src.folders) if src.folders else "") + ")"
    raise _missing(src, base, failures, what)


def folder_stamp(directory: Path, source: Source) -> dict[str, list[int]]:
    """``{folder: [n_files, total_bytes, newest_mtime_ns]}``: changes when a file is added, removed or rewritten."""
    stamp = {}
    for sub in source.folders or ("",):
        n = total = newest = 0
        for p in folder_files(directory, sub):
            st = p.stat()
            n, total, newest = n + 1, total + st.st_size, max(newest, st.st_mtime_ns)
        stamp[sub or "."] = [n, total, newest]
    return stamp
