"""The web application of ``geoseg serve`` (FastAPI): a JSON API for scenes,
tiles, clicks and whole-scene jobs, and a one-page Leaflet map.

Every error is a JSON object ``{"error": MESSAGE}`` with a fitting status
(400 malformed, 401 token, 403 outside the roots, 404 unknown, 409 not done,
413 too large, 422 a scene geoseg cannot classify, 500 anything else), never
a traceback page.  The interactive API documentation is at ``/docs``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import mimetypes
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import GeosegError, InputError
from ..model import ModelInfo, load_model, resolve_model_path
from . import render
from . import tiles as T
from .cache import LRU, DiskCache
from .engine import BlockEngine
from .jobs import FINAL, OUTPUT_KINDS, JobManager, JobStateError
from .scenes import AccessError, NotFoundError, SceneRegistry, ServeOptions, TooLargeError, discard

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_UPLOAD_LIMIT_MB = 512
TILE_CACHE_BYTES = 64 << 20
MULTIPART_OVERHEAD = 64 << 10  # bytes of multipart framing allowed above the upload limit


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/geoseg/serve`` (``~/.cache/geoseg/serve``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "geoseg", "serve")


@dataclass
class Server:
    """Everything the endpoints share."""

    model: ModelInfo
    registry: SceneRegistry
    engine: BlockEngine
    jobs: JobManager
    tiles: LRU
    token: str | None
    cache_dir: str

    def close(self) -> None:
        self.jobs.close()
        self.engine.close()


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, AccessError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, TooLargeError):
        return 413
    if isinstance(exc, JobStateError):
        return 409
    if isinstance(exc, GeosegError):
        return 422
    return 500


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class TokenMiddleware:
    """Refuses ``/api`` calls (but ``/api/health``) without the token, given as
    ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (tile URLs cannot carry headers)."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            p = scope.get("path", "")
            if p.startswith("/api/") and p != "/api/health" and not self._ok(scope):
                resp = _error(401, "missing or wrong token; pass 'Authorization: Bearer TOKEN' or ?token=TOKEN")
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _ok(self, scope) -> bool:
        from urllib.parse import parse_qs

        given = b""
        for k, v in scope.get("headers", ()):
            if k == b"authorization" and v[:7].lower() == b"bearer ":
                given = v[7:].strip()
        if not given:
            q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (q.get("token") or [""])[0].encode()
        return hmac.compare_digest(given, self.token)


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
) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    sources
        Scene files and folders to serve (folders are roots for ``POST /api/scenes``).
    model
        ONNX model with a geoseg contract (path or loaded); default: the shipped model.
    token
        When set, every ``/api`` call but ``/api/health`` needs it
        (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``).
    upload_limit_mb
        Largest upload or download, in MB.
    cache_dir
        Blocks, uploads and job outputs (default: :func:`default_cache_dir`).
    options
        :class:`ServeOptions` (stride, batch size, minimum valid fraction, block size).
    workers
        Threads computing blocks and job blocks (default: the cores).
    disk_cache
        Keep computed blocks on disk (``CACHE_DIR/blocks``) across restarts.
    polygons
        Whether jobs write polygons.
    """
    info = model if isinstance(model, ModelInfo) else load_model(resolve_model_path(model))
    options = options or ServeOptions()
    cache_dir = os.path.abspath(str(cache_dir or default_cache_dir()))
    os.makedirs(cache_dir, exist_ok=True)
    registry = SceneRegistry(list(sources), info, options, os.path.join(cache_dir, "uploads"),
                             int(upload_limit_mb * 2**20))
    engine = BlockEngine(info, DiskCache(os.path.join(cache_dir, "blocks") if disk_cache else None),
                         workers=workers)
    server = Server(info, registry, engine, JobManager(os.path.join(cache_dir, "jobs"), info, options, workers,
                                                       polygons),
                    LRU(TILE_CACHE_BYTES), token or None, cache_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.close()

    app = FastAPI(
        title="geoseg serve", version=__version__, lifespan=lifespan,
        description="Real-time landscape classification of GeoTIFF scenes on a web map: tiles of the "
                    "scene, its class map and confidence; click for probabilities; whole-scene jobs "
                    "with the outputs of `geoseg classify`.",
    )
    app.state.server = server

    # --- errors: always JSON --------------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse({"error": msg}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "request"
            parts.append(f"{loc}: {e.get('msg', 'invalid')}")
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return _error(400, f"{request.method} {request.url.path}: the body is not valid JSON; expected a JSON "
                               "object (see /docs for its fields)")
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(GeosegError)
    async def _geoseg_error(request: Request, exc: GeosegError):
        return _error(_status_of(exc), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                           "see the server log")

    # --- token (a plain ASGI middleware: Starlette's BaseHTTPMiddleware adds ~40 ms
    # to every keep-alive request on loopback) ---------------------------------------
    if server.token:
        app.add_middleware(TokenMiddleware, token=server.token)

    # --- page and static files ----------------------------------------------------
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # --- API ------------------------------------------------------------------------
    @app.get("/api/health", summary="Liveness and cache counters")
    def health():
        return {"status": "ok", "version": __version__, "scenes": len(server.registry.scenes),
                "cache": {**server.engine.counters.to_dict(), "memory_blocks": len(server.engine.mem),
                          "memory_bytes": server.engine.mem.nbytes, "tiles": len(server.tiles)},
                "workers": server.engine.workers}

    @app.get("/api/model", summary="The model contract: classes, colours, patch size")
    def model_info():
        c = server.model.contract
        return {
            "name": c.name, "file": os.path.basename(server.model.path), "sha256": server.model.sha256,
            "classes": [{"index": i, "name": n, "color": c.class_colors[i]} for i, n in enumerate(c.class_names)],
            "patch_size": c.patch_size, "stride": options.stride or c.patch_size, "bands": list(c.bands),
            "training_resolution_m": c.training_resolution_m, "min_valid_fraction": c.min_valid_fraction,
        }

    @app.get("/api/scenes", summary="Served scenes")
    def list_scenes():
        return {"scenes": [s.to_dict() for s in server.registry.list()], "errors": server.registry.errors}

    @app.post("/api/scenes", status_code=201, summary="Serve a scene by path (under a root) or URL",
              description='Body: `{"path": "/data/scene.tif"}` (a file under one of the folders the server '
                          'was started with; a relative path is taken from the first) or '
                          '`{"url": "https://host/scene.tif"}` (downloaded, size-limited).')
    def add_scene(body: Annotated[dict, Body(examples=[{"path": "scene.tif"}])]):
        if not isinstance(body, dict) or (("path" in body) == ("url" in body)):
            raise InputError('request body: expected {"path": "..."} or {"url": "..."}')
        if "url" in body:
            if not isinstance(body["url"], str):
                raise InputError("url: expected a string")
            sc = server.registry.download(body["url"])
        else:
            sc = server.registry.add(body["path"])
        return sc.to_dict()

    @app.post("/api/uploads", status_code=201, summary="Upload a GeoTIFF (multipart field `file`)",
              openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                  "type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                  "required": ["file"]}}}, "required": True}})
    async def upload(request: Request):
        reg = server.registry
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            raise HTTPException(411, "upload: a Content-Length header is required")
        if int(declared) > reg.upload_limit + MULTIPART_OVERHEAD:
            raise reg.too_large("upload", int(declared))
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InputError("upload: expected multipart/form-data with the GeoTIFF in the field 'file'")
        form = await request.form(max_files=1, max_fields=4)
        f = form.get("file")
        if f is None or isinstance(f, str):
            raise InputError("upload: no file in the field 'file'; expected a GeoTIFF")
        dest = reg.new_upload_path(f.filename)
        n = 0
        try:
            with open(dest, "wb") as out:
                while chunk := await f.read(1 << 20):
                    n += len(chunk)
                    if n > reg.upload_limit:
                        raise reg.too_large(f.filename or "upload", n)
                    out.write(chunk)
        except BaseException:
            discard(dest)
            raise
        finally:
            await form.close()
        sc = await run_in_threadpool(reg.add_upload, dest, f.filename or None)
        return sc.to_dict()

    def _scene(sid: str):
        return server.registry.get(sid)

    @app.get("/api/scenes/{sid}", summary="One scene")
    def get_scene(sid: str):
        return _scene(sid).to_dict()

    @app.get("/api/scenes/{sid}/tilejson.json", summary="TileJSON 3.0 of a layer of the scene")
    def tilejson(request: Request, sid: str, layer: str = Query("classes", description="rgb, classes or confidence")):
        sc = _scene(sid)
        if layer not in render.LAYERS:
            raise NotFoundError(f"layer {layer!r}: unknown; expected one of {', '.join(render.LAYERS)}")
        base = str(request.base_url).rstrip("/")
        url = f"{base}/api/scenes/{sc.id}/tiles/{layer}/{{z}}/{{x}}/{{y}}.png"
        if server.token:
            url += f"?token={server.token}"
        w, s, e, n = sc.bounds_lonlat
        nz = sc.native_zoom
        return {
            "tilejson": "3.0.0", "name": f"{sc.name} {layer}", "version": "1.0.0", "scheme": "xyz",
            "tiles": [url], "minzoom": max(0, nz - 6), "maxzoom": min(T.MAX_ZOOM, nz + 4),
            "bounds": [w, s, e, n], "center": [(w + e) / 2, (s + n) / 2, nz],
            "attribution": "geoseg",
            "description": f"{layer} of {sc.name}; native zoom {nz}",
        }

    @app.get("/api/scenes/{sid}/tiles/{layer}/{z}/{x}/{y}.png", summary="A map tile (PNG, 256 px, EPSG:3857)",
             response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def tile(sid: str, layer: str, z: int, x: int, y: int):
        sc = _scene(sid)
        if layer not in render.LAYERS:
            raise NotFoundError(f"layer {layer!r}: unknown; expected one of {', '.join(render.LAYERS)}")
        if not T.valid_tile(z, x, y):
            raise NotFoundError(f"tile {z}/{x}/{y}: not in the XYZ pyramid (0 <= x, y < 2**z, z <= {T.MAX_ZOOM})")
        key = (sc.cache_key, layer, z, x, y)
        png = server.tiles.get(key)  # a cached tile is answered on the event loop, never queued
        headers = {"Cache-Control": "public, max-age=3600", "X-Geoseg-Cache": "hit"}
        if png is None:
            if layer == "rgb":
                t = await run_in_threadpool(render.rgb_tile, sc, z, x, y)
            else:
                t = await run_in_threadpool(render.cell_tile, sc, server.engine, layer, z, x, y)
            png = t.png
            headers["X-Geoseg-Cache"] = "miss"
            if t.partial:
                headers.update({"Cache-Control": "no-store", "X-Geoseg-Partial": "1"})
            else:
                server.tiles.put(key, png, len(png))
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/api/scenes/{sid}/point", summary="Class and probabilities at a point",
             responses={404: {"description": "outside the scene"}})
    def point(sid: str, lon: float = Query(..., ge=-180, le=180), lat: float = Query(..., ge=-90, le=90)):
        sc = _scene(sid)
        a = render.point(sc, server.engine, lon, lat)
        if not a.inside:
            raise NotFoundError(f"({lon}, {lat}): outside scene {sc.name}")
        names = server.model.contract.class_names
        return {
            "class": None if a.cls is None else names[a.cls], "class_index": a.cls,
            "probabilities": None if a.probs is None else {n: float(p) for n, p in zip(names, a.probs)},
            "nodata": a.cls is None, "row": a.row, "col": a.col, "lon": lon, "lat": lat, "scene": sc.id,
        }

    @app.post("/api/jobs", status_code=201, summary="Classify a whole scene (geoseg classify) as a job")
    def new_job(body: Annotated[dict, Body(examples=[{"scene": "SCENE_ID"}])]):
        sid = body.get("scene") if isinstance(body, dict) else None
        if not isinstance(sid, str):
            raise InputError('request body: expected {"scene": SCENE_ID}')
        return server.jobs.submit(_scene(sid)).to_dict()

    @app.get("/api/jobs", summary="Every job")
    def list_jobs():
        return {"jobs": [j.to_dict() for j in server.jobs.jobs.values()]}

    @app.get("/api/jobs/{jid}", summary="A job's status and progress (patches done of total)")
    def get_job(jid: str):
        return server.jobs.get(jid).to_dict()

    @app.delete("/api/jobs/{jid}", summary="Cancel a job (nothing half-written is left)")
    def cancel_job(jid: str):
        return server.jobs.cancel(jid).to_dict()

    @app.get("/api/jobs/{jid}/events", summary="Server-sent progress events until the job ends",
             response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
    async def job_events(jid: str):
        job = server.jobs.get(jid)

        async def stream():
            seen = -1
            idle = 0.0
            while True:
                if job.version != seen:
                    seen = job.version
                    d = job.to_dict()
                    yield f"event: progress\ndata: {json.dumps(d)}\n\n"
                    if d["status"] in FINAL:
                        yield f"event: end\ndata: {json.dumps(d)}\n\n"
                        return
                    idle = 0.0
                await asyncio.sleep(0.1)
                idle += 0.1
                if idle >= 15:
                    idle = 0.0
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/jobs/{jid}/outputs/{kind}", summary="Download an output of a finished job",
             description="kind: " + ", ".join(OUTPUT_KINDS))
    def job_output(jid: str, kind: str):
        p = server.jobs.output(jid, kind)
        mt = mimetypes.guess_type(p)[0] or ("application/geopackage+sqlite3" if p.endswith(".gpkg")
                                            else "application/octet-stream")
        return FileResponse(p, media_type=mt, filename=os.path.basename(p))

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def not_found(rest: str, request: Request):
        path = "/api/" + rest
        allowed = sorted({m for r in app.routes if getattr(r, "path", None) not in (None, "/api/{rest:path}")
                          and (rx := getattr(r, "path_regex", None)) is not None and rx.match(path)
                          for m in (getattr(r, "methods", None) or ())} - {"HEAD"})
        if allowed:
            return _error(405, f"{request.method} {path}: not allowed; expected {' or '.join(allowed)}",
                          headers={"Allow": ", ".join(allowed)})
        raise NotFoundError(f"{path}: no such endpoint; see /docs")

    return app
