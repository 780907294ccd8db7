"""Where the data comes from: the source chain, MD5 checks, safe downloads and extraction, and the tensor cache.

Source chain (docs/guide/data.md). Each raw file of a dataset is looked for, in this order, in
    1. the local cache ``$RULAB_DATA/<name>/`` (default ``~/.cache/rulab/<name>/``, see :func:`dataset_root`);
    2. system directories, :data:`SYSTEM_DATA_DIRS` (``$RULAB_SYSTEM_DATA``, a ``os.pathsep``-separated list,
       overrides it): Debian's ``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist/*.gz``;
    3. a download from the published URL (``urllib`` with a timeout) into the cache. Nothing is downloaded when
       ``$RULAB_OFFLINE`` is set; without internet the download fails and the chain ends in a
       :class:`~rulab.errors.DatasetMissingError` that says which sources were tried and what to do.

Checksums (docs/guide/data.md). Every file is checked against its published MD5 before it is parsed. For
``.gz`` files either the published MD5 of the ``.gz`` or the MD5 of the decompressed bytes is accepted (Debian
repacks the Fashion-MNIST ``.gz`` files, so only the decompressed bytes match). A file with a wrong MD5 raises
:class:`~rulab.errors.ChecksumError` and is never used; downloads are written to a temp file, checked, and only
then renamed into place. Files without a published checksum (the downsampled-ImageNet batches) are marked
``verified=False`` and are only read by parsers that refuse anything but plain arrays.

Tensor cache. A parsed split is stored as ``uint8``/``int64`` tensors in
``$RULAB_DATA/<name>/<key>.safetensors`` with JSON metadata: the raw files it came from (path, size, mtime, MD5),
the parameters that shaped it and a CRC of each tensor. A second load is a stat of the raw files plus a
memory-mapped read; a changed, moved or replaced raw file or a corrupt cache file makes it rebuild from the source.

Image folders (DTD, LSUN, iSUN, Tiny ImageNet, ...) have no per-file checksums; their archives do. A folder under
``$RULAB_DATA/<name>/`` is used as it is; an archive there (or downloaded) is checked and extracted by
:func:`extract_archive`, which refuses members with absolute paths or ``..`` that would escape the target.

Modules, one concern each: :mod:`~rulab.data.fetch.sources` (source specs, the :data:`SOURCES` registry, data
directories), :mod:`~rulab.data.fetch.download` (MD5 checks, downloads, archive extraction),
:mod:`~rulab.data.fetch.locate` (the source chain for files and image folders), :mod:`~rulab.data.fetch.cache`
(the tensor cache) and :mod:`~rulab.data.fetch.commands` (``rulab data fetch`` / ``rulab data list``). Everything
public is importable from ``rulab.data.fetch``.
"""

from rulab.data.fetch.cache import Prepared, load_prepared, load_prepared_folder
from rulab.data.fetch.commands import fetch, list_data
from rulab.data.fetch.download import DOWNLOAD_TIMEOUT_S, download, extract_archive, md5sum
from rulab.data.fetch.locate import ensure_files, ensure_folders
from rulab.data.fetch.sources import (
    ENV_DATA,
    ENV_OFFLINE,
    ENV_SYSTEM_DATA,
    SOURCES,
    SYSTEM_DATA_DIRS,
    Archive,
    FoundFile,
    RawFile,
    Source,
    dataset_root,
    declare,
    system_data_dirs,
)

__all__ = [
    "ENV_DATA",
    "ENV_SYSTEM_DATA",
    "ENV_OFFLINE",
    "SYSTEM_DATA_DIRS",
    "DOWNLOAD_TIMEOUT_S",
    "SOURCES",
    "RawFile",
    "Archive",
    "Source",
    "FoundFile",
    "Prepared",
    "declare",
    "dataset_root",
    "system_data_dirs",
    "md5sum",
    "download",
    "extract_archive",
    "ensure_files",
    "ensure_folders",
    "load_prepared",
    "load_prepared_folder",
    "fetch",
    "list_data",
]
