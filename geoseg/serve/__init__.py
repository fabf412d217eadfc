"""``geoseg serve``: real-time predictions on a web map.

A tile request computes only the blocks of the scene's class grid it needs
(with the task function of ``geoseg classify``, so tiles never disagree with
the batch class raster), caches them in memory and on disk, and draws the
cells into Web Mercator tiles.  Needs the ``serve`` extra (FastAPI, uvicorn).

Modules: :mod:`~geoseg.serve.app` (the factory), :mod:`~geoseg.serve.state`
(settings, shared state, the dependency), :mod:`~geoseg.serve.api` (one
router per resource), :mod:`~geoseg.serve.schemas` (bodies and answers),
:mod:`~geoseg.serve.errors` (status table, handlers, 404/405),
:mod:`~geoseg.serve.auth` (token), :mod:`~geoseg.serve.fetch` (URL
downloads and their allow-list), :mod:`~geoseg.serve.scenes` (roots, safety,
prepared scenes), :mod:`~geoseg.serve.service` (answering a tile under
load), :mod:`~geoseg.serve.work` (the bounded priority pool),
:mod:`~geoseg.serve.engine` (blocks on demand), :mod:`~geoseg.serve.cache`,
:mod:`~geoseg.serve.render`, :mod:`~geoseg.serve.tiles` (pure tile maths and
drawing), :mod:`~geoseg.serve.jobs` (whole-scene jobs).
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """See :func:`geoseg.serve.app.create_app` (imported on first use)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
