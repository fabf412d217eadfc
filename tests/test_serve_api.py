"""geoseg serve: the token in the URLs the server hands out, the URL allow-list
of POST /api/scenes (redirects included), and the shape of the code (routers,
short functions)."""

from __future__ import annotations

import ast
import http.server
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402
from helpers import make_model, paint, write_scene  # noqa: E402

from geoseg.serve.app import create_app  # noqa: E402
from geoseg.serve.fetch import check_url  # noqa: E402
from geoseg.serve.scenes import AccessError, ServeOptions  # noqa: E402

TOKEN = "s3cr+t&x=1"
ENCODED = "s3cr%2Bt%26x%3D1"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("serve-api-model") / "colour8.onnx", patch=8)


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    import numpy as np

    d = tmp_path_factory.mktemp("scenes")
    write_scene(d / "a.tif", paint(np.arange(16).reshape(4, 4) % 4, 8))
    return d


def client(sources, model, tmp_path, **kw):
    return TestClient(create_app([str(s) for s in sources], model, cache_dir=tmp_path / "cache",
                                 options=ServeOptions(block_px=32), workers=1, **kw))


# --- bug 5: the token is URL-encoded in the URLs the server hands out ----------------------------
def test_tilejson_tile_url_carries_the_token_encoded(scenes_dir, model, tmp_path):
    with client([scenes_dir], model, tmp_path, token=TOKEN) as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        sid = c.get("/api/scenes", headers=auth).json()["scenes"][0]["id"]
        url = c.get(f"/api/scenes/{sid}/tilejson.json", headers=auth).json()["tiles"][0]
        assert url.endswith(f".png?token={ENCODED}")
        # a map client follows the URL as it is, without the header
        r = c.get(url.replace("{z}/{x}/{y}", "14/0/0").replace("http://testserver", ""))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_printed_start_url_carries_the_token_encoded(scenes_dir, model, tmp_path):
    """Run in a fresh interpreter with uvicorn's Server.run a no-op (print the
    URL, serve nothing): in-process, the app's pools and uvicorn's logging set
    up under CliRunner's streams outlived them and broke later tests."""
    import subprocess
    import sys

    pytest.importorskip("uvicorn")
    code = ("import sys, uvicorn; uvicorn.Server.run = lambda self: None; "
            "from geoseg.cli.serve import serve; serve.main(sys.argv[1:], prog_name='geoseg serve')")
    args = [str(scenes_dir / "a.tif"), "-m", str(model), "--port", "8123", "--token", TOKEN,
            "--cache-dir", str(tmp_path / "c")]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"open http://127.0.0.1:8123/?token={ENCODED} " in out.stderr


# --- the URL allow-list -------------------------------------------------------------------------------
@pytest.mark.parametrize("url, prefixes, ok", [
    ("https://h/data/a.tif", None, True),
    ("https://h/data/a.tif", ("https://h/data/",), True),
    ("https://h/data/a.tif", ("https://h/data",), True),
    ("https://H/data/a.tif", ("https://h/data",), True),
    ("https://h/database.tif", ("https://h/data",), False),
    ("https://h/data/../secret.tif", ("https://h/data/",), False),
    ("https://h/data/%2e%2e/secret.tif", ("https://h/data/",), False),
    ("http://h/data/a.tif", ("https://h/data/",), False),
    ("https://h:8443/data/a.tif", ("https://h/data/",), False),
    ("https://h.evil.org/data/a.tif", ("https://h",), False),
    ("https://h/data/a.tif", (), False),
    ("file:///etc/passwd", None, False),
])
def test_check_url(url, prefixes, ok):
    if ok:
        check_url(url, prefixes)
    else:
        with pytest.raises(AccessError):
            check_url(url, prefixes)


class _Files(http.server.SimpleHTTPRequestHandler):
    """Files of ``directory``; ``/ok/hop`` redirects inside ``/ok/``, ``/ok/jump`` out of it."""

    def log_message(self, *a, **k) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        target = {"/ok/hop": "/ok/a.tif", "/ok/jump": "/secret/a.tif"}.get(self.path)
        if target:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def files(tmp_path, scenes_dir):
    root = tmp_path / "www"
    for sub in ("ok", "secret"):
        (root / sub).mkdir(parents=True)
        (root / sub / "a.tif").write_bytes((scenes_dir / "a.tif").read_bytes())
    handler = lambda *a, **k: _Files(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path, status, text", [
    ("/ok/a.tif", 201, None),
    ("/ok/hop", 201, None),
    ("/secret/a.tif", 403, "not under an allowed URL prefix"),
    ("/ok/jump", 403, "redirected to http://127.0.0.1:"),
])
def test_url_prefixes_and_redirects(files, model, tmp_path, path, status, text):
    with client([], model, tmp_path, allow_url_prefixes=[files + "/ok/"]) as c:
        r = c.post("/api/scenes", json={"url": files + path})
        assert r.status_code == status, r.text
        assert text is None or text in r.json()["error"]
        assert len(c.get("/api/scenes").json()["scenes"]) == (status == 201)
        if status != 201:
            assert list((tmp_path / "cache" / "uploads").iterdir()) == []  # nothing left behind


def test_no_url_fetching_when_none_is_allowed(files, model, tmp_path):
    with client([], model, tmp_path, allow_url_prefixes=[]) as c:
        r = c.post("/api/scenes", json={"url": files + "/ok/a.tif"})
        assert r.status_code == 403 and "--allow-url-prefix" in r.json()["error"]


@pytest.mark.parametrize("host, given, expected", [
    ("127.0.0.1", (), None),
    ("0.0.0.0", (), ()),
    ("0.0.0.0", ("https://h/d/",), ("https://h/d/",)),
])
def test_cli_url_prefix_defaults(host, given, expected):
    from geoseg.cli.serve import url_prefixes

    assert url_prefixes(given, host) == expected


def test_cli_refuses_a_bad_prefix(tmp_path):
    from click.testing import CliRunner

    from geoseg.cli.serve import serve

    r = CliRunner().invoke(serve, ["--allow-url-prefix", "ftp://h/", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "--allow-url-prefix ftp://h/: not an http:// or https:// URL prefix" in r.output
    assert "Traceback" not in r.output


# --- shape of the code ------------------------------------------------------------------------------------
SERVE = Path(__file__).resolve().parent.parent / "geoseg" / "serve"


def test_no_function_in_serve_over_60_lines():
    long = []
    for f in sorted(SERVE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{f.relative_to(SERVE)}:{node.name} ({n} lines)")
    assert long == []


def test_request_bodies_and_answers_are_documented(scenes_dir, model, tmp_path):
    with client([scenes_dir], model, tmp_path) as c:
        spec = c.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("SceneSource", "JobRequest", "Scene", "SceneList", "TileJSON", "PointAnswer", "Job", "Health"):
        assert name in schemas, name
    body = spec["paths"]["/api/scenes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/SceneSource")


@pytest.mark.parametrize("provider, ok", [("cpu", True), ("auto", True), ("nonsense", False)])
def test_cli_provider(scenes_dir, model, monkeypatch, tmp_path, provider, ok):
    uvicorn = pytest.importorskip("uvicorn")
    from click.testing import CliRunner

    from geoseg.cli.serve import serve

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: seen.update(app=self.config.app))
    # uvicorn's logging.config.dictConfig closes every existing handler, pytest's own included
    monkeypatch.setattr(uvicorn.Config, "configure_logging", lambda self: None)
    r = CliRunner().invoke(serve, [str(scenes_dir / "a.tif"), "-m", str(model), "--provider", provider,
                                   "--cache-dir", str(tmp_path / "c")])
    if ok:
        assert r.exit_code == 0, r.output
        sc = seen["app"].state.server.registry.list()[0]
        assert sc.provider == "cpu"  # what this onnxruntime runs the blocks with
        seen["app"].state.server.close()
    else:
        assert r.exit_code == 1 and "provider 'nonsense': unknown; expected one of auto, cpu" in r.output
        assert "Traceback" not in r.output
