"""End to end in a real browser: `geoseg serve` (uvicorn on 127.0.0.1, a free
port) on the synthetic demo scene with the shipped model, driven by
Playwright for Python through Debian's chromium (scripts/install-browser.sh).

Loads the page, waits for class tiles, clicks the map and reads the popup,
runs a whole-scene job to its download links, and saves a screenshot to
tests/artifacts/serve.png (docs/img/serve.png is a committed copy).  Skips where chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("GEOSEG_CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# a test artefact; docs/img/serve.png is a copy of one, committed for the README
SCREENSHOT = Path(__file__).resolve().parent / "artifacts" / "serve.png"

pytestmark = pytest.mark.slow


def _need_browser():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which("chromium"):
        pytest.skip(f"no chromium at {CHROMIUM}: run scripts/install-browser.sh (Debian's chromium package)")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (serve extra + dev)")
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")


@pytest.fixture
def server(tmp_path):
    """`geoseg serve SCENE --port 0` in a child process; yields its URL, stops it at the end."""
    _need_browser()
    from geoseg.demo import make_scene

    scene = tmp_path / "demo_scene.tif"
    make_scene(str(scene), size=1024)
    cmd = [sys.executable, "-c", "from geoseg.cli.serve import serve; serve()", str(scene), "--port", "0",
           "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        url = None
        t0 = time.time()
        while time.time() - t0 < 60 and url is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"geoseg serve exited with {proc.returncode}")
            m = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "geoseg serve printed no URL"
        import httpx2

        for _ in range(100):
            try:
                if httpx2.get(url + "api/health", timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_map_page_end_to_end(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            requests_out = []
            page.on("request", lambda r: requests_out.append(r.url))
            page.goto(server)
            # class tiles arrive
            page.wait_for_function("Number(document.body.dataset.cellTilesLoaded || 0) >= 2", timeout=60_000)
            legend = page.locator("#legend .legend-row").all_inner_texts()
            assert [t.strip() for t in legend] == ["cloudy", "desert", "green_area", "water"]
            # opacity slider drives the class layer
            page.locator("#opacity").fill("55")
            assert page.locator("#opacity-value").inner_text() == "55 %"
            # click the middle of the map: a popup with the class and its probabilities
            box = page.locator("#map").bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2 - 150, box["y"] + box["height"] / 2)
            popup = page.locator("#geoseg-popup[data-class]")
            popup.wait_for(timeout=30_000)
            cls = popup.get_attribute("data-class")
            assert cls in ("cloudy", "desert", "green_area", "water")
            text = popup.inner_text()
            assert cls in text and text.count("%") == 4
            # the whole scene as a job: progress, then download links
            page.locator("#classify").click()
            page.wait_for_function("document.body.dataset.jobStatus === 'done'", timeout=120_000)
            assert page.locator("#progress").evaluate("e => e.value") == 1
            links = page.locator("#downloads a.download")
            assert sorted(links.all_inner_texts()) == ["classes", "polygons", "probs", "quicklook", "stats"]
            href = links.first.get_attribute("href")
            r = page.request.get(server + href)
            assert r.status == 200 and len(r.body()) > 100
            page.wait_for_timeout(300)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            # everything the page loaded came from this server (works offline)
            assert requests_out and all(u.startswith(server) for u in requests_out), \
                [u for u in requests_out if not u.startswith(server)][:3]
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
