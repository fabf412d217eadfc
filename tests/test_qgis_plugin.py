"""The QGIS plugin (qgis_plugin/geoseg_qgis, `make qgis-plugin`).

Three layers of checks:

* the zip: `scripts/build-qgis-plugin.py` writes a standard plugin archive
  (top folder geoseg_qgis, metadata.txt, classFactory), the same bytes twice;
* the runner (``geoseg_qgis/runner.py`` imports nothing of QGIS, so it runs
  here): finding the program, geoseg's error line, progress lines, and a
  cancel that leaves no process of the group behind;
* a real, headless QGIS (``tests/qgis_plugin_probe.py`` under the system
  Python, as tests/test_qgis.py runs PyQGIS): the zip extracted and loaded
  with ``classFactory(None).initProcessing()``, ``geoseg:classify``,
  ``geoseg:ndwi_reference``, ``geoseg:evaluate_scene`` and ``geoseg:chips``
  run through ``processing.runAndLoadResults`` on a synthetic scene with a
  known answer, the loaded layers' styles checked; a canceled run; a missing
  program; a geoseg error.  Skipped where PyQGIS is not importable
  (``scripts/install-qgis.sh`` installs it on Debian/Ubuntu).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import make_model, paint, write_scene

import geoseg

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "qgis_plugin" / "geoseg_qgis"
BUILD = ROOT / "scripts" / "build-qgis-plugin.py"
PROBE = Path(__file__).with_name("qgis_plugin_probe.py")
SYSTEM_PYTHON = os.environ.get("GEOSEG_QGIS_PYTHON", "/usr/bin/python3")
GEOSEG = str(Path(sys.executable).with_name("geoseg"))
if not os.path.exists(GEOSEG):
    GEOSEG = shutil.which("geoseg") or GEOSEG

# the synthetic scene of tests/test_qgis.py: 6 x 7 patches of 8 px, the
# bottom-right patch nodata; a 4th (NIR) band under green on water only
TRUTH = np.array([[0, 1, 2, 3, 1, 3, 0],
                  [2, 0, 0, 2, 3, 2, 3],
                  [2, 3, 2, 0, 3, 1, 2],
                  [1, 0, 3, 3, 2, 1, 3],
                  [2, 1, 1, 0, 0, 2, 3],
                  [0, 3, 3, 1, 2, 0, 255]])
CLASSES = ["cloudy", "desert", "green_area", "water"]
COLORS = ["#f0f0f0", "#e3c16f", "#2e8b3a", "#1f5fbf"]


def _load_runner():
    spec = importlib.util.spec_from_file_location("geoseg_qgis_runner", PLUGIN / "runner.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


runner = _load_runner()


# --- the zip ------------------------------------------------------------------
def _build(out: Path) -> Path:
    subprocess.run([sys.executable, str(BUILD), "-o", str(out)], check=True, capture_output=True, timeout=60)
    return out


def test_zip_is_a_standard_plugin_archive(tmp_path):
    z = zipfile.ZipFile(_build(tmp_path / "geoseg-qgis.zip"))
    names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"geoseg_qgis"}
    for f in ("metadata.txt", "__init__.py", "plugin.py", "provider.py", "algorithms.py", "runner.py", "icon.svg"):
        assert f"geoseg_qgis/{f}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "def classFactory(iface)" in z.read("geoseg_qgis/__init__.py").decode()


def test_metadata_has_what_the_plugin_manager_needs(tmp_path):
    import configparser

    meta = configparser.ConfigParser()
    meta.read_string(zipfile.ZipFile(_build(tmp_path / "p.zip")).read("geoseg_qgis/metadata.txt").decode())
    g = meta["general"]
    for key in ("name", "qgisMinimumVersion", "description", "version", "author", "email", "about", "repository"):
        assert g.get(key), key
    assert g["version"] == geoseg.__version__
    assert g["hasProcessingProvider"] == "yes"
    assert g["icon"] == "icon.svg"


def test_zip_is_reproducible(tmp_path):
    a = _build(tmp_path / "a.zip").read_bytes()
    time.sleep(1.1)
    assert _build(tmp_path / "b.zip").read_bytes() == a


def test_make_target_writes_dist_zip():
    make = (ROOT / "Makefile").read_text()
    assert "qgis-plugin:" in make and "build-qgis-plugin.py" in make


# --- the runner -----------------------------------------------------------------
@pytest.fixture
def no_geoseg_env(monkeypatch, tmp_path):
    monkeypatch.delenv("GEOSEG_EXECUTABLE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


def test_executable_from_the_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOSEG_EXECUTABLE", GEOSEG)
    assert runner.find_executable(setting="/elsewhere/geoseg") == GEOSEG


def test_executable_from_the_setting(no_geoseg_env):
    assert runner.find_executable(setting=GEOSEG) == GEOSEG


def test_executable_on_path(no_geoseg_env, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(GEOSEG).parent))
    assert runner.find_executable(setting="") == GEOSEG


@pytest.mark.parametrize("env, setting, words", [
    (None, None, ["geoseg executable not found", "GEOSEG_EXECUTABLE", "Processing", "geoseg executable"]),
    ("/no/such/geoseg", None, ["/no/such/geoseg: no such program", "environment variable GEOSEG_EXECUTABLE"]),
    (None, "/no/such/geoseg", ["/no/such/geoseg: no such program", "Processing setting"]),
])
def test_missing_executable_is_one_message_saying_how_to_set_it(no_geoseg_env, monkeypatch, env, setting, words):
    if env:
        monkeypatch.setenv("GEOSEG_EXECUTABLE", env)
    with pytest.raises(runner.GeosegNotFound) as e:
        runner.find_executable(setting)
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("lines, expected", [
    (["geoseg: warning: x", "geoseg: error: a.tif: not a raster; fix it"], "a.tif: not a raster; fix it"),
    (["Usage: geoseg classify [OPTIONS] INPUT...", "Try 'geoseg classify -h' for help.", "",
      "Error: Invalid value for '--stride': 0 is not in the range x>=1."], "Invalid value for '--stride': 0 is not in the range x>=1."),
    (['{"progress": {"n": 1, "total": 2}}', "Killed"], "Killed"),
    ([], None),
])
def test_error_line(lines, expected):
    assert runner.error_line(lines) == expected


@pytest.mark.parametrize("line, expected", [
    ('{"progress": {"desc": "s", "unit": "patch", "n": 3, "total": 9}}', {"desc": "s", "unit": "patch", "n": 3, "total": 9}),
    ('{"other": 1}', None),
    ("{not json", None),
    ("geoseg: warning: x", None),
])
def test_parse_progress(line, expected):
    assert runner.parse_progress(line) == expected


def test_the_child_gets_no_foreign_python_or_gdal_settings(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    monkeypatch.setenv("GDAL_DATA", "/usr/share/gdal")
    env = runner.child_env()
    assert "PYTHONPATH" not in env and "GDAL_DATA" not in env
    assert env["PYTHONUNBUFFERED"] == "1"


FAKE = """
import json, sys, time
for n in range(4):
    sys.stderr.write(json.dumps({"progress": {"desc": "s", "unit": "patch", "n": n, "total": 3}}) + "\\n")
sys.stderr.write("geoseg: warning: a warning\\n")
print("a table line")
if sys.argv[1] == "fail":
    sys.stderr.write("geoseg: error: s.tif: bad thing; do this\\n")
    sys.exit(1)
"""


def test_run_streams_progress_lines_and_output(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    progress, lines = [], []
    res = runner.run([sys.executable, str(script), "ok"], progress.append, lines.append)
    assert [p["n"] for p in progress] == [0, 1, 2, 3]
    assert lines == ["geoseg: warning: a warning"]
    assert res.returncode == 0 and res.stdout == "a table line"


def test_run_turns_geoseg_error_into_its_line(tmp_path):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    with pytest.raises(runner.GeosegFailed) as e:
        runner.run([sys.executable, str(script), "fail"])
    assert str(e.value) == "s.tif: bad thing; do this"


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancel_stops_the_command_and_its_children(tmp_path):
    """A command with a child that ignores SIGINT (as a Dask worker may): both stop."""
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "tree.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "sys.stderr.write('{\"progress\": {\"n\": 0, \"total\": 1}}\\n'); sys.stderr.flush()\n"
        "time.sleep(600)\n")
    started = []

    def canceled() -> bool:
        return bool(started) and pidfile.exists() and pidfile.read_text() != ""

    t0 = time.monotonic()
    with pytest.raises(runner.Canceled):
        runner.run([sys.executable, str(script)], started.append, None, canceled)
    assert time.monotonic() - t0 < 30
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(runner.LAST["pid"])
    assert not _alive(child)


# --- in QGIS --------------------------------------------------------------------
ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONNOUSERSITE": "1", "GEOSEG_EXECUTABLE": GEOSEG}
ENV.pop("PYTHONPATH", None)
ENV.pop("VIRTUAL_ENV", None)


def _qgis_missing() -> str | None:
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    code = "import sys; sys.path.append('/usr/share/qgis/python/plugins'); import qgis.core, processing"
    r = subprocess.run([SYSTEM_PYTHON, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    if r.returncode:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"PyQGIS (with Processing) not importable by {SYSTEM_PYTHON} ({last}); run scripts/install-qgis.sh"
    return None


_MISSING = _qgis_missing()
needs_qgis = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def probe(root: Path, runs: list[tuple[str, dict]], *extra: str, env: dict | None = None) -> dict:
    zip_path = root / "geoseg-qgis.zip"
    if not zip_path.exists():
        _build(zip_path)
    cmd = [SYSTEM_PYTHON, str(PROBE), "--zip", str(zip_path), "--plugins", str(root / "plugins"), *extra]
    for alg, params in runs:
        cmd += ["--alg", alg, "--params", json.dumps(params)]
    r = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"probe printed no JSON (rc {r.returncode}):\n{r.stdout}\n{r.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert r.returncode == 0 and "error" not in report, report.get("traceback") or r.stderr[-3000:]
    return report


@pytest.fixture(scope="module")
def scene4(tmp_path_factory):
    root = tmp_path_factory.mktemp("qgis_plugin")
    t = np.where(TRUTH == 255, 0, TRUTH)
    rgb = paint(t, 8).astype(np.float32)
    water = np.repeat(np.repeat(t == 3, 8, 0), 8, 1)
    nir = np.where(water, 0.5 * rgb[1], np.minimum(255, 1.5 * rgb[1] + 20))  # NDWI > 0 on water only
    img = np.concatenate([rgb, nir[None]]).astype(np.uint8)
    img[:, 40:, 48:] = 0
    return root, Path(write_scene(root / "scene4.tif", img, nodata=0)), Path(make_model(root / "colour8.onnx", 8))


@pytest.fixture(scope="module")
def qgis_runs(scene4):
    """classify, ndwi_reference, evaluate_scene and chips in one QGIS session."""
    if _MISSING:
        pytest.skip(_MISSING)
    root, scene, model = scene4
    out = root / "out"
    runs = [
        ("geoseg:classify", {"INPUT": str(scene), "MODEL": str(model), "BANDS": "1,2,3", "OUTPUT_FOLDER": str(out)}),
        ("geoseg:ndwi_reference", {"INPUT": str(scene), "GREEN": "2", "NIR": "4", "OUTPUT": str(root / "ndwi.tif")}),
        ("geoseg:evaluate_scene", {"INPUT": str(out / "scene4_classes.tif"), "REFERENCE": str(root / "ndwi.tif"),
                                   "CLASSES": "water", "OUTPUT_FOLDER": str(root / "eval")}),
        ("geoseg:chips", {"INPUT": [str(scene)], "LABELS": str(root / "ndwi.tif"), "SIZE": 8, "BANDS": "1,2,3,4",
                          "OUTPUT_FOLDER": str(root / "chips")}),
    ]
    runs.append(runs[0])  # classify again into the same folder: geoseg skips the scene as up to date
    report = probe(root, runs)
    by_alg = {r["alg"]: r for r in report["runs"][:-1]}
    by_alg["rerun"] = report["runs"][-1]
    return root, by_alg, report


def _layer(run: dict, suffix: str) -> dict:
    hits = [ly for ly in run["layers"] if ly["source"].split("|")[0].endswith(suffix)]
    assert len(hits) == 1, [ly["source"] for ly in run["layers"]]
    return hits[0]


@needs_qgis
def test_provider_loads_headless_from_the_zip(qgis_runs):
    root, _, report = qgis_runs
    assert report["plugin_file"].startswith(str(root / "plugins" / "geoseg_qgis"))
    assert report["provider"] == {"id": "geoseg", "name": "geoseg", "algorithms": [
        "geoseg:chips", "geoseg:classify", "geoseg:evaluate_scene", "geoseg:ndwi_reference"]}


@needs_qgis
def test_classify_returns_the_outputs(qgis_runs):
    root, runs, _ = qgis_runs
    run = runs["geoseg:classify"]
    assert "exception" not in run, run
    out = root / "out"
    assert run["results"] == {"CLASSES": str(out / "scene4_classes.tif"), "PROBS": str(out / "scene4_probs.tif"),
                              "POLYGONS": str(out / "scene4_polygons.gpkg"), "STATS": str(out / "scene4_stats.json"),
                              "OUTPUT_FOLDER": str(out)}
    import rasterio

    with rasterio.open(out / "scene4_classes.tif") as src:
        cells = src.read(1)
    assert (cells == TRUTH).all()  # the known answer, through QGIS
    stats = json.loads((out / "scene4_stats.json").read_text())
    assert stats["scene"]["bands"] == [1, 2, 3] and stats["provider"] == "cpu"
    assert any("--bidx 1,2,3" in line for line in run["log"])


@needs_qgis
def test_classify_reports_progress(qgis_runs):
    _, runs, _ = qgis_runs
    p = runs["geoseg:classify"]["progress"]
    assert 100.0 in p and any(0 < v < 100 for v in p), p


@needs_qgis
def test_classify_layers_load_styled(qgis_runs):
    _, runs, _ = qgis_runs
    run = runs["geoseg:classify"]
    cls = _layer(run, "scene4_classes.tif")
    assert cls["name"] == "scene4 classes"
    assert cls["renderer"] == "paletted" and cls["opacity"] == pytest.approx(0.7)
    assert cls["classes"] == [[i, n, c] for i, (n, c) in enumerate(zip(CLASSES, COLORS))]
    probs = _layer(run, "scene4_probs.tif")
    assert probs["renderer"] == "singlebandpseudocolor"
    poly = _layer(run, "scene4_polygons.gpkg")
    assert poly["renderer"] == "categorizedSymbol" and poly["class_attribute"] == "class_name"
    assert poly["categories"] == [[n, c] for n, c in zip(CLASSES, COLORS)]
    assert poly["opacity"] == pytest.approx(0.7)


@needs_qgis
def test_classify_rerun_of_an_up_to_date_scene_returns_and_loads_its_outputs(qgis_runs):
    _, runs, _ = qgis_runs
    rerun = runs["rerun"]
    assert "exception" not in rerun, rerun
    assert rerun["results"] == runs["geoseg:classify"]["results"]
    assert any(line.split()[:2] == ["scene4", "skipped"] for line in rerun["log"]), rerun["log"]
    assert sorted((ly["name"], ly["renderer"]) for ly in rerun["layers"]) == [
        ("scene4 classes", "paletted"), ("scene4 polygons", "categorizedSymbol"),
        ("scene4 probabilities", "singlebandpseudocolor")]


@needs_qgis
def test_ndwi_reference_is_styled_water(qgis_runs):
    root, runs, _ = qgis_runs
    run = runs["geoseg:ndwi_reference"]
    assert run["results"]["OUTPUT"] == str(root / "ndwi.tif")
    ly = _layer(run, "ndwi.tif")
    assert ly["renderer"] == "paletted"
    assert [c[1] for c in ly["classes"]] == ["not_water", "water"]


@needs_qgis
def test_evaluate_scene_scores_against_the_reference(qgis_runs):
    root, runs, _ = qgis_runs
    run = runs["geoseg:evaluate_scene"]
    assert "exception" not in run, run
    res = run["results"]
    assert res["OVERALL_ACCURACY"] == 1.0 and res["KAPPA"] == 1.0
    report = json.loads(Path(res["REPORT"]).read_text())
    assert report["n_cells"] == int((TRUTH != 255).sum())
    water = [c for c in report["per_class"] if c.get("name", c.get("class")) == "water"] if isinstance(
        report["per_class"], list) else [report["per_class"]["water"]]
    assert water and water[0]["f1"] == 1.0
    assert Path(res["CONFUSION"]).exists()
    assert _layer(run, "disagreement.tif")["renderer"] == "paletted"


@needs_qgis
def test_chips_cuts_labelled_chips(qgis_runs):
    root, runs, _ = qgis_runs
    run = runs["geoseg:chips"]
    assert "exception" not in run, run
    n = run["results"]["N_CHIPS"]
    assert n == len(list((root / "chips").rglob("*.tif"))) > 0
    assert {p.name for p in (root / "chips").iterdir() if p.is_dir()} <= {"water", "not_water"}


@needs_qgis
def test_cancel_stops_geoseg_and_its_workers(tmp_path, scene4):
    _, _, model = scene4
    big = paint(np.random.default_rng(1).integers(0, 4, (256, 256)), 8)  # 2048 x 2048 px: ~15 s with 2 workers
    scene = write_scene(tmp_path / "big.tif", big, tiled=True, block=256)
    out = tmp_path / "out"
    report = probe(tmp_path, [("geoseg:classify", {"INPUT": scene, "MODEL": str(model), "WORKERS": 2,
                                                   "OUTPUT_FOLDER": str(out)})], "--cancel-after-progress")
    run = report["runs"][0]
    assert "canceled" in run.get("exception", ""), run
    assert len(run["group_at_cancel"]) >= 3, run["group_at_cancel"]  # geoseg and its worker processes
    assert run["left_in_group"] == []
    assert not (out / "big_classes.tif").exists()


@needs_qgis
def test_missing_executable_is_a_processing_error(tmp_path, scene4):
    _, scene, _ = scene4
    env = {k: v for k, v in ENV.items() if k != "GEOSEG_EXECUTABLE"}
    env["PATH"] = "/usr/bin:/bin"
    if shutil.which("geoseg", path=env["PATH"]):
        pytest.skip("a geoseg program is on /usr/bin:/bin")
    report = probe(tmp_path, [("geoseg:classify", {"INPUT": str(scene), "OUTPUT_FOLDER": str(tmp_path / "o")})],
                   env=env)
    exc = report["runs"][0]["exception"]
    assert exc.startswith("QgsProcessingException: geoseg executable not found: set the environment variable "
                          "GEOSEG_EXECUTABLE"), exc


@needs_qgis
def test_geoseg_error_is_a_processing_error_of_one_line(tmp_path, scene4):
    _, scene, _ = scene4
    report = probe(tmp_path, [("geoseg:classify", {"INPUT": str(scene), "MODEL": str(tmp_path / "none.onnx"),
                                                   "OUTPUT_FOLDER": str(tmp_path / "o")})])
    exc = report["runs"][0]["exception"]
    assert exc == f"QgsProcessingException: geoseg: {tmp_path / 'none.onnx'}: model file not found; pass -m with " \
                  "an existing .onnx file", exc


@needs_qgis
def test_modeller_chains_classify_into_evaluate_scene(tmp_path, scene4, qgis_runs):
    """A graphical-modeller model: classify's CLASSES output feeds evaluate_scene."""
    root, scene, model = scene4
    cfg = {"scene": str(scene), "model": str(model), "reference": str(root / "ndwi.tif"),
           "out": str(tmp_path / "classified"), "eval": str(tmp_path / "evaluation")}
    report = probe(tmp_path, [], "--modeller", json.dumps(cfg))["modeller"]
    assert "exception" not in report, report
    assert report["depends"] == ["classify"]
    child = report["child_results"]
    assert child["classify"]["CLASSES"] == str(tmp_path / "classified" / "scene4_classes.tif")
    assert child["evaluate"]["OVERALL_ACCURACY"] == 1.0
    assert json.loads((tmp_path / "evaluation" / "report.json").read_text())["class_map"] == \
        child["classify"]["CLASSES"]
