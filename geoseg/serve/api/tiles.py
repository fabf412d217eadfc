"""Map tiles of a scene's layers and clicks (class and probabilities at a point)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import render
from .. import tiles as T
from ..errors import NotFoundError
from ..schemas import PointAnswer
from ..state import ServerDep
from .scenes import check_layer

router = APIRouter(prefix="/api/scenes/{sid}")


@router.get("/tiles/{layer}/{z}/{x}/{y}.png", summary="A map tile (PNG, 256 px, EPSG:3857)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def tile(sid: str, layer: str, z: int, x: int, y: int, server: ServerDep) -> Response:
    sc = server.registry.get(sid)
    check_layer(layer)
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
