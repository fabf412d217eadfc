"""Errors and warnings raised by geoseg.

Every error inherits from :class:`GeosegError` and from the builtin that
describes it best, so callers can catch either (``except GeosegError`` or
``except ValueError``).  Messages are one line: the file, what was found,
what was expected and how to fix it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (a library's multi-line or
    empty message made fit for a one-line error).  Where the message only
    points at its cause (rasterio's "Read failed. See previous exception for
    details."), the cause's."""
    if exc.__cause__ is not None and "see previous exception" in str(exc).lower():
        exc = exc.__cause__
    s = str(exc).strip()
    return s.splitlines()[0][:limit] if s else type(exc).__name__


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


class UnsupportedSourceError(InputError):
    """A source geoseg cannot read as given (a remote object, a format)."""


# --- warnings: degraded-but-working cases -----------------------------------
# Raised with ``warnings.warn``; the CLI prints each as one line
# (``geoseg: warning: ...``), and callers filter them by class.


class GeosegWarning(UserWarning):
    """Root of all geoseg warnings."""


class ResolutionWarning(GeosegWarning):
    """The scene's pixel size is far from the model's training resolution."""


class ScalingWarning(GeosegWarning):
    """The scene's dtype has no scaling rule of its own in the model contract."""


class BandWarning(GeosegWarning):
    """Bands were chosen by position, not by colour interpretation."""


class MaskWarning(GeosegWarning):
    """A scene's nodata or masks leave nothing (or little) to classify."""


class AreaWarning(GeosegWarning):
    """Ground areas could not be computed on the ellipsoid; planar areas are used."""


class ResampleWarning(GeosegWarning):
    """``--resample auto`` cannot apply (no training resolution, no ground unit); the scene keeps its pixel size."""


_FILTERS = threading.RLock()


@contextmanager
def ignoring(*categories: type[Warning]) -> Iterator[None]:
    """``warnings.catch_warnings()`` ignoring ``categories``, under one
    process-wide lock.  ``catch_warnings`` saves and restores the process's
    one filter list: two threads inside it at once restore each other's
    filters too early, and a scene thread then met a warning it had silenced
    (a NotGeoreferencedWarning raised as an error, one run in three of a
    two-scene test).  Keep the block short: it holds the lock."""
    with _FILTERS, warnings.catch_warnings():
        for c in categories:
            warnings.simplefilter("ignore", c)
        yield
