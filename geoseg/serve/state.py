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
from .looplag import LoopLag
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
    ``shared_dir``: set when several processes serve together (``geoseg serve
    --workers N``): scenes added and jobs started by one are known to all.
    """

    def to_json(self) -> str:
        """The settings as JSON (handed to the worker processes)."""
        import dataclasses
        import json

        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        import json

        d = json.loads(text)
        d["sources"] = tuple(d["sources"])
        d["options"] = ServeOptions(**d["options"])
        if d["allow_url_prefixes"] is not None:
            d["allow_url_prefixes"] = tuple(d["allow_url_prefixes"])
        return cls(**d)

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
    shared_dir: str | None = None  # the processes of one server (--workers N) share scenes and jobs here
    processes: int = 1  # processes of the server: each has cores / processes threads unless ``workers`` says


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
    loop_lag: LoopLag = field(default_factory=LoopLag)

    def close(self) -> None:
        self.jobs.close()
        self.service.close()
        self.engine.close()


def build_server(s: Settings, model: ModelInfo | None = None) -> Server:
    """Load the model (unless given), open the caches and serve the start-up scenes."""
    info = model or load_model(resolve_model_path(s.model))
    cache_dir = os.path.abspath(s.cache_dir or default_cache_dir())
    os.makedirs(cache_dir, exist_ok=True)
    shared = (lambda name: os.path.join(s.shared_dir, name)) if s.shared_dir else (lambda name: None)
    registry = SceneRegistry(list(s.sources), info, s.options, os.path.join(cache_dir, "uploads"),
                             int(s.upload_limit_mb * 2**20), s.allow_url_prefixes, shared("scenes"))
    disk = DiskCache(os.path.join(cache_dir, "blocks") if s.disk_cache else None)
    threads = s.workers or max(1, available_cores() // s.processes)
    engine = BlockEngine(info, disk, workers=threads)
    jobs = JobManager(os.path.join(cache_dir, "jobs"), info, s.options, threads, s.polygons,
                      on_done=lambda scene, outs: _feed(engine, scene, outs), shared_dir=shared("jobs"))
    tiles = LRU(TILE_CACHE_BYTES)
    service = TileService(engine, tiles, max(1, available_cores() // s.processes))
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
