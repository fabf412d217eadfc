"""Options and helpers shared by the ``geoseg`` commands (rio style: one place
for the common options), so command modules in `training/` and `export/`
import them without importing the CLI itself."""

from __future__ import annotations

import logging
import sys

import click


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("geoseg: %(levelname)s: %(message)s"))
    root = logging.getLogger("geoseg")
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, min(level, logging.ERROR)))
    root.propagate = False


def _fail(exc: BaseException) -> None:
    click.echo(f"geoseg: error: {exc}", err=True)
    sys.exit(1)


def _bidx(ctx, param, value):
    if not value:
        return None
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of band numbers, e.g. 1,2,3") from None
    if any(b < 1 for b in out):
        raise click.BadParameter("band numbers start at 1")
    return out


def _nodata(ctx, param, value):
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or 'nan'") from None


def _scaling(ctx, param, value):
    if value is None:
        return None
    from .contract import Scaling

    try:
        return Scaling.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


verbose_opt = click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
quiet_opt = click.option("-q", "--quiet", count=True, help="Less log output; no progress bars.")
