"""Tile latency of `geoseg serve` over HTTP on 127.0.0.1 (uvicorn in this
process, one client, requests one after another).

For each scene (the synthetic demo scene, 2048² px, and real scenes from
../shared/scenes when present), at the scene's native zoom:

- cold class tile: no block, no PNG cached (the caches are emptied before
  each request): the blocks under the tile are classified, then drawn;
- render only: blocks in memory, PNG not cached;
- cached class tile: the PNG cache;
- rgb tile (the scene itself), cold click (point query) and cached click.

Prints a markdown table (milliseconds).  The first request of each scene
(onnxruntime sessions start) is reported apart.

    python bench/serve_bench.py [--tiles 24] [--scene PATH ...]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("GEOSEG_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
REAL = ["naip_m_4709963_se_14_1_20200831.tif", "mosaic_cog1.tif"]


def start_server(app):
    import uvicorn

    from geoseg.cli.serve import free_port

    port = free_port("127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    return server, th, f"http://127.0.0.1:{port}"


def pct(v: list[float], q: float) -> float:
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def row(name: str, v: list[float]) -> str:
    return (f"| {name} | {len(v)} | {statistics.median(v):.1f} | {pct(v, 95):.1f} | {max(v):.1f} |")


def bench_scene(path: str, n_tiles: int, cache: str, label: str) -> list[str]:
    import httpx2

    from geoseg.serve import tiles as T
    from geoseg.serve.app import create_app

    app = create_app([path], None, cache_dir=cache, disk_cache=False, workers=2)
    srv = app.state.server
    sc = srv.registry.list()[0]
    server, th, base = start_server(app)
    out = []
    try:
        z = sc.native_zoom
        tiles = [t for t in T.tiles_covering(sc.bounds_3857, z)]
        random.Random(0).shuffle(tiles)
        tiles = tiles[:n_tiles]
        cold, render, cached, rgb, pt_cold, pt_hot = [], [], [], [], [], []
        with httpx2.Client(base_url=base, timeout=60) as c:
            def get(url):
                t0 = time.perf_counter()
                r = c.get(url)
                dt = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, (url, r.status_code, r.text[:200])
                return dt

            # first request: onnxruntime sessions start (reported apart)
            x, y = tiles[0]
            first = get(f"/api/scenes/{sc.id}/tiles/classes/{z}/{x}/{y}.png")
            for x, y in tiles:
                srv.engine.mem.clear()
                srv.tiles.clear()
                u = f"/api/scenes/{sc.id}/tiles/classes/{z}/{x}/{y}.png"
                cold.append(get(u))
                srv.tiles.clear()
                render.append(get(u))
                cached.append(get(u))
                rgb.append(get(f"/api/scenes/{sc.id}/tiles/rgb/{z}/{x}/{y}.png"))
            w, s, e, n = sc.bounds_lonlat
            rng = random.Random(1)
            for _ in range(n_tiles):
                lon, lat = rng.uniform(w, e), rng.uniform(s, n)
                srv.engine.mem.clear()
                try:
                    pt_cold.append(get(f"/api/scenes/{sc.id}/point?lon={lon}&lat={lat}"))
                    pt_hot.append(get(f"/api/scenes/{sc.id}/point?lon={lon}&lat={lat}"))
                except AssertionError:  # a corner of the lon/lat box outside a rotated footprint
                    pass
        g = sc.grid
        out.append(f"\n**{label}** ({sc.info.width} x {sc.info.height} px, {sc.info.dtype}, {sc.crs.to_string()}, "
                   f"patch {g.patch} px, block {sc.block_cells}x{sc.block_cells} cells, native zoom {z}; "
                   f"first request with session start: {first:.0f} ms)\n")
        out.append("| request | n | median ms | p95 ms | max ms |")
        out.append("|---|---|---|---|---|")
        out.append(row("class tile, cold (blocks computed)", cold))
        out.append(row("class tile, blocks cached (drawn)", render))
        out.append(row("class tile, cached PNG", cached))
        out.append(row("rgb tile", rgb))
        if pt_cold:
            out.append(row("click, cold (block computed)", pt_cold))
            out.append(row("click, cached", pt_hot))
    finally:
        server.should_exit = True
        th.join(10)
        srv.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=24, help="tiles (and clicks) per scene")
    ap.add_argument("--scene", action="append", default=None, help="scenes to measure (default: demo + shared)")
    ap.add_argument("--size", type=int, default=2048, help="side of the synthetic scene (px)")
    a = ap.parse_args()
    import platform

    from geoseg.demo import make_scene
    from geoseg.scheduling import available_cores

    lines = [f"geoseg serve tile latency, {available_cores()} cores ({platform.processor() or platform.machine()}), "
             "default model, HTTP on 127.0.0.1, one client"]
    with tempfile.TemporaryDirectory(prefix="geoseg-serve-bench-") as tmp:
        scenes = []
        if a.scene:
            scenes = [(p, os.path.basename(p)) for p in a.scene]
        else:
            demo = os.path.join(tmp, "demo_scene.tif")
            make_scene(demo, size=a.size)
            scenes.append((demo, f"synthetic demo scene {a.size}²"))
            for name in REAL:
                p = os.path.join(SHARED, "scenes", name)
                if os.path.exists(p):
                    scenes.append((p, name))
        for i, (p, label) in enumerate(scenes):
            lines += bench_scene(p, a.tiles, os.path.join(tmp, f"cache{i}"), label)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
