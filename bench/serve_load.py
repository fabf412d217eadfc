"""A bounded load test of `geoseg serve` on 127.0.0.1: N clients pan a map
for a while; every error is counted; latency percentiles are printed as a
markdown table.

The server runs in a child process (`geoseg serve` on the synthetic demo
scene with the default model, a fresh cache): the clients (asyncio +
a lean HTTP/1.1 client in this process, 6 keep-alive connections a
client like a browser) do not share its interpreter.  Each client starts
at a random place, shows a 4 x 3 tile viewport (the rgb and classes layers,
at most 6 requests at once like a browser) and pans one tile in a random
direction, now and then zooming in or out, ``--pause`` seconds after each
viewport has loaded (a person drags the map about once a second).

    python bench/serve_load.py [--clients 50] [--seconds 30] [--pause 1] [--size 4096]
    python bench/serve_load.py --compare c583fc0 [--server-args "--workers 2"]

``--compare REV`` runs the load twice in one run, on the same scene: first
against the server of commit REV (its ``geoseg/`` extracted with ``git
archive`` and put first on ``PYTHONPATH``), then against this tree's; each
server starts on a fresh cache.  ``--server-args`` go to this tree's server
only.  Requests are grouped by layer and by what the server did
(``X-Geoseg-Cache``: the PNG cache hit or not; ``X-Geoseg-Blocks``, where the
server sends it: the blocks were all cached or some were computed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit


def pct(v: list[float], q: float) -> float:
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))] if v else float("nan")


async def client(i: int, base: str, scene: dict, until: float, lat: dict, errors: list,
                 pause: float, browser: bool = False) -> None:
    from geoseg.serve import tiles as T

    rng = random.Random(i)
    w, s, e, n = scene["bounds"]
    nz = scene["native_zoom"]
    z = nz
    http = Browser(base, connects=lat.setdefault("TCP connect of a new connection", []))  # 6, like a browser
    x0, y0 = T.lonlat_to_mercator(w, s)
    x1, y1 = T.lonlat_to_mercator(e, n)

    def extent(z):
        t = T.tiles_covering((x0, y0, x1, y1), z)
        return min(a for a, _ in t), max(a for a, _ in t), min(b for _, b in t), max(b for _, b in t)

    ax0, ax1, ay0, ay1 = extent(z)
    cx, cy = rng.randint(ax0, ax1), rng.randint(ay0, ay1)

    async def fetch(layer, tx, ty, tz=None):
        url = f"{base}/api/scenes/{scene['id']}/tiles/{layer}/{z if tz is None else tz}/{tx}/{ty}.png"
        try:
            r = await http.get(url)
            dt = r.elapsed_ms  # from a free connection to the whole body, as before
            if r.status_code != 200 or r.headers.get("content-type") != "image/png":
                errors.append(f"{url}: HTTP {r.status_code} {r.text[:120]}")
                return
            key = layer + (" (cached)" if r.headers.get("x-geoseg-cache") == "hit" else " (drawn)")
            if layer != "rgb" and r.headers.get("x-geoseg-blocks"):
                key = f"{layer} (drawn, blocks {r.headers['x-geoseg-blocks']})"
            lat.setdefault(key, []).append(dt)
            lat.setdefault("all", []).append(dt)
            if r.new_connection and key.endswith("(cached)"):
                lat.setdefault("cached, on a new connection (connect included)", []).append(dt)
            loaded.add((layer, z if tz is None else tz, tx, ty))
            m = re.search(r"dur=([0-9.]+)", r.headers.get("server-timing", ""))
            if m:  # the time the server spent on it, from its handler's start
                lat.setdefault("all, in the server", []).append(float(m.group(1)))
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            errors.append(f"{url}: {type(exc).__name__}: {exc}")

    loaded: set[tuple] = set()  # a browser's cache: tiles it has (Cache-Control: max-age=3600)
    inflight: dict[tuple, asyncio.Task] = {}
    while time.time() < until:
        tiles = [(cx + dx, cy + dy) for dy in (-1, 0, 1) for dx in (-2, -1, 0, 1)]
        want = {(layer, z, tx, ty) for layer in ("rgb", "classes") for tx, ty in tiles if T.valid_tile(z, tx, ty)}
        if browser:  # cancel what left the view, ask for what is not loaded, move on after `pause` seconds
            for k, t in list(inflight.items()):
                if not t.done() and k not in want:
                    t.cancel()
                    lat.setdefault("aborted (left the view)", []).append(0.0)
                if t.done() or k not in want:
                    del inflight[k]
            for k in sorted(want - loaded - set(inflight)):
                inflight[k] = asyncio.ensure_future(fetch(k[0], k[2], k[3], k[1]))
        else:  # the whole viewport again, then wait `pause` seconds
            await asyncio.gather(*(fetch(layer, tx, ty) for layer, _, tx, ty in sorted(want)))
        await asyncio.sleep(pause)
        r = rng.random()
        if r < 0.1 and z < nz + 1:
            z, cx, cy = z + 1, 2 * cx, 2 * cy
        elif r < 0.2 and z > nz - 1:
            z, cx, cy = z - 1, cx // 2, cy // 2
        else:
            dx, dy = rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1)])
            cx, cy = cx + dx, cy + dy
        ax0, ax1, ay0, ay1 = extent(z)
        cx, cy = min(max(cx, ax0), ax1), min(max(cy, ay0), ay1)
    for t in inflight.values():  # the run is over
        t.cancel()
    await http.close()


class Answer:
    """An HTTP answer: status, headers (lower-case names), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, body
        self.elapsed_ms = 0.0
        self.new_connection = False  # the request opened its connection (a browser's connect time included)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class Browser:
    """A lean HTTP/1.1 client of one host, as a browser talks to it: at most
    ``per_host`` keep-alive connections, a request per connection at a time;
    a cancelled request closes its connection (what a browser does when a
    tile leaves the view).  Raw asyncio streams: a general client (httpx)
    spent more CPU than the server under test on the same 2 cores, and its
    own queueing showed up as server latency."""

    def __init__(self, base: str, per_host: int = 6, timeout: float = 60, connects: list[float] | None = None) -> None:
        self.connects = [] if connects is None else connects  # ms to open each new connection
        u = urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.sem = asyncio.Semaphore(per_host)

    async def get(self, url: str) -> Answer:
        async with self.sem:
            t0 = time.perf_counter()
            new = not self.idle
            conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
            if new:
                self.connects.append((time.perf_counter() - t0) * 1000)
            done = False
            try:
                ans = await asyncio.wait_for(self._exchange(conn, url), self.timeout)
                ans.elapsed_ms = (time.perf_counter() - t0) * 1000
                ans.new_connection = new
                done = True
            finally:
                if done and ans.headers.get("connection", "").lower() != "close":
                    self.idle.append(conn)
                else:
                    conn[1].close()
            return ans

    async def _exchange(self, conn, url: str) -> Answer:
        reader, writer = conn
        u = urlsplit(url)
        target = u.path + (f"?{u.query}" if u.query else "")
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode("latin-1"))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while n := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await reader.readexactly(n + 2)
                del body[-2:]
            await reader.readuntil(b"\r\n")
            return Answer(status, headers, bytes(body))
        return Answer(status, headers, await reader.readexactly(int(headers.get("content-length", 0))))

    async def close(self) -> None:
        for _, w in self.idle:
            w.close()
        self.idle.clear()


async def run(base: str, n_clients: int, seconds: float, pause: float, browser: bool = False
              ) -> tuple[dict, list, float, dict]:
    from geoseg.serve.looplag import LoopLag

    http = Browser(base)
    try:
        scene = (await http.get(f"{base}/api/scenes")).json()["scenes"][0]
        lat: dict[str, list[float]] = {}
        errors: list[str] = []
        t0 = time.time()
        lag = LoopLag()  # the server's own measure, here of the load generator's loop: its clients wait for it
        lag.start()
        await asyncio.gather(*(client(i, base, scene, t0 + seconds, lat, errors, pause, browser)
                               for i in range(n_clients)))
        lag.stop()
        lat["load generator's own event-loop lag"] = list(lag.samples)
        wall = time.time() - t0
        health = (await http.get(f"{base}/api/health")).json()
    finally:
        await http.close()
    return lat, errors, wall, health


def start(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[subprocess.Popen, str | None]:
    """Start a server in ``cwd`` (not this tree: ``python -c`` puts the working
    folder first on ``sys.path``); its base URL (None when it did not start)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=cwd)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            return proc, None
        if line.startswith("geoseg from"):
            print(line.strip(), flush=True)
        m = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        if m:
            break
    import httpx2

    for _ in range(400):
        try:
            if httpx2.get(m.group(1) + "/api/health", timeout=2).status_code == 200:
                break
        except httpx2.HTTPError:
            pass
        time.sleep(0.05)
    return proc, m.group(1)


def cpu_seconds(pid: int, tree: bool = True) -> float:
    """CPU time (user + system) of a process, its waited-for children and its
    live descendants (the worker processes of ``--workers N``) so far
    (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        own = sum(int(t) for t in v[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
    if not tree:
        return own
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except (OSError, ValueError):
        pass
    return own + sum(cpu_seconds(k) for k in kids)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


def old_tree(rev: str, tmp: str) -> str:
    """``geoseg/`` of commit ``rev`` extracted under ``tmp``; returns the folder to put on PYTHONPATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dest = os.path.join(tmp, "old")
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", root, "archive", rev, "geoseg"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def report(title: str, a, lat: dict, errors: list, wall: float, health: dict) -> None:
    n = len(lat.get("all", []))
    c = health["cache"]
    mode = f"browser-like: a move every {a.pause:g} s, requests of tiles that left the view cancelled" if a.browser \
        else f"a move every {a.pause:g} s after the viewport loaded"
    print(f"### {title}\n\n{a.clients} clients panning ({mode}) for "
          f"{a.seconds:.0f} s ({wall:.1f} s wall) on a {a.size}² synthetic scene: {n} tiles, {n / wall:.0f} tiles/s, "
          f"{len(errors)} errors; blocks computed {c['computed']} ({c['patches']} patches), joined in flight "
          f"{c['joined']}, memory hits {c['memory_hits']}" + "".join(
              f", {k.replace('_', ' ')} {c[k]}" for k in ("dropped", "not_modified") if k in c)
          + (f"; CPU: server {health['cpu'][0]:.1f} s ({health['cpu'][0] / max(n, 1) * 1000:.1f} ms a tile), "
             f"clients {health['cpu'][1]:.1f} s" if "cpu" in health else "")
          + (f"; the server's event-loop lag p50 {health['event_loop_lag']['p50_ms']:.0f} ms, p99 "
             f"{health['event_loop_lag']['p99_ms']:.0f} ms, max {health['event_loop_lag']['max_ms']:.0f} ms"
             if "event_loop_lag" in health else "") + "\n")
    print("| requests | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    aborted = len(lat.pop("aborted (left the view)", []))
    for k in ["all"] + sorted(k for k in lat if k != "all" and lat[k]):
        v = lat[k]
        print(f"| {k} | {len(v)} | {pct(v, 50):.0f} | {pct(v, 90):.0f} | {pct(v, 99):.0f} | {max(v):.0f} |")
    if aborted:
        print(f"\n{aborted} requests cancelled by their client (the tile left the view)")
    for e in errors[:10]:
        print("error:", e)
    print(flush=True)


def one_run(title: str, a, scene: str, tmp: str, pythonpath: str | None, extra: list[str]) -> int:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    cache = tempfile.mkdtemp(prefix="cache-", dir=tmp)
    cmd = [sys.executable, "-c", "from geoseg.cli.serve import serve; serve()", scene, "--port", "0",
           "--cache-dir", cache, *extra]
    cmd[2] = f"import geoseg, sys; print('geoseg from', geoseg.__file__, file=sys.stderr); {cmd[2]}"
    proc, base = start(cmd, env, cache)
    try:
        if base is None:
            print(f"{title}: geoseg serve did not start", file=sys.stderr)
            return 1
        cpu0, me0 = cpu_seconds(proc.pid), cpu_seconds(os.getpid(), tree=False)
        lat, errors, wall, health = asyncio.run(run(base, a.clients, a.seconds, a.pause, a.browser))
        health["cpu"] = (cpu_seconds(proc.pid) - cpu0, cpu_seconds(os.getpid(), tree=False) - me0)
    finally:
        stop(proc)
    report(title, a, lat, errors, wall, health)
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between a client's moves")
    ap.add_argument("--size", type=int, default=4096, help="side of the synthetic scene (px)")
    ap.add_argument("--scene", default=None, help="serve this scene instead of the synthetic one")
    ap.add_argument("--compare", metavar="REV", default=None, help="first run the server of commit REV")
    ap.add_argument("--server-args", default="", help="more options of this tree's geoseg serve")
    ap.add_argument("--browser", action="store_true",
                    help="browser-like clients: keep loaded tiles (HTTP cache), ask only for new ones, move every "
                         "--pause seconds without waiting, cancel requests of tiles that left the view")
    a = ap.parse_args()
    from geoseg.demo import make_scene

    rc = 0
    with tempfile.TemporaryDirectory(prefix="geoseg-serve-load-") as tmp:
        scene = a.scene
        if scene is None:
            scene = os.path.join(tmp, "demo_scene.tif")
            make_scene(scene, size=a.size)
        if a.compare:
            rc |= one_run(f"before: commit {a.compare}", a, scene, tmp, old_tree(a.compare, tmp), [])
        rc |= one_run("after: this tree" + (f" ({a.server_args})" if a.server_args else ""), a, scene, tmp, None,
                      a.server_args.split())
    return rc


if __name__ == "__main__":
    sys.exit(main())
