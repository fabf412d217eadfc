"""Answering tile requests under load.

A tile is answered in the first of these ways that applies:

1. ``304 Not Modified`` when the request's ``If-None-Match`` holds the tile's
   ETag (the ETag is known without drawing: it names what the tile depends on);
2. the rendered-tile cache (PNG bytes by scene, model and options, layer and
   z/x/y), on the event loop, never queued;
3. drawn on the bounded draw pool, after the blocks it needs have come from
   the block engine (memory, disk, or inference on the engine's own pool).
   The blocks are asked for as the request arrives, from a few projected
   points of the tile (:func:`geoseg.serve.render.tile_blocks`, a fraction
   of a millisecond on the loop), so inference starts while earlier tiles
   are still being drawn; the cells under every pixel are found when the
   tile is drawn.

Both pools serve requests in arrival order (where the blocks can only be
told from every pixel's cell, zoomed far out, those cells come before any
drawing).  A request whose client has
disconnected stops waiting: its queued drawing is dropped, and so is a
queued block no other request waits for.  A map client cancels the requests
of tiles that leave its view (Leaflet does), so the queues hold the tiles of
the views clients show now: that is the viewport's priority.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from .. import __version__
from ..errors import GeosegError
from . import render
from . import tiles as T
from .cache import LRU, CellBlock
from .engine import BlockEngine
from .render import Tile
from .scenes import ServedScene
from .work import PriorityPool, Task

CACHED = "public, max-age=3600"  # Cache-Control of a complete tile
CELLS_FIRST = 1e9  # seconds: finding a tile's cells (and blocks) goes before every drawing in the queue


class ClientGone(GeosegError, ConnectionError):
    """The client of a request disconnected before its answer was ready
    (caught by the tile endpoint: nobody is left to answer)."""


class Waiter:
    """Awaits pool work for one request, and notices when its client disconnects."""

    def __init__(self, request: Request | None) -> None:
        self._watch = asyncio.ensure_future(self._disconnected(request)) if request is not None else None

    @staticmethod
    async def _disconnected(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def wait(self, task: Task, pool: PriorityPool | None = None) -> Any:
        """The result of ``task``; :class:`ClientGone` (and the task released
        to ``pool``) when the client goes first."""
        fut = _bridge(task.future)
        if self._watch is None:
            return await fut
        done, _ = await asyncio.wait({fut, self._watch}, return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return fut.result()
        if pool is not None:
            pool.release(task)
        raise ClientGone

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()


def _bridge(cf: Future[Any]) -> asyncio.Future[Any]:
    """An asyncio future with the outcome of ``cf``.  Unlike
    ``asyncio.wrap_future``, cancelling it leaves ``cf`` alone: other
    requests may wait for the same block."""
    loop = asyncio.get_running_loop()
    af: asyncio.Future[Any] = loop.create_future()

    def copy(_: Future[Any]) -> None:
        if af.done():
            return
        if cf.cancelled():
            af.cancel()
        elif (exc := cf.exception()) is not None:
            af.set_exception(exc)
        else:
            af.set_result(cf.result())

    cf.add_done_callback(lambda _: loop.call_soon_threadsafe(copy, cf))
    return af


def etag(scene: ServedScene, layer: str, z: int, x: int, y: int) -> str:
    """The strong ETag of a complete tile: the version, the scene's cache key
    (file, model, options), the layer and the tile."""
    doc = f"{__version__}\0{scene.cache_key}\0{layer}\0{z}/{x}/{y}"
    return '"' + hashlib.sha256(doc.encode()).hexdigest()[:20] + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """True when an ``If-None-Match`` header names ``tag`` (weak or strong) or is ``*``."""
    if not if_none_match:
        return False
    given = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in given or tag in given


@dataclass
class Drawn:
    tile: Tile
    blocks: str  # "cached", "computed" (some blocks were not in memory) or "" (rgb, or no block)


class TileService:
    """Tiles of the served scenes: the rendered-tile cache, the draw pool and the block engine."""

    def __init__(self, engine: BlockEngine, tiles: LRU, draw_threads: int) -> None:
        self.engine, self.tiles = engine, tiles
        self.draw = PriorityPool(draw_threads, "geoseg-serve-draw")
        self.not_modified = 0

    def close(self) -> None:
        self.draw.close()

    async def draw_tile(self, scene: ServedScene, layer: str, z: int, x: int, y: int, waiter: Waiter) -> Drawn:
        """Draw a tile (not from the cache) off the event loop; see the module docstring."""
        prio = time.monotonic()  # first come, first served
        if layer == "rgb":
            return Drawn(await waiter.wait(self.draw.submit(render.rgb_tile, scene, z, x, y, priority=prio),
                                           self.draw), "")
        # the blocks under the tile are asked for at once (a few projected points, on the loop); where
        # only the cells under every pixel can tell, they are found first, before any drawing
        cells, keys = None, render.tile_blocks(scene, z, x, y)
        if keys is None or len(keys) > render.MAX_BLOCKS_PER_TILE:  # zoomed far out: the exact blocks decide
            cells = await waiter.wait(self.draw.submit(render.tile_cells, scene, z, x, y,
                                                       priority=prio - CELLS_FIRST), self.draw)
            keys = [] if cells is None else cells.keys
        blocks, state = None, ""
        if keys and len(keys) <= render.MAX_BLOCKS_PER_TILE:
            blocks, state = await self._blocks(scene, keys, prio, waiter)
        tile = await waiter.wait(self.draw.submit(render.cell_tile, scene, self.engine, layer, z, x, y,
                                                  cells=cells, blocks=blocks, priority=prio), self.draw)
        return Drawn(tile, state)

    async def _blocks(self, scene: ServedScene, keys: list[tuple[int, int]], prio: float, waiter: Waiter
                      ) -> tuple[dict[tuple[int, int], CellBlock], str]:
        """The blocks of ``keys`` (waiting for those not in memory), and
        "cached" when they all were in memory, else "computed"."""
        blocks, tasks = self.engine.request(scene, keys, prio)
        pending = dict(tasks)
        try:
            for key, task in tasks.items():
                blocks[key] = await waiter.wait(task)
                del pending[key]
        except BaseException:
            self.engine.release(scene, pending)
            raise
        return blocks, "computed" if tasks else "cached"


TILE_PATH = re.compile(r"^/api/scenes/([0-9a-f]+)/tiles/([a-z]+)/(\d+)/(\d+)/(\d+)\.png$")


class CachedTileMiddleware:
    """Answers ``GET`` of a tile that needs no work (``304`` on a matching
    ``If-None-Match``, or a PNG in the rendered-tile cache) before FastAPI's
    routing, with the headers the tile endpoint gives; everything else goes
    on to the application.  Under load the event loop is the one resource
    every request needs: a cached tile costs it a fraction of a routed
    request.  Sits inside the token check."""

    def __init__(self, app: Any, tiles: TileService, scenes: Callable[[], dict[str, ServedScene]]) -> None:
        self.app, self.tiles, self.scenes = app, tiles, scenes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or \
                not (m := TILE_PATH.match(scope["path"])) or not await self._answer(scope, m, send):
            await self.app(scope, receive, send)

    async def _answer(self, scope: dict[str, Any], m: re.Match[str], send: Any) -> bool:
        t0 = time.perf_counter()
        sid, layer = m.group(1), m.group(2)
        z, x, y = int(m.group(3)), int(m.group(4)), int(m.group(5))
        sc = self.scenes().get(sid)
        if sc is None or layer not in render.LAYERS or not T.valid_tile(z, x, y):
            return False  # the endpoint answers (and says what is wrong)
        tag = etag(sc, layer, z, x, y)
        inm = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None)
        if matches(inm, tag):
            self.tiles.not_modified += 1
            png, status = b"", 304
        else:
            cached = self.tiles.tiles.get((sc.cache_key, layer, z, x, y))
            if cached is None:
                return False
            png, status = cached, 200
        headers = [(b"cache-control", CACHED.encode()), (b"etag", tag.encode()), (b"x-geoseg-cache", b"hit"),
                   (b"server-timing", f"tile;dur={(time.perf_counter() - t0) * 1000:.1f}".encode())]
        if status == 200:
            headers += [(b"content-length", str(len(png)).encode()), (b"content-type", b"image/png")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else png})
        return True
