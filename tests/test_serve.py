"""geoseg serve: the API on tiny synthetic scenes and the hand-built colour
model (Starlette's TestClient): tiles identical to the batch class raster,
clicks, caches, jobs (progress, cancel, outputs) and every safety rule."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
import pytest
import rasterio

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402
from helpers import CLASS_NAMES, hold_blocks, make_model, paint, write_scene  # noqa: E402
from PIL import Image  # noqa: E402
from pyproj import Transformer  # noqa: E402

from geoseg.serve import tiles as T  # noqa: E402
from geoseg.serve.app import create_app  # noqa: E402
from geoseg.serve.engine import pipeline  # noqa: E402
from geoseg.serve.scenes import ServeOptions  # noqa: E402

BLOCK_PX = 32  # 4 x 4 cells of 8 px: a 12 x 14 cell scene has 12 blocks


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("serve-model") / "colour8.onnx", patch=8)


@pytest.fixture(scope="module")
def truth12():
    rng = np.random.default_rng(7)
    t = rng.integers(0, 4, size=(12, 14))
    t[0, :4] = [0, 1, 2, 3]
    return t


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory, truth12):
    d = tmp_path_factory.mktemp("scenes")
    img = paint(truth12, 8)
    img[:, 80:, :16] = 0  # a nodata corner (bottom-left 2 x 2 cells)
    write_scene(d / "a.tif", img, nodata=0)
    return d


@pytest.fixture(scope="module")
def batch_classes(tmp_path_factory, scenes_dir, model):
    """The batch class raster and probabilities of a.tif (geoseg classify)."""
    p = pipeline()
    out = tmp_path_factory.mktemp("batch")
    from geoseg.scheduling import Runner

    with Runner("synchronous") as r:
        res = p.classify_scene(str(scenes_dir / "a.tif"), out, model,
                               p.ClassifyOptions(polygons=False, quicklook=False), r)
    with rasterio.open(res.outputs["classes"]) as src:
        cls = src.read(1)
    with rasterio.open(res.outputs["probs"]) as src:
        probs = src.read()
    return cls, probs


def make_client(sources, model, tmp_path, **kw):
    kw.setdefault("options", ServeOptions(block_px=BLOCK_PX))
    kw.setdefault("cache_dir", tmp_path / "cache")
    kw.setdefault("workers", 2)
    return TestClient(create_app([str(s) for s in sources], model, **kw))


@pytest.fixture
def client(scenes_dir, model, tmp_path):
    with make_client([scenes_dir], model, tmp_path) as c:
        yield c


def scene_of(c) -> dict:
    scenes = c.get("/api/scenes").json()["scenes"]
    return next(s for s in scenes if s["name"] == "a")


def expected_tile(scene: dict, cls: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
    """The batch class raster sampled at every tile pixel centre, projected
    exactly (one PROJ call per pixel; independent of the server's mapping)."""
    tr = Transformer.from_crs(3857, scene["crs"], always_xy=True)
    a, _, c, _, e, f = scene["grid"]["transform"]
    ta = T.tile_transform(z, x, y)
    jj, ii = np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5)
    sx, sy = tr.transform((ta.c + ta.a * jj).ravel(), (ta.f + ta.e * ii).ravel())
    cf = ((np.asarray(sx) - c) / a).reshape(256, 256)
    rf = ((np.asarray(sy) - f) / e).reshape(256, 256)
    rows, cols = cls.shape
    inside = (cf >= 0) & (rf >= 0) & (cf < cols) & (rf < rows)
    r = np.where(inside, np.floor(rf), 0).astype(int)
    k = np.where(inside, np.floor(cf), 0).astype(int)
    return np.where(inside, cls[r, k], 255).astype(np.uint8)


def scene_tiles(scene: dict, z: int) -> list[tuple[int, int]]:
    w, s, e, n = scene["bounds"]
    x0, y0 = T.lonlat_to_mercator(w, s)
    x1, y1 = T.lonlat_to_mercator(e, n)
    return T.tiles_covering((x0, y0, x1, y1), z)


def get_tile(c, sid, layer, z, x, y):
    r = c.get(f"/api/scenes/{sid}/tiles/{layer}/{z}/{x}/{y}.png")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return r, Image.open(io.BytesIO(r.content))


# --- tiles agree with the batch class raster --------------------------------------------------------
def test_model_and_scenes(client):
    m = client.get("/api/model").json()
    assert [c["name"] for c in m["classes"]] == list(CLASS_NAMES)
    assert [c["color"] for c in m["classes"]] == ["#f0f0f0", "#e3c16f", "#2e8b3a", "#1f5fbf"]
    assert m["patch_size"] == 8 and m["stride"] == 8
    s = scene_of(client)
    assert s["crs"] == "EPSG:32633"
    assert s["grid"]["cells"] == [12, 14] and s["grid"]["block_cells"] == 4
    assert s["grid"]["transform"] == [80.0, 0.0, 500000.0, 0.0, -80.0, 6000000.0]
    # bounds: the scene's corners (500000, 6000000) .. (501120, 5999040) in lon/lat
    tr = Transformer.from_crs(32633, 4326, always_xy=True)
    lon0, lat1 = tr.transform(500000.0, 6000000.0)
    assert s["bounds"][0] == pytest.approx(lon0, abs=1e-9)
    assert s["bounds"][3] == pytest.approx(lat1, abs=1e-4)
    assert s["native_zoom"] == 14
    tj = client.get(f"/api/scenes/{s['id']}/tilejson.json", params={"layer": "classes"}).json()
    assert tj["tilejson"] == "3.0.0"
    assert tj["tiles"][0].endswith(f"/api/scenes/{s['id']}/tiles/classes/{{z}}/{{x}}/{{y}}.png")
    assert tj["center"][2] == 14 and tj["bounds"] == s["bounds"]


@pytest.mark.parametrize("dz", [0, 2])
def test_class_tiles_equal_batch_raster(client, batch_classes, dz):
    cls, _ = batch_classes
    s = scene_of(client)
    z = s["native_zoom"] + dz
    tiles = scene_tiles(s, z)
    assert len(tiles) >= 2
    seen = set()
    for x, y in tiles:
        _, img = get_tile(client, s["id"], "classes", z, x, y)
        assert img.mode == "P"
        got = np.asarray(img)
        np.testing.assert_array_equal(got, expected_tile(s, cls, z, x, y))
        seen |= set(np.unique(got).tolist())
    assert seen == {0, 1, 2, 3, 255}  # every class, and nodata (transparent) outside and in the corner
    # nodata cells of the batch raster (bottom-left corner) are nodata in the tiles too
    assert cls[10, 0] == 255 and cls[11, 1] == 255


def test_rgb_and_confidence_tiles(client):
    s = scene_of(client)
    z = s["native_zoom"]
    (x, y) = scene_tiles(s, z)[0]
    _, img = get_tile(client, s["id"], "rgb", z, x, y)
    a = np.asarray(img.convert("RGBA"))
    assert a.shape == (256, 256, 4)
    assert (a[..., 3] == 255).any() and (a[..., 3] == 0).any()  # the scene, and transparent around it
    _, img = get_tile(client, s["id"], "confidence", z, x, y)
    a = np.asarray(img.convert("RGBA"))
    # the colour model is sure of every painted patch: opaque pixels are green (p = 1)
    opaque = a[..., 3] == 255
    assert opaque.any()
    assert (a[opaque][:, :3] == [26, 152, 80]).all()


def test_tile_outside_scene_is_transparent(client):
    s = scene_of(client)
    r, img = get_tile(client, s["id"], "classes", 14, 0, 0)
    assert (np.asarray(img.convert("RGBA"))[..., 3] == 0).all()
    assert client.get("/api/health").json()["cache"]["computed"] == 0


def test_zoomed_out_tile_draws_only_cached_blocks(scenes_dir, model, tmp_path, batch_classes):
    from geoseg.serve import render

    cls, _ = batch_classes
    old = render.MAX_BLOCKS_PER_TILE
    render.MAX_BLOCKS_PER_TILE = 2  # the scene has 12 blocks: a tile showing all of it is "zoomed out"
    try:
        with make_client([scenes_dir], model, tmp_path) as c:
            s = scene_of(c)
            z = s["native_zoom"] - 3
            (x, y), = scene_tiles(s, z)
            r, img = get_tile(c, s["id"], "classes", z, x, y)
            assert r.headers["x-geoseg-partial"] == "1" and r.headers["cache-control"] == "no-store"
            assert (np.asarray(img) == 255).all()  # nothing cached yet: nothing drawn
            assert c.get("/api/health").json()["cache"]["computed"] == 0
            for br in range(3):  # a click computes its block: click once in each of the 12 blocks
                for bc in range(4):
                    lon, lat = cell_lonlat(4 * br, 4 * bc)
                    assert c.get(f"/api/scenes/{s['id']}/point", params={"lon": lon, "lat": lat}).status_code == 200
            assert c.get("/api/health").json()["cache"]["computed"] == 12
            r, img = get_tile(c, s["id"], "classes", z, x, y)
            assert "x-geoseg-partial" not in r.headers
            np.testing.assert_array_equal(np.asarray(img), expected_tile(s, cls, z, x, y))
    finally:
        render.MAX_BLOCKS_PER_TILE = old


# --- caches -------------------------------------------------------------------------------------------
def test_cache_hits_memory_and_disk(scenes_dir, model, tmp_path, batch_classes):
    cls, _ = batch_classes
    with make_client([scenes_dir], model, tmp_path) as c:
        s = scene_of(c)
        z = s["native_zoom"]
        (x, y) = scene_tiles(s, z)[0]
        r1, img1 = get_tile(c, s["id"], "classes", z, x, y)
        h = c.get("/api/health").json()["cache"]
        n = h["computed"]
        assert r1.headers["x-geoseg-cache"] == "miss" and n >= 1 and h["disk_hits"] == 0
        r2, img2 = get_tile(c, s["id"], "classes", z, x, y)  # the same tile: the PNG cache
        assert r2.headers["x-geoseg-cache"] == "hit" and r2.content == r1.content
        # the confidence layer of the same tile: the same blocks, from memory
        get_tile(c, s["id"], "confidence", z, x, y)
        h = c.get("/api/health").json()["cache"]
        assert h["computed"] == n and h["memory_hits"] == n
    # a new server on the same cache folder reads the blocks from disk
    with make_client([scenes_dir], model, tmp_path) as c:
        r3, img3 = get_tile(c, s["id"], "classes", z, x, y)
        h = c.get("/api/health").json()["cache"]
        assert h["computed"] == 0 and h["disk_hits"] == n
        np.testing.assert_array_equal(np.asarray(img3), np.asarray(img1))
        np.testing.assert_array_equal(np.asarray(img3), expected_tile(s, cls, z, x, y))


def test_concurrent_requests_compute_each_block_once(scenes_dir, model, tmp_path):
    with make_client([scenes_dir], model, tmp_path, disk_cache=False) as c:
        s = scene_of(c)
        z = s["native_zoom"] + 1
        tiles = scene_tiles(s, z)
        errors = []

        def fetch(x, y):
            try:
                for layer in ("classes", "confidence"):
                    get_tile(c, s["id"], layer, z, x, y)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=t) for t in tiles * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        h = c.get("/api/health").json()["cache"]
        assert h["computed"] == 12  # every block of the scene, once
        assert h["patches"] == 12 * 14


# --- clicks -------------------------------------------------------------------------------------------
def cell_lonlat(row, col):
    x, y = 500000.0 + 80 * (col + 0.5), 6000000.0 - 80 * (row + 0.5)
    return Transformer.from_crs(32633, 4326, always_xy=True).transform(x, y)


def test_point_probabilities_equal_batch(client, batch_classes, truth12):
    cls, probs = batch_classes
    s = scene_of(client)
    for row, col in [(0, 0), (0, 3), (5, 7), (11, 13)]:
        lon, lat = cell_lonlat(row, col)
        d = client.get(f"/api/scenes/{s['id']}/point", params={"lon": lon, "lat": lat}).json()
        assert (d["row"], d["col"]) == (row, col)
        assert d["class"] == CLASS_NAMES[truth12[row, col]] == CLASS_NAMES[cls[row, col]]
        assert list(d["probabilities"]) == list(CLASS_NAMES)
        np.testing.assert_array_equal(np.float32(list(d["probabilities"].values())), probs[:, row, col])
    lon, lat = cell_lonlat(11, 0)  # the nodata corner
    d = client.get(f"/api/scenes/{s['id']}/point", params={"lon": lon, "lat": lat}).json()
    assert d["nodata"] is True and d["class"] is None and d["probabilities"] is None


def test_point_outside_is_404(client):
    s = scene_of(client)
    r = client.get(f"/api/scenes/{s['id']}/point", params={"lon": 0.0, "lat": 0.0})
    assert r.status_code == 404
    assert "outside scene a" in r.json()["error"]


# --- jobs ---------------------------------------------------------------------------------------------
def wait_job(c, jid, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        d = c.get(f"/api/jobs/{jid}").json()
        if d["status"] in ("done", "failed", "cancelled"):
            return d
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not finish: {d}")


def test_job_runs_reports_progress_and_serves_outputs(client, batch_classes):
    cls, _ = batch_classes
    s = scene_of(client)
    r = client.post("/api/jobs", json={"scene": s["id"]})
    assert r.status_code == 201
    jid = r.json()["id"]
    ev = client.get(f"/api/jobs/{jid}/events")  # streams until the job ends
    assert ev.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in ev.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["status"] == "done"
    assert [e["done"] for e in events] == sorted(e["done"] for e in events)  # progress only grows
    d = wait_job(client, jid)
    assert d["status"] == "done" and d["done"] == d["total"] == 12 * 14 and d["progress"] == 1.0
    assert d["outputs"] == ["classes", "polygons", "probs", "quicklook", "stats"]
    out = client.get(f"/api/jobs/{jid}/outputs/classes")
    assert out.status_code == 200 and 'filename="a_classes.tif"' in out.headers["content-disposition"]
    with rasterio.MemoryFile(out.content) as mf, mf.open() as src:
        np.testing.assert_array_equal(src.read(1), cls)
    stats = client.get(f"/api/jobs/{jid}/outputs/stats").json()
    assert sum(c["cells"] for c in stats["classes"]) == int((cls != 255).sum())
    ql = client.get(f"/api/jobs/{jid}/outputs/quicklook")
    assert ql.headers["content-type"] == "image/png" and ql.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/jobs/{jid}/outputs/polygons").status_code == 200
    bad = client.get(f"/api/jobs/{jid}/outputs/everything")
    assert bad.status_code == 404 and "unknown" in bad.json()["error"]


def test_job_cancel_leaves_no_output(client, monkeypatch):
    """The first block waits until the job is cancelled: the job ends
    cancelled and its folder holds no file (no half-written output)."""
    started, release = hold_blocks(monkeypatch)
    s = scene_of(client)
    jid = client.post("/api/jobs", json={"scene": s["id"]}).json()["id"]
    assert started.wait(30)
    d = client.get(f"/api/jobs/{jid}").json()
    assert d["status"] == "running" and d["total"] == 12 * 14 and d["done"] == 0
    assert client.delete(f"/api/jobs/{jid}").status_code == 200
    release.set()
    d = wait_job(client, jid)
    assert d["status"] == "cancelled" and d["outputs"] == []
    folder = os.path.join(client.app.state.server.jobs.root, jid)
    assert os.listdir(folder) == []
    r = client.get(f"/api/jobs/{jid}/outputs/classes")
    assert r.status_code == 409 and "cancelled" in r.json()["error"]


def test_job_failure_leaves_no_output(tmp_path, model, truth12):
    d = tmp_path / "scenes"
    d.mkdir()
    path = write_scene(d / "b.tif", paint(truth12, 8))
    with make_client([d], model, tmp_path) as c:
        sid = c.get("/api/scenes").json()["scenes"][0]["id"]
        with open(path, "r+b") as f:  # the scene is damaged after it was opened
            f.truncate(2000)
        jid = c.post("/api/jobs", json={"scene": sid}).json()["id"]
        j = wait_job(c, jid)
        assert j["status"] == "failed" and "b.tif" in j["error"]
        assert os.listdir(os.path.join(c.app.state.server.jobs.root, jid)) == []


def test_job_unknown_scene_and_job(client):
    r = client.post("/api/jobs", json={"scene": "nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = client.post("/api/jobs", json={"wrong": 1})
    assert r.status_code == 422 and "scene" in r.json()["error"]
    assert client.get("/api/jobs/zzz").status_code == 404
    assert client.delete("/api/jobs/zzz").json()["error"] == "job 'zzz': no such job"


# --- safety ---------------------------------------------------------------------------------------------
@pytest.fixture
def roots(tmp_path, truth12):
    """A root folder with a scene, a scene outside it, symlinks in and out, a bad file."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_scene(root / "sub" / "in.tif", paint(truth12, 8))
    write_scene(outside / "secret.tif", paint(truth12, 8))
    os.symlink(outside / "secret.tif", root / "link_out.tif")
    os.symlink(root / "sub" / "in.tif", root / "link_in.tif")
    (root / "sub" / "bad.tif").write_text("not a GeoTIFF")
    return root, outside


def test_add_scene_under_root(roots, model, tmp_path):
    root, _ = roots
    with make_client([root], model, tmp_path) as c:
        d = c.get("/api/scenes").json()
        # the root's own *.tif: link_in.tif is sub/in.tif; link_out.tif leads out of the root: refused
        assert [s["name"] for s in d["scenes"]] == ["in"]
        assert len(d["errors"]) == 1 and "link_out.tif: outside the folders" in d["errors"][0]
        r = c.post("/api/scenes", json={"path": "sub/in.tif"})
        assert r.status_code == 201 and r.json()["name"] == "in"
        r2 = c.post("/api/scenes", json={"path": str(root / "sub" / "in.tif")})
        assert r2.json()["id"] == r.json()["id"]  # the same scene, not served twice
        assert c.post("/api/scenes", json={"path": "link_in.tif"}).status_code == 201  # symlink inside
        assert [s["name"] for s in c.get("/api/scenes").json()["scenes"]] == ["in"]


@pytest.mark.parametrize("path", ["../outside/secret.tif", "sub/../../outside/secret.tif", "link_out.tif",
                                  "/etc/passwd", "OUTSIDE"])
def test_paths_out_of_roots_are_refused(roots, model, tmp_path, path):
    root, outside = roots
    path = str(outside / "secret.tif") if path == "OUTSIDE" else path
    with make_client([root], model, tmp_path) as c:
        r = c.post("/api/scenes", json={"path": path})
        assert r.status_code == 403
        assert "outside the folders this server serves" in r.json()["error"]
        assert [s["name"] for s in c.get("/api/scenes").json()["scenes"]] == ["in"]  # not secret


def test_bad_and_missing_scenes_are_json_errors(roots, model, tmp_path):
    root, _ = roots
    with make_client([root], model, tmp_path) as c:
        r = c.post("/api/scenes", json={"path": "sub/bad.tif"})
        assert r.status_code == 422
        assert "bad.tif" in r.json()["error"] and "GeoTIFF" in r.json()["error"]
        r = c.post("/api/scenes", json={"path": "sub/missing.tif"})
        assert r.status_code == 404 and "file not found" in r.json()["error"]
        r = c.post("/api/scenes", json={"nothing": 1})
        assert r.status_code == 422 and '{"path": "..."}' in r.json()["error"]


def test_bad_scene_at_start_is_listed_not_fatal(roots, model, tmp_path):
    root, _ = roots
    with make_client([root / "sub"], model, tmp_path) as c:
        d = c.get("/api/scenes").json()
        assert [s["name"] for s in d["scenes"]] == ["in"]
        assert len(d["errors"]) == 1 and "bad.tif" in d["errors"][0]


def upload(c, name, data: bytes):
    return c.post("/api/uploads", files={"file": (name, data, "image/tiff")})


def test_upload(scenes_dir, model, tmp_path, batch_classes):
    cls, _ = batch_classes
    data = (scenes_dir / "a.tif").read_bytes()
    with make_client([], model, tmp_path) as c:
        r = upload(c, "../../evil name.tif", data)
        assert r.status_code == 201, r.text
        s = r.json()
        assert s["name"] == "evil_name" and s["uploaded"] is True
        sc = c.app.state.server.registry.get(s["id"])
        assert sc.path.startswith(str(tmp_path / "cache" / "uploads"))
        z = s["native_zoom"]
        x, y = scene_tiles(s, z)[0]
        _, img = get_tile(c, s["id"], "classes", z, x, y)
        np.testing.assert_array_equal(np.asarray(img), expected_tile(s, cls, z, x, y))
        # degrees far beyond the Earth (a geotransform meant for metres): a 422, not a 500 from the web map's maths
        bad = tmp_path / "deg.tif"
        with rasterio.open(scenes_dir / "a.tif") as src:
            prof = src.profile | {"crs": "EPSG:4326", "transform": rasterio.Affine(10, 0, -180, 0, -10, 90)}
            with rasterio.open(bad, "w", **prof) as dst:
                dst.write(src.read())
        r = upload(c, "deg.tif", bad.read_bytes())
        assert r.status_code == 422 and r.json()["error"].startswith("deg.tif: in degrees"), r.text
        assert len(list((tmp_path / "cache" / "uploads").iterdir())) == 1  # the good upload only


def test_upload_too_large_and_not_a_tiff(scenes_dir, model, tmp_path):
    data = (scenes_dir / "a.tif").read_bytes()
    assert len(data) > 20_000
    with make_client([], model, tmp_path, upload_limit_mb=0.01) as c:  # 10 kB
        r = upload(c, "a.tif", data)
        assert r.status_code == 413 and "upload limit of 0.01 MB" in r.json()["error"]
        r = upload(c, "my junk.tif", b"x" * 5000)  # named as the user sent it, not as the cache holds it
        assert r.status_code == 422 and r.json()["error"].startswith("my junk.tif: not a readable raster")

        r = c.post("/api/uploads", content=b"abc", headers={"content-type": "text/plain"})
        assert r.status_code == 422 and "multipart/form-data" in r.json()["error"]
        up = tmp_path / "cache" / "uploads"
        assert list(up.iterdir()) == []  # nothing left behind
        assert c.get("/api/scenes").json()["scenes"] == []


def test_url_download(scenes_dir, model, tmp_path):
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(scenes_dir))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/a.tif"
        with make_client([], model, tmp_path) as c:
            r = c.post("/api/scenes", json={"url": url})
            assert r.status_code == 201 and r.json()["name"] == "a" and r.json()["uploaded"] is True
            r = c.post("/api/scenes", json={"url": url.replace("a.tif", "none.tif")})
            assert r.status_code == 422 and "HTTP 404" in r.json()["error"]
            r = c.post("/api/scenes", json={"url": "file:///etc/passwd"})
            assert r.status_code == 403 and "only http:// and https://" in r.json()["error"]
        with make_client([], model, tmp_path, upload_limit_mb=0.01) as c:
            r = c.post("/api/scenes", json={"url": url})
            assert r.status_code == 413
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_token(scenes_dir, model, tmp_path):
    with make_client([scenes_dir], model, tmp_path, token="s3cret") as c:
        assert c.get("/api/health").status_code == 200  # liveness stays open
        r = c.get("/api/scenes")
        assert r.status_code == 401 and "token" in r.json()["error"]
        assert c.get("/api/scenes", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/scenes", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        s = c.get("/api/scenes", params={"token": "s3cret"}).json()["scenes"][0]
        tj = c.get(f"/api/scenes/{s['id']}/tilejson.json", params={"token": "s3cret"}).json()
        assert tj["tiles"][0].endswith(".png?token=s3cret")
        assert c.get("/").status_code == 200  # the page itself holds no data


def test_malformed_requests_get_json_errors(client):
    s = scene_of(client)
    cases = [
        (client.get(f"/api/scenes/{s['id']}/tiles/classes/14/99999/0.png"), 404, "not in the XYZ pyramid"),
        (client.get(f"/api/scenes/{s['id']}/tiles/nir/14/0/0.png"), 404, "layer 'nir'"),
        (client.get(f"/api/scenes/{s['id']}/tiles/classes/a/0/0.png"), 422, "invalid request"),
        (client.get(f"/api/scenes/{s['id']}/point", params={"lon": "east", "lat": 1}), 422, "lon"),
        (client.get(f"/api/scenes/{s['id']}/point", params={"lon": 500, "lat": 1}), 422, "lon"),
        (client.get("/api/scenes/nope/tilejson.json"), 404, "no such scene"),
        (client.post("/api/scenes", content=b"{not json", headers={"content-type": "application/json"}), 400,
         "POST /api/scenes: the body is not valid JSON; expected a JSON object"),
        (client.get("/api/nothing"), 404, "no such endpoint"),
        (client.put("/api/scenes"), 405, "PUT /api/scenes: not allowed; expected GET or POST"),
    ]
    for r, status, text in cases:
        assert r.status_code == status, (r.request.url, r.text)
        assert r.headers["content-type"] == "application/json"
        assert text in r.json()["error"], r.json()
        assert "Traceback" not in r.text
        assert r.status_code != 405 or r.headers["allow"] == "GET, POST"


def test_unexpected_error_is_json_without_traceback(scenes_dir, model, tmp_path, monkeypatch):
    from geoseg.serve import render

    def boom(*a, **k):
        raise RuntimeError("disk on fire\nTraceback (most recent call last): secret")

    monkeypatch.setattr(render, "cell_tile", boom)
    app = create_app([str(scenes_dir)], model, cache_dir=tmp_path / "c", options=ServeOptions(block_px=BLOCK_PX))
    with TestClient(app, raise_server_exceptions=False) as c:
        s = scene_of(c)
        r = c.get(f"/api/scenes/{s['id']}/tiles/classes/14/0/0.png")
        assert r.status_code == 500
        assert r.json() == {"error": "internal error (RuntimeError: disk on fire); see the server log"}


def test_openapi_documents_the_pinned_paths(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ["/api/health", "/api/model", "/api/scenes", "/api/uploads", "/api/scenes/{sid}/tilejson.json",
              "/api/scenes/{sid}/tiles/{layer}/{z}/{x}/{y}.png", "/api/scenes/{sid}/point", "/api/jobs",
              "/api/jobs/{jid}", "/api/jobs/{jid}/events", "/api/jobs/{jid}/outputs/{kind}"]:
        assert p in paths, p
    assert "delete" in paths["/api/jobs/{jid}"] and "post" in paths["/api/scenes"]


def test_page_and_vendored_leaflet(client):
    html = client.get("/").text
    assert "static/vendor/leaflet/leaflet.js" in html and "http" not in html.split("<body>")[0].replace(
        'name="viewport"', "")
    js = client.get("/static/vendor/leaflet/leaflet.js")
    assert js.status_code == 200 and b"Leaflet" in js.content[:400]
    lic = client.get("/static/vendor/leaflet/LICENSE").text
    assert "Volodymyr Agafonkin" in lic


# --- the command --------------------------------------------------------------------------------------
def test_cli_refuses_public_host_without_token():
    from click.testing import CliRunner

    from geoseg.cli.serve import is_loopback, serve

    r = CliRunner().invoke(serve, ["--host", "0.0.0.0"])
    assert r.exit_code == 1
    assert "needs --token" in r.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.3.2.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")


def test_rgb_tile_of_a_blue_green_red_nir_model_shows_red_as_red(tmp_path):
    """A reflectance model reads blue, green, red, nir: the rgb layer still
    draws the red band in the red channel (it drew blue there)."""
    d = tmp_path / "ms"
    d.mkdir()
    img = np.zeros((4, 64, 64), np.float32)
    img[0], img[1], img[2], img[3] = 0.02, 0.10, 0.40, 0.30  # blue dark, red bright
    img[:, :, :8] = [[[0.40]], [[0.10]], [[0.02]], [[0.30]]]  # a left strip the other way round (a stretch needs a range)
    write_scene(d / "a.tif", img, descriptions=["blue", "green", "red", "nir"])
    ms_model = make_model(tmp_path / "ms.onnx", patch=8, reflectance=True)
    with make_client([d], ms_model, tmp_path) as c:
        s = scene_of(c)
        z = s["native_zoom"]
        reds, blues = [], []
        for x, y in scene_tiles(s, z):
            _, img_t = get_tile(c, s["id"], "rgb", z, x, y)
            a = np.asarray(img_t.convert("RGBA")).astype(int)
            opaque = a[..., 3] == 255
            reds.append(a[opaque][:, 0])
            blues.append(a[opaque][:, 2])
    red, blue = np.concatenate(reds), np.concatenate(blues)
    assert red.size and (red > blue).mean() > 0.8  # most of the scene is red-bright


def test_health_reports_the_event_loop_lag(scenes_dir, model, tmp_path):
    with make_client([scenes_dir], model, tmp_path) as c:
        time.sleep(0.1)  # the loop samples its lag every 20 ms
        lag = c.get("/api/health").json()["event_loop_lag"]
    assert lag["samples"] >= 1 and 0 <= lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]


def test_class_tile_given_too_few_blocks_fetches_the_rest(scenes_dir, model, tmp_path):
    from geoseg.serve import render

    with make_client([scenes_dir], model, tmp_path) as c:
        s = scene_of(c)
        z = s["native_zoom"]
        x, y = scene_tiles(s, z)[0]
        server = c.app.state.server
        sc = server.registry.get(s["id"])
        keys = render.tile_blocks(sc, z, x, y)
        assert keys  # a superset of the tile's blocks
        full = render.cell_tile(sc, server.engine, "classes", z, x, y, blocks=server.engine.get(sc, keys))
        short = render.cell_tile(sc, server.engine, "classes", z, x, y, blocks={})
        assert short.png == full.png and not short.partial
