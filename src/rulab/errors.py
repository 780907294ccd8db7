"""The exceptions rulab raises for a user's mistake or bad input.

Every message is one sentence that says what is wrong and what to do about it. The command line prints
``error: <message>`` for any :class:`RulabError` and exits with status 2, never a traceback; anything
else is a bug in rulab and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "RulabError",
    "ConfigError",
    "DataError",
    "DatasetMissingError",
    "ChecksumError",
    "CheckpointError",
    "InputError",
    "StoreError",
    "RulabWarning",
]


class RulabError(Exception):
    """Base class of every error caused by user input (config, files, data, arguments)."""


class ConfigError(RulabError, ValueError):
    """A configuration key, type or value is invalid."""


class DataError(RulabError):
    """A data file is missing, truncated, corrupt or in the wrong format."""


class DatasetMissingError(DataError, FileNotFoundError):
    """No source could provide a dataset; the message names the command that fetches it."""


class ChecksumError(DataError):
    """A file's checksum differs from the published value; the file is not used."""


class CheckpointError(RulabError):
    """A checkpoint is missing, unsafe, corrupt or incompatible with the requested model."""


class InputError(RulabError, ValueError):
    """An array argument is invalid: empty, NaN/inf, wrong shape or dtype."""


class StoreError(RulabError):
    """The results database cannot be opened, written or read."""


class RulabWarning(UserWarning):
    """Something rulab handled but the user should know about (a stale lock taken over, malformed database rows
    skipped); the command line prints it as ``warning: <message>``."""
