"""Options and helpers shared by the ``geoseg`` commands (rio style: one
place for the common options and for turning errors into a clean exit).

Command modules, the built-in ones and those of `geoseg.training`,
`geoseg.export` or a plugin, import these public names.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import NoReturn

import click

TRAIN_MODULES = ("tensorflow", "keras", "tf2onnx", "onnx", "sklearn", "matplotlib")


def setup_logging(verbose: int, quiet: int) -> None:
    """One handler on the ``geoseg`` logger (its children, ``geoseg.training``
    and ``geoseg.export`` included, inherit it); warnings of geoseg and of the
    libraries under it are shown as one line each (see :mod:`geoseg.cli.warnings`)."""
    from .warnings import capture_warnings

    level = logging.WARNING - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("geoseg")
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, min(level, logging.ERROR)))
    root.propagate = False
    capture_warnings(quiet > 0)


class _Formatter(logging.Formatter):
    """``geoseg: error: ...``, ``geoseg: warning: ...``: log lines look like
    the command's own errors and warnings (lower-case level, one line)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().strip().splitlines()
        line = f"geoseg: {record.levelname.lower()}: {msg[0] if msg else ''}"
        if record.exc_info:  # only logged with -vv (debugging): the traceback is wanted then
            line += "\n" + self.formatException(record.exc_info)
        return line


def fail(exc: BaseException | str) -> NoReturn:
    """Print ``geoseg: error: MESSAGE`` (one line) and exit with code 1."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    click.echo(f"geoseg: error: {msg}", err=True)
    sys.exit(1)


def train_extra_installed() -> bool:
    """True when the ``train`` extra's packages are importable (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in TRAIN_MODULES)


def parse_bidx(ctx, param, value):
    """``-b/--bidx 1,2,3`` -> (1, 2, 3)."""
    if not value:
        return None
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of band numbers, e.g. 1,2,3") from None
    if any(b < 1 for b in out):
        raise click.BadParameter("band numbers start at 1")
    return out


def parse_nodata(ctx, param, value):
    """``--nodata NUMBER|nan`` -> float."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or 'nan'") from None


def parse_scaling(ctx, param, value):
    """``--scaling identity|linear:S[,O]|percentile:LO,HI`` -> :class:`~geoseg.contract.Scaling`."""
    if value is None:
        return None
    from ..contract import Scaling

    try:
        return Scaling.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


verbose_opt = click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
quiet_opt = click.option("-q", "--quiet", count=True, help="Less log output; no progress bars or warnings.")
