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


_FILTERS = threading.RLock()  # an exclusive block may hold it while its body enters a plain block


def _filters_changed() -> None:
    """Tell the warnings machinery its filter list changed (its per-module
    caches hold the list's version)."""
    changed = getattr(warnings, "_filters_mutated", None)
    if changed is not None:
        changed()
    else:  # a public call that bumps the version (adds one filter of a category never raised, once)
        warnings.simplefilter("ignore", _Never, append=True)


class _Never(Warning):
    """Never raised: see :func:`_filters_changed`."""


@contextmanager
def ignoring(*categories: type[Warning], exclusive: bool = False) -> Iterator[None]:
    """Ignore warnings of ``categories`` inside the block, thread-safely.

    ``warnings.catch_warnings`` saves and restores the process's one filter
    list: two threads inside it at once restore each other's filters too
    early, and a scene thread then met a warning it had silenced (a
    NotGeoreferencedWarning raised as an error, one run in three of a
    two-scene test).  Here each block adds its own "ignore" entry at the
    front of the list and removes that one entry when it ends.  While any
    thread is inside, the categories are ignored process-wide.

    ``exclusive=True`` is for blocks that run a library's own
    ``catch_warnings`` (rasterio's in-memory datasets: ``features.shapes``,
    ``rasterize``, ``reproject``; they do no I/O): such a block holds the
    lock from start to end, and the other blocks add and remove their entry
    only under the same lock, so a library's restore never drops an entry
    (it restores the list that holds it).  A plain block holds the lock only
    for those two list edits, never across its body (which may open a remote
    raster: network I/O).
    """
    entries = [("ignore", None, c, None, 0) for c in categories]
    with _FILTERS:
        _add(entries)
    try:
        if exclusive:
            with _FILTERS:
                yield
        else:
            yield
    finally:
        with _FILTERS:
            _remove(entries)


def _add(entries: list) -> None:
    for e in entries:
        warnings.filters.insert(0, e)  # type: ignore[attr-defined]
    _filters_changed()


def _remove(entries: list) -> None:
    for e in entries:
        try:
            warnings.filters.remove(e)  # type: ignore[attr-defined]
        except ValueError:  # the list was replaced meanwhile (a catch_warnings block ended)
            pass
    _filters_changed()
