"""The routers of ``geoseg serve``, one per resource: :mod:`.meta` (page,
health, model), :mod:`.scenes` (scenes, uploads, TileJSON), :mod:`.tiles`
(tiles and clicks) and :mod:`.jobs` (whole-scene jobs)."""

from __future__ import annotations

from . import jobs, meta, scenes, tiles

ROUTERS = (meta.router, scenes.router, tiles.router, jobs.router)

__all__ = ["ROUTERS"]
