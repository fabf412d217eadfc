"""Scenes: the list, adding one by path or URL, uploads, one scene and the
TileJSON of its layers."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from ...errors import InputError
from .. import render
from .. import tiles as T
from ..auth import token_query
from ..errors import NotFoundError
from ..scenes import discard
from ..schemas import Scene, SceneList, SceneSource, TileJSON
from ..state import ServerDep

MULTIPART_OVERHEAD = 64 << 10  # bytes of multipart framing allowed above the upload limit
UPLOAD_BODY = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
    "required": ["file"]}}}, "required": True}}

router = APIRouter(prefix="/api")


@router.get("/scenes", summary="Served scenes", response_model=SceneList)
def list_scenes(server: ServerDep) -> dict:
    return {"scenes": [s.to_dict() for s in server.registry.list()], "errors": server.registry.errors}


@router.post("/scenes", status_code=201, response_model=Scene,
             summary="Serve a scene by path (under a root) or URL",
             description='Body: `{"path": "/data/scene.tif"}` (a file under one of the folders the server '
                         'was started with; a relative path is taken from the first) or '
                         '`{"url": "https://host/scene.tif"}` (downloaded, size-limited; only URLs under '
                         'an `--allow-url-prefix`, or any on a loopback-only server started without one).')
def add_scene(body: SceneSource, server: ServerDep) -> dict:
    if body.url is not None:
        return server.registry.download(body.url).to_dict()
    return server.registry.add(body.path).to_dict()  # type: ignore[arg-type]  # a str: checked by SceneSource


@router.post("/uploads", status_code=201, response_model=Scene, openapi_extra=UPLOAD_BODY,
             summary="Upload a GeoTIFF (multipart field `file`)")
async def upload(request: Request, server: ServerDep) -> dict:
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


@router.get("/scenes/{sid}", summary="One scene", response_model=Scene)
def get_scene(sid: str, server: ServerDep) -> dict:
    return server.registry.get(sid).to_dict()


def check_layer(layer: str) -> None:
    if layer not in render.LAYERS:
        raise NotFoundError(f"layer {layer!r}: unknown; expected one of {', '.join(render.LAYERS)}")


@router.get("/scenes/{sid}/tilejson.json", summary="TileJSON 3.0 of a layer of the scene", response_model=TileJSON)
def tilejson(request: Request, sid: str, server: ServerDep,
             layer: str = Query("classes", description="rgb, classes or confidence")) -> dict:
    sc = server.registry.get(sid)
    check_layer(layer)
    base = str(request.base_url).rstrip("/")
    url = f"{base}/api/scenes/{sc.id}/tiles/{layer}/{{z}}/{{x}}/{{y}}.png" + token_query(server.token)
    w, s, e, n = sc.bounds_lonlat
    nz = sc.native_zoom
    return {
        "tilejson": "3.0.0", "name": f"{sc.name} {layer}", "version": "1.0.0", "scheme": "xyz",
        "tiles": [url], "minzoom": max(0, nz - 6), "maxzoom": min(T.MAX_ZOOM, nz + 4),
        "bounds": [w, s, e, n], "center": [(w + e) / 2, (s + n) / 2, nz],
        "attribution": "geoseg",
        "description": f"{layer} of {sc.name}; native zoom {nz}",
    }
