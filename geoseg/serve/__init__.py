"""``geoseg serve``: real-time predictions on a web map.

A tile request computes only the blocks of the scene's class grid it needs
(with the task function of ``geoseg classify``, so tiles never disagree with
the batch class raster), caches them in memory and on disk, and draws the
cells into Web Mercator tiles.  Needs the ``serve`` extra (FastAPI, uvicorn).

Modules: :mod:`~geoseg.serve.tiles` (pure tile maths and drawing),
:mod:`~geoseg.serve.cache`, :mod:`~geoseg.serve.engine` (blocks on demand),
:mod:`~geoseg.serve.scenes` (roots, uploads, safety), :mod:`~geoseg.serve.render`,
:mod:`~geoseg.serve.jobs` (whole-scene jobs), :mod:`~geoseg.serve.app` (FastAPI).
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """See :func:`geoseg.serve.app.create_app` (imported on first use)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
