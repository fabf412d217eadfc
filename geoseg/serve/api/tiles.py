"""Map tiles of a scene's layers and clicks (class and probabilities at a point)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .. import render
from .. import tiles as T
from ..errors import NotFoundError
from ..schemas import PointAnswer
from ..service import CACHED, ClientGone, Waiter, etag, matches
from ..state import ServerDep
from .scenes import check_layer

router = APIRouter(prefix="/api/scenes/{sid}")


@router.get("/tiles/{layer}/{z}/{x}/{y}.png", summary="A map tile (PNG, 256 px, EPSG:3857)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}, 304: {}})
async def tile(request: Request, sid: str, layer: str, z: int, x: int, y: int, server: ServerDep) -> Response:
    t0 = time.perf_counter()
    sc = server.registry.get(sid)
    check_layer(layer)
    if not T.valid_tile(z, x, y):
        raise NotFoundError(f"tile {z}/{x}/{y}: not in the XYZ pyramid (0 <= x, y < 2**z, z <= {T.MAX_ZOOM})")
    svc = server.service
    tag = etag(sc, layer, z, x, y)
    headers = {"Cache-Control": CACHED, "ETag": tag, "X-Geoseg-Cache": "hit"}
    if matches(request.headers.get("if-none-match"), tag):
        svc.not_modified += 1
        return Response(status_code=304, headers=headers)
    key = (sc.cache_key, layer, z, x, y)
    png = svc.tiles.get(key)  # a cached tile is answered on the event loop, never queued
    if png is None:
        waiter = Waiter(request)
        try:
            drawn = await svc.draw_tile(sc, layer, z, x, y, waiter)
        except ClientGone:
            return Response(status_code=204)  # nobody reads it
        finally:
            waiter.close()
        png = drawn.tile.png
        headers["X-Geoseg-Cache"] = "miss"
        if drawn.blocks:
            headers["X-Geoseg-Blocks"] = drawn.blocks
        if drawn.tile.partial:
            headers.update({"Cache-Control": "no-store", "X-Geoseg-Partial": "1"})
            del headers["ETag"]
        else:
            svc.tiles.put(key, png, len(png))
    headers["Server-Timing"] = f"tile;dur={(time.perf_counter() - t0) * 1000:.1f}"
    return Response(png, media_type="image/png", headers=headers)


@router.get("/point", summary="Class and probabilities at a point", response_model=PointAnswer,
            responses={404: {"description": "outside the scene"}})
def point(sid: str, server: ServerDep, lon: float = Query(..., ge=-180, le=180),
          lat: float = Query(..., ge=-90, le=90)) -> dict:
    sc = server.registry.get(sid)
    a = render.point(sc, server.engine, lon, lat)
    if not a.inside:
        raise NotFoundError(f"({lon}, {lat}): outside scene {sc.name}")
    names = server.model.contract.class_names
    return {
        "class": None if a.cls is None else names[a.cls], "class_index": a.cls,
        "probabilities": None if a.probs is None else {n: float(p) for n, p in zip(names, a.probs)},
        "nodata": a.cls is None, "row": a.row, "col": a.col, "lon": lon, "lat": lat, "scene": sc.id,
    }
