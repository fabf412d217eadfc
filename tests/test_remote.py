"""Remote scenes (geoseg.sources through the pipeline): HTTP range reads on a
loopback server, S3 on moto's server, faults, byte identity with a local
run, and the classify command's cloud and Dask options."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from geoseg.batch import classify_many, find_inputs
from geoseg.cli import main
from geoseg.pipeline import ClassifyOptions
from geoseg.sources import gdal_env, gdal_path, scene_config
from helpers import paint, write_scene
from servers import RangeServer, S3Server, closed_port

FIXED_MTIME = 1_700_000_000
FAST = {"GDAL_HTTP_RETRY_DELAY": "0.01", "GDAL_HTTP_TIMEOUT": "20"}  # tiny retry delays in tests
PRODUCTS = ("_classes.tif", "_probs.tif", "_polygons.gpkg", "_classes.tif.aux.xml", "_quicklook.png")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    rng = np.random.default_rng(5)
    write_scene(d / "sc.tif", paint(rng.integers(0, 4, (20, 24)), 8), tiled=True, block=16)
    os.utime(d / "sc.tif", (FIXED_MTIME, FIXED_MTIME))
    return d


@pytest.fixture(scope="module")
def local_out(scenes, model8, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run = classify_many([str(scenes / "sc.tif")], out, model8, ClassifyOptions(block_cells=3),
                        scheduler="synchronous", progress=False)
    assert run.ok, run.scenes
    return out


@pytest.fixture
def server(scenes):
    with RangeServer(scenes) as srv:
        yield srv


def opts(**kw) -> ClassifyOptions:
    return ClassifyOptions(block_cells=3, gdal_config={**FAST, **kw.pop("gdal", {})}, **kw)


def same_bytes(a: Path, b: Path, stem: str = "sc", products=PRODUCTS) -> None:
    for suffix in products:
        assert (a / f"{stem}{suffix}").read_bytes() == (b / f"{stem}{suffix}").read_bytes(), suffix


def test_https_run_is_byte_identical_and_reads_ranges(server, local_out, model8, tmp_path):
    url = server.url("sc.tif")
    run = classify_many([url], tmp_path / "out", model8, opts(), scheduler="threads", workers=2, progress=False)
    assert run.ok, [s.error for s in run.scenes]
    assert run.scenes[0].path == url  # the user's form in reports
    same_bytes(local_out, tmp_path / "out")
    gets = server.gets("sc.tif")
    assert gets and all(r.range for r in gets)  # never a whole download
    assert all(r.status == 206 for r in gets)
    # the manifest identifies the object by its headers: a rerun skips it
    manifest = (tmp_path / "out" / "sc_manifest.json").read_text()
    assert '"etag"' in manifest and url in manifest
    again = classify_many([url], tmp_path / "out", model8, opts(), scheduler="synchronous", progress=False)
    assert [s.status for s in again.scenes] == ["skipped"]
    # a changed object (new Last-Modified) is redone
    os.utime(server.root / "sc.tif", (FIXED_MTIME + 60, FIXED_MTIME + 60))
    try:
        redo = classify_many([url], tmp_path / "out", model8, opts(), scheduler="synchronous", progress=False)
    finally:
        os.utime(server.root / "sc.tif", (FIXED_MTIME, FIXED_MTIME))
    assert [s.status for s in redo.scenes] == ["done"]


def test_partial_read_fetches_a_small_part(tmp_path):
    big = tmp_path / "big.tif"
    rng = np.random.default_rng(0)
    write_scene(big, rng.integers(0, 255, (3, 1024, 1024)).astype("uint8"), tiled=True, block=256)
    size = big.stat().st_size
    with RangeServer(tmp_path) as srv:
        url = srv.url("big.tif")
        with gdal_env(scene_config(url)), rasterio.open(gdal_path(url)) as src:
            arr = src.read(window=Window(300, 300, 64, 64))
        assert arr.shape == (3, 64, 64)
        gets = srv.gets("big.tif")
        assert gets and all(r.range for r in gets)
        assert srv.bytes_sent("big.tif") < size / 4


def test_503_then_ok_is_retried(scenes, local_out, model8, tmp_path):
    with RangeServer(scenes, fail_first=2, faults_on="GET") as srv:
        run = classify_many([srv.url("sc.tif")], tmp_path / "out", model8, opts(), scheduler="synchronous",
                            progress=False)
        statuses = [r.status for r in srv.log]
    assert run.ok, [s.error for s in run.scenes]
    assert statuses.count(503) == 2
    same_bytes(local_out, tmp_path / "out")


def test_dropped_connections_are_retried(scenes, local_out, model8, tmp_path):
    with RangeServer(scenes, drop_first=1, faults_on="GET") as srv:
        run = classify_many([srv.url("sc.tif")], tmp_path / "out", model8, opts(), scheduler="synchronous",
                            progress=False)
        dropped = [r for r in srv.log if r.status == 0]
    assert dropped
    assert run.ok, [s.error for s in run.scenes]
    same_bytes(local_out, tmp_path / "out")


def test_503_for_ever_is_named(scenes, model8, tmp_path):
    with RangeServer(scenes, fail_first=10_000) as srv:
        url = srv.url("sc.tif")
        run = classify_many([url], tmp_path / "out", model8, opts(gdal={"GDAL_HTTP_MAX_RETRY": "2"}),
                            scheduler="synchronous", progress=False)
        for _ in range(200):  # the server thread logs a request after answering it
            if len(srv.log) >= 3:
                break
            time.sleep(0.01)
        n = len(srv.log)
    err = run.scenes[0].error
    assert run.scenes[0].status == "failed" and "\n" not in err
    assert err.startswith(url) and "503" in err and "3 attempt" in err
    assert n == 3


def test_gone_server_is_one_line(model8, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/sc.tif"
    run = classify_many([url], tmp_path / "out", model8, opts(gdal={"GDAL_HTTP_MAX_RETRY": "1"}),
                        scheduler="synchronous", progress=False)
    err = run.scenes[0].error
    assert run.scenes[0].status == "failed"
    assert err.startswith(url + ": cannot read the remote object") and "\n" not in err


def test_404_and_403_are_one_line(scenes, model8, tmp_path):
    with RangeServer(scenes, status={"secret.tif": 403}) as srv:
        missing, secret = srv.url("missing.tif"), srv.url("secret.tif")
        run = classify_many([missing, secret], tmp_path / "out", model8, opts(), scheduler="synchronous",
                            progress=False)
    e404, e403 = (s.error for s in run.scenes)
    assert e404 == f"{missing}: not found (HTTP 404); expected an existing object: check the URL, bucket and key"
    assert e403.startswith(f"{secret}: access denied (HTTP 403)")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_NO_SIGN_REQUEST=YES", "GS_", "AZURE_"):
        assert var in e403
    assert "\n" not in e403


def test_404_through_gdal_is_one_line(server):
    """A read that fails inside GDAL (not at geoseg's HEAD) gets the same message."""
    from geoseg.raster import open_scene
    from helpers import make_contract

    url = server.url("gone.tif")
    with pytest.raises(Exception) as ei, gdal_env(scene_config(url)):
        open_scene(url, make_contract(8))
    assert str(ei.value).startswith(f"{url}: not found")


# --- S3 (moto's server) ---------------------------------------------------------
@pytest.fixture(scope="module")
def s3(scenes):
    with S3Server() as srv:
        data = (scenes / "sc.tif").read_bytes()
        srv.put("bucket", "scenes/sc.tif", data)
        srv.put("bucket", "scenes/sub/deep.tif", data)
        srv.put("bucket", "scenes/notes.md", b"not a scene")
        yield srv


@pytest.fixture
def s3_env(s3, monkeypatch):
    """Dummy keys in the environment (as GDAL and the listing read them); the
    endpoint through --gdal-config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return {"AWS_S3_ENDPOINT": s3.endpoint, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE"}


def test_s3_prefix_discovery(s3_env, tmp_path):
    from geoseg.sources import normalize_config

    cfg = normalize_config(s3_env)
    top = find_inputs(["s3://bucket/scenes/"], str(tmp_path), config=cfg)
    assert [t.path for t in top] == ["s3://bucket/scenes/sc.tif"]
    deep = find_inputs(["s3://bucket/scenes/"], str(tmp_path), recursive=True, config=cfg)
    assert [(t.path, os.path.relpath(t.outdir, tmp_path)) for t in deep] == [
        ("s3://bucket/scenes/sc.tif", "."), ("s3://bucket/scenes/sub/deep.tif", "sub")]
    md = find_inputs(["/vsis3/bucket/scenes/"], str(tmp_path), pattern="*.md", config=cfg)
    assert [t.path for t in md] == ["/vsis3/bucket/scenes/notes.md"]


def test_s3_run_from_a_list_of_urls(s3_env, local_out, model8, tmp_path):
    lst = tmp_path / "scenes.txt"
    lst.write_text("# scenes on S3\ns3://bucket/scenes/sc.tif\n")
    run = classify_many([str(lst)], tmp_path / "out", model8, opts(gdal=s3_env), scheduler="synchronous",
                        progress=False)
    assert run.ok, [s.error for s in run.scenes]
    # the GeoPackage stores the object's Last-Modified, not the local file's mtime
    same_bytes(local_out, tmp_path / "out", products=("_classes.tif", "_probs.tif", "_quicklook.png"))
    again = classify_many([str(lst)], tmp_path / "out", model8, opts(gdal=s3_env), scheduler="synchronous",
                          progress=False)
    assert [s.status for s in again.scenes] == ["skipped"]
    missing = classify_many(["s3://bucket/scenes/none.tif"], tmp_path / "o2", model8, opts(gdal=s3_env),
                            scheduler="synchronous", progress=False)
    assert missing.scenes[0].error.startswith("s3://bucket/scenes/none.tif: not found")


def test_s3_prefix_run_is_stable(s3_env, model8, tmp_path):
    """Two runs over the same objects give the same bytes (the GeoPackage's timestamp included)."""
    for out in ("a", "b"):
        run = classify_many(["s3://bucket/scenes/"], tmp_path / out, model8, opts(gdal=s3_env),
                            scheduler="synchronous", progress=False)
        assert run.ok, [s.error for s in run.scenes]
    same_bytes(tmp_path / "a", tmp_path / "b")


# --- the command line -------------------------------------------------------------
def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_gdal_config(server, local_out, model8, tmp_path):
    r = cli("classify", server.url("sc.tif"), "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous",
            "--gdal-config", "GDAL_HTTP_RETRY_DELAY=0.01", "--gdal-config", "GDAL_HTTP_MAX_RETRY=2", "-q")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "sc_classes.tif").exists()
    r = cli("classify", server.url("sc.tif"), "-o", tmp_path / "o2", "-m", model8, "--gdal-config", "NOVALUE")
    assert r.exit_code == 2 and "KEY=VALUE" in r.output
    r = cli("classify", server.url("sc.tif"), "-o", tmp_path / "o2", "-m", model8, "--gdal-config",
            "AWS_SECRET_ACCESS_KEY=x")
    assert r.exit_code == 2 and "environment variables" in r.output


def test_cli_404_is_one_line(server, model8, tmp_path):
    url = server.url("missing.tif")
    r = cli("classify", url, "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous")
    assert r.exit_code == 1
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert errors == [f"geoseg: error: {url}: not found (HTTP 404); expected an existing object: check the URL, "
                      "bucket and key"]
    assert "Traceback" not in r.output


def test_cli_dashboard_and_performance_report(scenes, model8, tmp_path):
    pytest.importorskip("bokeh")  # Dask draws the report with bokeh
    report = tmp_path / "report.html"
    r = cli("classify", scenes / "sc.tif", "-o", tmp_path / "out", "-m", model8, "--scheduler", "processes",
            "--workers", "1", "--dashboard", "--performance-report", report)
    assert r.exit_code == 0, r.output
    assert "dashboard: http://127.0.0.1:" in r.stderr
    assert report.exists() and "<html" in report.read_text(errors="replace").lower()


def test_cli_dashboard_without_cluster(scenes, model8, tmp_path):
    r = cli("classify", scenes / "sc.tif", "-o", tmp_path / "out", "-m", model8, "--scheduler", "synchronous",
            "--dashboard", "-q")
    assert r.exit_code == 0
    assert "dashboard: none" in r.stderr
    r = cli("classify", scenes / "sc.tif", "-o", tmp_path / "o2", "-m", model8, "--scheduler", "synchronous",
            "--performance-report", tmp_path / "r.html")
    assert r.exit_code == 2 and "needs a Dask cluster" in r.output


def test_progress_bar_with_processes(scenes, model8, tmp_path, capsys, monkeypatch):
    import geoseg.pipeline as P
    from geoseg.scheduling import Runner, progress_bar

    def eager(*a, **k):  # draw every update: the test watches the bar advance, not the clock (the
        bar = progress_bar(*a, **k)  # product's 0.5 s between redraws hid every step on a fast machine)
        bar.mininterval, bar.miniters, bar.dynamic_miniters = 0, 1, False
        return bar

    monkeypatch.setattr(P, "progress_bar", eager)
    shutil.copy(scenes / "sc.tif", tmp_path / "sc.tif")
    with Runner("processes", 1) as r:
        run = classify_many([str(tmp_path / "sc.tif")], tmp_path / "out", model8, ClassifyOptions(block_cells=3),
                            runner=r, progress=True)
    assert run.ok
    err = capsys.readouterr().err
    # the scene's bar advances as blocks come back from the worker process (it is cleared at the end)
    done = [int(m) for m in re.findall(r"\| *(\d+)/\d+ \[", err)]
    assert "patch/s" in err and done and max(done) > 0
