"""Errors raised by geoseg.

Every error inherits from :class:`GeosegError` and from the builtin that
describes it best, so callers can catch either (``except GeosegError`` or
``except ValueError``).  Messages are one line: the file, what was found,
what was expected and how to fix it.
"""

from __future__ import annotations


class GeosegError(Exception):
    """Root of all geoseg errors."""


class InputError(GeosegError, ValueError):
    """A scene that cannot be classified as it is (format, bands, CRS, size...)."""


class ModelError(GeosegError, ValueError):
    """A model file that is not ONNX, has no contract, or contradicts its contract."""


class OutputError(GeosegError, OSError):
    """An output that cannot be written."""


class OutputExistsError(OutputError, FileExistsError):
    """An output exists and ``--overwrite`` was not given."""


class NotInstalledError(GeosegError, ImportError):
    """An optional part (the ``train`` extra) is not installed."""
