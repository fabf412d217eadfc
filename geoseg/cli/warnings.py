"""Warnings on the terminal: one line each, never a traceback-style report.

geoseg's own warnings (:class:`geoseg.errors.GeosegWarning` and its
subclasses), rasterio's Python warnings (``NodataShadowWarning``...) and the
GDAL warnings rasterio passes to the ``rasterio`` logger are all printed as
``geoseg: warning: MESSAGE``; a message repeated (GDAL warns once per block)
is printed once.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings

import click

from ..errors import GeosegWarning

_seen: set[str] = set()
_GDAL_CONTEXT = re.compile(r"^GDAL: CPLE_\w+ in (\S+\.\w+: )?")
_lock = threading.Lock()


def _once(text: str, quiet: bool) -> None:
    line = text.strip().splitlines()[0] if text.strip() else ""
    if quiet or not line:
        return
    key = _GDAL_CONTEXT.sub("GDAL: CPLE in ", line)  # libtiff repeats a message with and without the file name
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
    click.echo(f"geoseg: warning: {line}", err=True)


class _OneLineHandler(logging.Handler):
    def __init__(self, prefix: str, quiet: bool) -> None:
        super().__init__(logging.WARNING)
        self.prefix, self.quiet = prefix, quiet

    def emit(self, record: logging.LogRecord) -> None:
        _once(self.prefix + record.getMessage(), self.quiet)


def capture_warnings(quiet: bool = False) -> None:
    """Route Python warnings and GDAL/rasterio log warnings to one-line messages."""
    _seen.clear()

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001 - warnings API
        name = getattr(category, "__name__", "Warning")
        text = str(message)
        if not issubclass(category, (GeosegWarning,)) and category is not UserWarning:
            text = f"{text} ({name})"  # a library's warning says whose it is
        _once(text, quiet)

    warnings.showwarning = show
    for name, prefix in (("rasterio", "GDAL: "), ("distributed", "dask: ")):
        lg = logging.getLogger(name)
        lg.handlers[:] = [_OneLineHandler(prefix, quiet)]
        lg.propagate = False
