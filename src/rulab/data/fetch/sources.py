"""What a dataset's raw data is and where rulab looks for it: source specs, the registry of sources, data directories.

A :class:`Source` declares one dataset's raw files (:class:`RawFile`, with published MD5s), the archives that provide
them (:class:`Archive`) or its image folders; :func:`declare` registers it in :data:`SOURCES`. Files are looked for
in :func:`dataset_root` (``$RULAB_DATA``), then in :func:`system_data_dirs`; :func:`downloads_off` says whether the
chain may download (see :mod:`rulab.data.fetch` for the whole chain).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rulab.data.formats import gunzip
from rulab.registry import DATASETS, OOD_SETS, Registry

__all__ = [
    "ENV_DATA",
    "ENV_SYSTEM_DATA",
    "ENV_OFFLINE",
    "SYSTEM_DATA_DIRS",
    "SOURCES",
    "RawFile",
    "Archive",
    "Source",
    "FoundFile",
    "declare",
    "get_source",
    "import_registrations",
    "dataset_root",
    "system_data_dirs",
    "downloads_off",
]

ENV_DATA = "RULAB_DATA"
"""Environment variable naming the local data cache (default ``~/.cache/rulab``)."""
ENV_SYSTEM_DATA = "RULAB_SYSTEM_DATA"
"""Environment variable that replaces :data:`SYSTEM_DATA_DIRS` (``os.pathsep``-separated; empty = none)."""
ENV_OFFLINE = "RULAB_OFFLINE"
"""When set to a non-empty value other than ``0``, nothing is downloaded."""
SYSTEM_DATA_DIRS: tuple[str, ...] = ("/usr/share/datasets",)
"""Directories searched after the cache; each holds ``<system_subdir>/<file>`` (Debian: ``fashion-mnist/*.gz``)."""

SOURCES: Registry[Any] = Registry("data source")
"""Every downloadable dataset's :class:`Source`, by dataset name (``SOURCES.get("cifar10")``)."""


# ----------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class RawFile:
    """One raw file of a dataset.

    Attributes:
        key: the name parsers ask for (``"train-images"``).
        paths: accepted paths relative to the dataset directory; the first is where a download goes. A system
            directory is searched for their base names.
        md5: published MD5s of the file as stored (empty: no published value).
        content_md5: MD5s of the decompressed bytes, accepted for a ``.gz`` file or an already decompressed copy.
        urls: direct download URLs of ``paths[0]`` (mirrors, tried in order).
    """

    key: str
    paths: tuple[str, ...]
    md5: tuple[str, ...] = ()
    content_md5: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()

    @property
    def published(self) -> bool:
        """Whether there is a published checksum to verify against."""
        return bool(self.md5 or self.content_md5)


@dataclass(frozen=True)
class Archive:
    """An archive (``.tar.gz``, ``.tar``, ``.zip``) that provides a dataset's files or folders.

    Attributes:
        filename: its name in the dataset directory (a copy placed there by hand is used before any download).
        md5: the published MD5, or ``None`` where none is published.
        urls: download URLs, tried in order (empty: the archive must be fetched by hand).
        provides: the folders (relative to the dataset directory) it creates; empty means "everything missing".
    """

    filename: str
    md5: str | None
    urls: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """Where one dataset's raw data lives: its files (with checksums), archives, folders and fallbacks.

    Attributes:
        name: the dataset's registry name and the name of its directory under :func:`dataset_root`.
        title: a human name for messages ("Fashion-MNIST").
        files: the raw files of file-based datasets (IDX, pickles, ``.mat``, ``.npz``).
        archives: archives that provide ``files`` or ``folders`` when they are missing.
        folders: for image-folder datasets, directories (relative to the dataset directory) that must exist
            and hold files; ``image_folder=True`` with empty ``folders`` means "image files anywhere under it".
        image_folder: whether this is an image-folder dataset (no per-file checksums).
        system_subdirs: sub-directories of each system data directory that may hold the files.
        apt_package: a Debian package that installs the files (named in the missing-data message).
        manual: where to get the data by hand when it cannot be downloaded automatically.
    """

    name: str
    title: str
    files: tuple[RawFile, ...] = ()
    archives: tuple[Archive, ...] = ()
    folders: tuple[str, ...] = ()
    image_folder: bool = False
    system_subdirs: tuple[str, ...] = ()
    apt_package: str | None = None
    manual: str = ""

    def file(self, key: str) -> RawFile:
        """The :class:`RawFile` called ``key``."""
        for rf in self.files:
            if rf.key == key:
                return rf
        raise KeyError(f"source '{self.name}' has no file '{key}'; files: {', '.join(f.key for f in self.files)}")


def get_source(source: Source | str) -> Source:
    """``source`` itself, or the registered :class:`Source` of that name (importing the dataset modules if needed)."""
    if isinstance(source, Source):
        return source
    if source not in SOURCES:
        import_registrations()
    return SOURCES.get(source)


def declare(source: Source) -> Source:
    """Register ``source`` in :data:`SOURCES` under its name and return it."""
    SOURCES.register(source.name)(source)
    return source


@dataclass(frozen=True)
class FoundFile:
    """A raw file found by the source chain.

    Attributes:
        key: the :class:`RawFile` key.
        path: where it is.
        origin: ``"cache"``, ``"system"`` or ``"download"``.
        size: bytes on disk.
        mtime_ns: modification time (ns), part of the cache key.
        md5: once verified, the MD5 that matched the published value ("" before): of the file as stored, or of
            its decompressed bytes when ``checked == "decompressed"``.
        verified: whether the MD5 matched a published value (``False`` where none is published).
        checked: what was hashed: ``"file"``, ``"decompressed"`` or ``"unpublished"`` (no value to compare with).
        content: the decompressed bytes when verification had to decompress (saves a second pass).
    """

    key: str
    path: Path
    origin: str
    size: int
    mtime_ns: int
    md5: str = ""
    verified: bool = False
    checked: str = ""
    content: bytes | None = field(default=None, repr=False, compare=False)

    def stamp(self) -> list[Any]:
        """``[path, size, mtime_ns]``: what the tensor cache compares to decide whether the file changed."""
        return [str(self.path), self.size, self.mtime_ns]

    def data(self) -> bytes:
        """The file's payload: its bytes, gunzipped when it is a gzip file."""
        if self.content is not None:
            return self.content
        raw = self.path.read_bytes()
        return gunzip(raw, self.path) if raw[:2] == b"\x1f\x8b" else raw


def dataset_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The local data cache: ``root`` if given, else ``$RULAB_DATA``, else ``~/.cache/rulab``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_DATA)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rulab"


def system_data_dirs() -> list[Path]:
    """The system data directories searched after the cache (``$RULAB_SYSTEM_DATA`` or :data:`SYSTEM_DATA_DIRS`)."""
    env = os.environ.get(ENV_SYSTEM_DATA)
    dirs = env.split(os.pathsep) if env is not None else list(SYSTEM_DATA_DIRS)
    return [Path(d).expanduser() for d in dirs if d]


def downloads_off() -> bool:
    """Whether downloads are off: ``$RULAB_OFFLINE`` is set to a non-empty value other than ``0``."""
    return os.environ.get(ENV_OFFLINE, "") not in ("", "0")


def import_registrations() -> None:
    """Import the modules that register datasets, OOD sets and sources (the data registries' builtin modules)."""
    DATASETS.list()
    OOD_SETS.list()
