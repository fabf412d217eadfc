"""geoseg serve --workers N: processes that share the block cache, the scenes
added while serving and the whole-scene jobs (two applications on one shared
folder stand for two worker processes; one test starts the real command)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402
from helpers import hold_blocks, make_model, paint, write_scene  # noqa: E402
from test_serve import scene_tiles, wait_job  # noqa: E402

from geoseg.serve.app import app_from_settings  # noqa: E402
from geoseg.serve.scenes import ServeOptions  # noqa: E402
from geoseg.serve.state import Settings  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("serve-workers-model") / "colour8.onnx", patch=8)


@pytest.fixture
def root(tmp_path):
    """A served folder whose scene sits in a subfolder: added while serving, not at start."""
    rng = np.random.default_rng(5)
    (tmp_path / "root" / "sub").mkdir(parents=True)
    write_scene(tmp_path / "root" / "sub" / "in.tif", paint(rng.integers(0, 4, size=(12, 14)), 8))
    return tmp_path / "root"


@pytest.fixture
def two(root, model, tmp_path):
    s = Settings((str(root),), str(model), cache_dir=str(tmp_path / "cache"), options=ServeOptions(block_px=32),
                 workers=1, shared_dir=str(tmp_path / "cache" / "run" / "r1"), processes=2)
    with TestClient(app_from_settings(s)) as a, TestClient(app_from_settings(s)) as b:
        yield a, b


def test_a_scene_added_in_one_process_is_served_by_the_other(two):
    a, b = two
    assert b.get("/api/scenes").json()["scenes"] == []
    s = a.post("/api/scenes", json={"path": "sub/in.tif"}).json()
    assert b.get(f"/api/scenes/{s['id']}").json() == s
    assert [x["id"] for x in b.get("/api/scenes").json()["scenes"]] == [s["id"]]
    z = s["native_zoom"]
    x, y = scene_tiles(s, z)[0]
    ra = a.get(f"/api/scenes/{s['id']}/tiles/classes/{z}/{x}/{y}.png")
    rb = b.get(f"/api/scenes/{s['id']}/tiles/classes/{z}/{x}/{y}.png")
    assert ra.status_code == rb.status_code == 200 and ra.content == rb.content
    assert rb.headers["etag"] == ra.headers["etag"]  # a browser's ETag holds whichever process answers
    hb = b.get("/api/health").json()["cache"]
    assert hb["computed"] == 0 and hb["disk_hits"] >= 1  # B read the blocks A computed
    assert b.get("/api/scenes/0123456789ab").status_code == 404


def test_a_job_started_in_one_process_is_answered_by_the_other(two):
    a, b = two
    sid = a.post("/api/scenes", json={"path": "sub/in.tif"}).json()["id"]
    jid = a.post("/api/jobs", json={"scene": sid}).json()["id"]
    d = wait_job(b, jid)
    assert d["status"] == "done" and d["done"] == d["total"] == 12 * 14
    assert [j["id"] for j in b.get("/api/jobs").json()["jobs"]] == [jid]
    assert b.get(f"/api/jobs/{jid}/outputs/classes").content == a.get(f"/api/jobs/{jid}/outputs/classes").content
    events = b.get(f"/api/jobs/{jid}/events").text
    assert "event: end" in events and '"status": "done"' in events


def test_a_job_is_cancelled_from_the_other_process(two, monkeypatch):
    started, release = hold_blocks(monkeypatch)
    a, b = two
    sid = a.post("/api/scenes", json={"path": "sub/in.tif"}).json()["id"]
    jid = a.post("/api/jobs", json={"scene": sid}).json()["id"]
    assert started.wait(30)
    assert b.delete(f"/api/jobs/{jid}").status_code == 200
    release.set()
    assert wait_job(a, jid)["status"] == "cancelled"
    assert wait_job(b, jid)["status"] == "cancelled"


def test_cli_serves_with_two_worker_processes(root, model, tmp_path):
    import httpx2

    cache = tmp_path / "cache"
    cmd = [sys.executable, "-c", "from geoseg.cli.serve import serve; serve()", str(root / "sub" / "in.tif"),
           "-m", str(model), "--port", "0", "--workers", "2", "--cache-dir", str(cache)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        base = None
        t0 = time.time()
        while base is None and time.time() - t0 < 60:
            line = proc.stderr.readline()
            m = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
            base = m.group(1) if m else None
        assert base, "geoseg serve printed no URL"
        for _ in range(600):
            try:
                if httpx2.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.05)
        s = httpx2.get(base + "/api/scenes").json()["scenes"][0]
        z = s["native_zoom"]
        statuses = []
        for x, y in scene_tiles(s, z) * 4:  # a fresh connection each: the processes share them out
            statuses.append(httpx2.get(f"{base}/api/scenes/{s['id']}/tiles/classes/{z}/{x}/{y}.png").status_code)
        assert set(statuses) == {200}
        assert len(list((cache / "run").iterdir())) == 1  # the processes' shared folder
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stderr.close()
    assert list((cache / "run").iterdir()) == []  # removed when the server stops
