"""What the endpoints of ``geoseg serve`` share (:class:`Server`), how it is
built from the settings of one server (:class:`Settings`), and the FastAPI
dependency that hands it to an endpoint (:data:`ServerDep`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ..model import ModelInfo, load_model, resolve_model_path
from ..scheduling import available_cores
from .cache import LRU, DiskCache
from .engine import BlockEngine
from .jobs import JobManager
from .scenes import SceneRegistry, ServedScene, ServeOptions
from .service import TileService

DEFAULT_UPLOAD_LIMIT_MB = 512
TILE_CACHE_BYTES = 64 << 20


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/geoseg/serve`` (``~/.cache/geoseg/serve``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "geoseg", "serve")


@dataclass(frozen=True)
class Settings:
    """The settings of one server (the arguments of :func:`geoseg.serve.app.create_app`).

    ``allow_url_prefixes``: ``None`` fetches any http(s) URL, an empty tuple
    none, else only URLs under one of the prefixes (redirects included).
    """

    sources: tuple[str, ...] = ()
    model: str | None = None
    token: str | None = None
    upload_limit_mb: float = DEFAULT_UPLOAD_LIMIT_MB
    cache_dir: str | None = None
    options: ServeOptions = field(default_factory=ServeOptions)
    workers: int | None = None
    disk_cache: bool = True
    polygons: bool = True
    allow_url_prefixes: tuple[str, ...] | None = None


@dataclass
class Server:
    """Everything the endpoints share."""

    model: ModelInfo
    options: ServeOptions
    registry: SceneRegistry
    engine: BlockEngine
    jobs: JobManager
    tiles: LRU
    token: str | None
    cache_dir: str
    service: TileService

    def close(self) -> None:
        self.jobs.close()
        self.service.close()
        self.engine.close()


def build_server(s: Settings, model: ModelInfo | None = None) -> Server:
    """Load the model (unless given), open the caches and serve the start-up scenes."""
    info = model or load_model(resolve_model_path(s.model))
    cache_dir = os.path.abspath(s.cache_dir or default_cache_dir())
    os.makedirs(cache_dir, exist_ok=True)
    registry = SceneRegistry(list(s.sources), info, s.options, os.path.join(cache_dir, "uploads"),
                             int(s.upload_limit_mb * 2**20), s.allow_url_prefixes)
    disk = DiskCache(os.path.join(cache_dir, "blocks") if s.disk_cache else None)
    engine = BlockEngine(info, disk, workers=s.workers)
    jobs = JobManager(os.path.join(cache_dir, "jobs"), info, s.options, s.workers, s.polygons,
                      on_done=lambda scene, outs: _feed(engine, scene, outs))
    tiles = LRU(TILE_CACHE_BYTES)
    service = TileService(engine, tiles, available_cores())
    return Server(info, s.options, registry, engine, jobs, tiles, s.token or None, cache_dir, service)


def _feed(engine: BlockEngine, scene: ServedScene, outputs: dict[str, str]) -> None:
    """A finished job's class and probability rasters into the block caches."""
    if "classes" in outputs and "probs" in outputs:
        engine.ingest_rasters(scene, outputs["classes"], outputs["probs"])


def get_server(request: Request) -> Server:
    """The :class:`Server` of the application answering ``request``."""
    server: Server = request.app.state.server
    return server


ServerDep = Annotated[Server, Depends(get_server)]
