"""The web application of ``geoseg serve`` (FastAPI): a JSON API for scenes,
tiles, clicks and whole-scene jobs, and a one-page Leaflet map.

:func:`create_app` only assembles: the shared state (:mod:`.state`), the
routers (:mod:`.api`), the error handlers (:mod:`.errors`) and the token
check (:mod:`.auth`).  The interactive API documentation is at ``/docs``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..model import ModelInfo
from .api import ROUTERS
from .api.meta import STATIC
from .auth import TokenMiddleware
from .errors import fallback, install_handlers
from .scenes import ServeOptions
from .service import CachedTileMiddleware
from .state import DEFAULT_UPLOAD_LIMIT_MB, Server, Settings, build_server, default_cache_dir

DESCRIPTION = ("Real-time landscape classification of GeoTIFF scenes on a web map: tiles of the scene, its "
               "class map and confidence; click for probabilities; whole-scene jobs with the outputs of "
               "`geoseg classify`.")

SETTINGS_ENV = "GEOSEG_SERVE_SETTINGS"
# The server's event loop shares the GIL with its drawing and inference threads: each time
# it waits for a socket it gives the GIL up and then waits up to the switch interval to get
# it back (Python's default 5 ms), so a cached tile waited behind drawings.
SWITCH_INTERVAL_S = 0.001


def serving_process() -> None:
    """Set up the interpreter of a process that only serves (``geoseg serve``
    and each of its worker processes): a 1 ms GIL switch interval."""
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)

__all__ = ["DEFAULT_UPLOAD_LIMIT_MB", "SETTINGS_ENV", "Server", "app_from_env", "app_from_settings", "create_app",
           "default_cache_dir", "serving_process"]


def create_app(
    sources: list[str] | tuple[str, ...] = (),
    model: str | os.PathLike | ModelInfo | None = None,
    *,
    token: str | None = None,
    upload_limit_mb: float = DEFAULT_UPLOAD_LIMIT_MB,
    cache_dir: str | os.PathLike | None = None,
    options: ServeOptions | None = None,
    workers: int | None = None,
    disk_cache: bool = True,
    polygons: bool = True,
    allow_url_prefixes: list[str] | tuple[str, ...] | None = None,
) -> FastAPI:
    """Build the application.

    ``sources``: scene files and folders (folders are roots for ``POST
    /api/scenes``); ``model``: path or loaded model (default: the shipped
    one); ``token``: needed by every ``/api`` call but ``/api/health``;
    ``upload_limit_mb``: largest upload or download; ``cache_dir``: blocks,
    uploads and job outputs (default :func:`default_cache_dir`); ``options``:
    :class:`ServeOptions`; ``workers``: threads computing blocks (default: the
    cores); ``disk_cache``: keep blocks on disk; ``polygons``: jobs write
    polygons; ``allow_url_prefixes``: URLs ``POST /api/scenes`` may fetch
    (``None``: any http(s) URL; empty: none; see :mod:`geoseg.serve.fetch`).
    """
    settings = Settings(
        tuple(str(s) for s in sources), None if isinstance(model, ModelInfo) or model is None else str(model),
        token, upload_limit_mb, None if cache_dir is None else str(cache_dir), options or ServeOptions(),
        workers, disk_cache, polygons, None if allow_url_prefixes is None else tuple(allow_url_prefixes))
    return app_from_settings(settings, model if isinstance(model, ModelInfo) else None)


def app_from_settings(settings: Settings, model: ModelInfo | None = None) -> FastAPI:
    """The application of :class:`Settings` (``model``: already loaded)."""
    server = build_server(settings, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.loop_lag.start()
        yield
        server.loop_lag.stop()
        server.close()

    app = FastAPI(title="geoseg serve", version=__version__, lifespan=lifespan, description=DESCRIPTION)
    app.state.server, app.state.routers = server, ROUTERS
    install_handlers(app)
    app.add_middleware(CachedTileMiddleware, tiles=server.service, scenes=lambda: server.registry.scenes)
    if server.token:  # added last: outermost, so the token is checked before anything is answered
        app.add_middleware(TokenMiddleware, token=server.token)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for router in (*ROUTERS, fallback):
        app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """The application of the settings in ``$GEOSEG_SERVE_SETTINGS`` (JSON of
    :class:`Settings`): the factory each worker process of ``geoseg serve
    --workers N`` calls."""
    serving_process()
    return app_from_settings(Settings.from_json(os.environ[SETTINGS_ENV]))
