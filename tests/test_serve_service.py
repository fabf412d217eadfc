"""geoseg serve under load: HTTP caching of tiles (ETag, 304), work dropped
when its client has gone, blocks computed once across processes (the disk
cache's lock), and a finished job's rasters feeding the tile cache."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402
from helpers import hold_blocks, make_model, paint, write_scene  # noqa: E402
from PIL import Image  # noqa: E402
from test_serve import expected_tile, scene_tiles, wait_job  # noqa: E402

from geoseg.serve.app import create_app  # noqa: E402
from geoseg.serve.cache import CellBlock, DiskCache  # noqa: E402
from geoseg.serve.scenes import ServeOptions  # noqa: E402
from geoseg.serve.service import ClientGone, Waiter, matches  # noqa: E402
from geoseg.serve.work import PriorityPool  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("serve-svc-model") / "colour8.onnx", patch=8)


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    rng = np.random.default_rng(3)
    d = tmp_path_factory.mktemp("scenes")
    write_scene(d / "a.tif", paint(rng.integers(0, 4, size=(12, 14)), 8))
    return d


def make_client(sources, model, tmp_path, **kw):
    kw.setdefault("workers", 1)
    return TestClient(create_app([str(s) for s in sources], model, cache_dir=tmp_path / "cache",
                                 options=ServeOptions(block_px=32), **kw))


def first_tile(c):
    s = c.get("/api/scenes").json()["scenes"][0]
    z = s["native_zoom"]
    x, y = scene_tiles(s, z)[0]
    return s, f"/api/scenes/{s['id']}/tiles/classes/{z}/{x}/{y}.png", (z, x, y)


# --- HTTP caching --------------------------------------------------------------------------------
def test_etag_and_304(scenes_dir, model, tmp_path):
    with make_client([scenes_dir], model, tmp_path) as c:
        _, url, _ = first_tile(c)
        r1 = c.get(url)
        tag = r1.headers["etag"]
        assert r1.status_code == 200 and tag.startswith('"') and r1.headers["cache-control"] == "public, max-age=3600"
        r2 = c.get(url, headers={"If-None-Match": tag})
        assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == tag
        r3 = c.get(url, headers={"If-None-Match": '"other"'})
        assert r3.status_code == 200 and r3.content == r1.content and r3.headers["etag"] == tag
        assert c.get(url.replace("/classes/", "/confidence/")).headers["etag"] != tag
        assert c.get("/api/health").json()["cache"]["not_modified"] == 1


@pytest.mark.parametrize("header, ok", [('"a"', True), ('W/"a"', True), ('"b", "a"', True), ("*", True),
                                        ('"b"', False), ("", False), (None, False)])
def test_if_none_match(header, ok):
    assert matches(header, '"a"') is ok


# --- work nobody waits for is dropped ---------------------------------------------------------------
class GoneRequest:
    """A request whose client has disconnected."""

    async def receive(self):
        return {"type": "http.disconnect"}


def test_waiter_drops_the_drawing_of_a_gone_client():
    pool = PriorityPool(1, "test-gone")
    release = threading.Event()
    try:
        pool.submit(release.wait, 30, priority=0)  # the one thread is busy
        task = pool.submit(lambda: "drawn", priority=1)

        async def wait():
            w = Waiter(GoneRequest())  # type: ignore[arg-type]
            try:
                return await w.wait(task, pool)
            finally:
                w.close()

        with pytest.raises(ClientGone):
            asyncio.run(wait())
        assert task.future.cancelled() and pool.dropped == 1
    finally:
        release.set()
        pool.close()


def test_queued_block_dropped_when_no_request_waits(scenes_dir, model, tmp_path, monkeypatch):
    started, release = hold_blocks(monkeypatch)
    with make_client([scenes_dir], model, tmp_path, disk_cache=False) as c:
        srv = c.app.state.server
        sc = srv.registry.list()[0]
        eng = srv.engine  # one block thread
        _, first = eng.request(sc, [(0, 0)], priority=0)
        assert started.wait(30)
        _, queued = eng.request(sc, [(0, 1), (1, 0)], priority=1)
        _, joined = eng.request(sc, [(0, 1)], priority=2)  # a second request waits for (0, 1)
        eng.release(sc, queued)  # the first request's client has gone
        assert eng.counters.dropped == 1  # (1, 0): nobody waits; (0, 1): the second request does
        release.set()
        assert joined[(0, 1)].future.result(30).classes.shape == (4, 4)
        first[(0, 0)].future.result(30)
        assert eng.counters.computed == 2
        # a dropped block is computed again when it is asked for again
        assert eng.get(sc, [(1, 0)])[(1, 0)].classes.shape == (4, 4)
        assert eng.counters.computed == 3


# --- several processes share the disk cache ------------------------------------------------------------
CHILD = """
import json, sys
from geoseg.serve.app import create_app
from geoseg.serve.scenes import ServeOptions
app = create_app([sys.argv[1]], sys.argv[2], cache_dir=sys.argv[3], options=ServeOptions(block_px=32), workers=1)
srv = app.state.server
sc = srv.registry.list()[0]
srv.engine.get(sc, [(0, 0)])
print(json.dumps(srv.engine.counters.to_dict()))
srv.close()
"""


def test_a_block_is_computed_once_across_processes(scenes_dir, model, tmp_path):
    """Another process holds the block's lock (it is computing it): this one
    waits, then reads the block that process wrote instead of computing it."""
    import json

    with make_client([scenes_dir], model, tmp_path) as c:
        srv = c.app.state.server
        sc = srv.registry.list()[0]
        block, _ = srv.engine.get(sc, [(0, 0)])[(0, 0)], None
    disk = DiskCache(str(tmp_path / "cache" / "blocks"))
    disk_block = disk.load(sc.cache_key, 0, 0)
    assert disk_block is not None
    (tmp_path / "cache" / "blocks" / sc.cache_key / "0_0.npz").unlink()
    with disk.lock(sc.cache_key, 0):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(scenes_dir / "a.tif"), str(model),
                                  str(tmp_path / "cache")], stdout=subprocess.PIPE, text=True)
        time.sleep(3)  # the child is waiting for the lock
        assert child.poll() is None
        disk.save(sc.cache_key, 0, 0, CellBlock(disk_block.classes, disk_block.probs))
    out, _ = child.communicate(timeout=120)
    disk.close()
    counters = json.loads(out.strip().splitlines()[-1])
    assert counters["computed"] == 0 and counters["disk_hits"] == 1
    np.testing.assert_array_equal(block.classes, disk_block.classes)


# --- a finished job feeds the tile cache -------------------------------------------------------------------
def test_finished_job_feeds_the_tile_cache(scenes_dir, model, tmp_path):
    import rasterio

    with make_client([scenes_dir], model, tmp_path) as c:
        s, url, (z, x, y) = first_tile(c)
        jid = c.post("/api/jobs", json={"scene": s["id"]}).json()["id"]
        assert wait_job(c, jid)["status"] == "done"
        h = c.get("/api/health").json()["cache"]
        assert h["ingested"] == 12 and h["computed"] == 0  # every block of the 12 x 14 cell grid
        with rasterio.MemoryFile(c.get(f"/api/jobs/{jid}/outputs/classes").content) as mf, mf.open() as src:
            cls = src.read(1)
        for tx, ty in scene_tiles(s, z):
            r = c.get(f"/api/scenes/{s['id']}/tiles/classes/{z}/{tx}/{ty}.png")
            assert r.headers["x-geoseg-blocks"] == "cached"
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))),
                                          expected_tile(s, cls, z, tx, ty))
        assert c.get("/api/health").json()["cache"]["computed"] == 0


def test_a_gone_client_leaves_a_shared_block_to_the_others(scenes_dir, model, tmp_path, monkeypatch):
    """Two requests wait for one queued block; the first one's client goes:
    the block is still computed for the second (the gone request's waiting
    must not cancel the block's future)."""
    started, release = hold_blocks(monkeypatch)
    with make_client([scenes_dir], model, tmp_path, disk_cache=False) as c:
        eng = c.app.state.server.engine
        sc = c.app.state.server.registry.list()[0]
        eng.request(sc, [(0, 0)], priority=0)  # occupies the one block thread
        assert started.wait(30)
        _, first = eng.request(sc, [(0, 1)], priority=1)
        _, second = eng.request(sc, [(0, 1)], priority=2)

        async def both():
            gone = Waiter(GoneRequest())  # type: ignore[arg-type]
            with pytest.raises(ClientGone):
                await gone.wait(first[(0, 1)])
            gone.close()
            eng.release(sc, first)  # as the tile service does for a gone client
            release.set()
            return await Waiter(None).wait(second[(0, 1)])

        assert asyncio.run(both()).classes.shape == (4, 4)
        assert eng.counters.dropped == 0


def test_cached_tiles_answered_before_routing_keep_the_token_and_headers(scenes_dir, model, tmp_path):
    with make_client([scenes_dir], model, tmp_path, token="t0k") as c:
        auth = {"Authorization": "Bearer t0k"}
        sid = c.get("/api/scenes", headers=auth).json()["scenes"][0]["id"]
        s = c.get(f"/api/scenes/{sid}", headers=auth).json()
        z = s["native_zoom"]
        x, y = scene_tiles(s, z)[0]
        url = f"/api/scenes/{sid}/tiles/classes/{z}/{x}/{y}.png"
        first = c.get(url, headers=auth)  # drawn by the endpoint
        assert first.headers["x-geoseg-cache"] == "miss"
        assert c.get(url).status_code == 401  # a cached tile still needs the token
        hit = c.get(url, headers=auth)
        assert hit.status_code == 200 and hit.content == first.content
        assert {k: hit.headers[k] for k in ("content-type", "cache-control", "etag", "x-geoseg-cache")} == {
            "content-type": "image/png", "cache-control": "public, max-age=3600", "etag": first.headers["etag"],
            "x-geoseg-cache": "hit"}
        assert int(hit.headers["content-length"]) == len(first.content)
        head = c.head(url, headers=auth)
        assert head.status_code == 200 and head.content == b""
        assert c.get(url, headers={**auth, "If-None-Match": first.headers["etag"]}).status_code == 304
        # what the fast path does not know goes on to the endpoint and its errors
        assert c.get(url.replace("/classes/", "/nir/"), headers=auth).status_code == 404
        assert c.get(f"/api/scenes/{sid}/tiles/classes/{z}/99999999/0.png", headers=auth).status_code == 404


@pytest.mark.parametrize("block_px", [16, 40])
def test_rgb_tiles_from_source_blocks_equal_window_reads(scenes_dir, model, tmp_path, monkeypatch, block_px):
    """rgb tiles drawn from cached blocks of source pixels are byte for byte
    the tiles drawn from one window read each (blocks cut at the scene's edges
    and a nodata corner included)."""
    from geoseg.serve import render

    nodata_dir = tmp_path / "nd"
    nodata_dir.mkdir()
    img = paint(np.random.default_rng(9).integers(0, 4, size=(12, 14)), 8)
    img[:, 80:, :16] = 0
    write_scene(nodata_dir / "n.tif", img, nodata=0)
    with make_client([scenes_dir, nodata_dir], model, tmp_path) as c:
        for sc in c.app.state.server.registry.list():
            for z in (sc.native_zoom, sc.native_zoom + 1, sc.native_zoom + 2):
                for x, y in scene_tiles(sc.to_dict(), z):
                    monkeypatch.setattr(render, "SOURCE_BLOCK_PX", block_px)
                    blocks = render.rgb_tile(sc, z, x, y).png
                    monkeypatch.setattr(render, "SOURCE_BLOCK_PX", 0)
                    assert blocks == render.rgb_tile(sc, z, x, y).png, (sc.name, z, x, y)
